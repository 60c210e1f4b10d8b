"""Test PKI, generated at test time: a cluster CA and the API server's certificate, plus the
variants the TLS failure tests need.

- ``ca.crt``                      the CA Envoy trusts (the service-account ``ca.crt``)
- ``server.crt`` / ``server.key`` API server certificate: signed by that CA, SAN DNS
  kubernetes.default.svc (and the other names a real API server certificate carries)
- ``other-ca.crt``                an unrelated CA
- ``rogue.crt`` / ``rogue.key``   right SAN, but signed by the unrelated CA ("wrong CA")
- ``wrong-san.crt`` / ``wrong-san.key``  signed by the right CA, SAN DNS wrong.example only
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .constants import API_SERVER_NAME
API_SERVER_SANS = [
    "kubernetes",
    "kubernetes.default",
    API_SERVER_NAME,
    "kubernetes.default.svc.cluster.local",
]


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = _dt.datetime.now(_dt.timezone.utc)
    return builder.not_valid_before(now - _dt.timedelta(hours=1)).not_valid_after(
        now + _dt.timedelta(days=2)
    )


@dataclass
class Authority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def make_ca(cn: str) -> Authority:
    key = _key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    cert = _validity(builder).sign(key, hashes.SHA256())
    return Authority(key, cert)


def make_leaf(ca: Authority, cn: str, dns_names: list[str], ips: list[str] = ()) -> tuple[bytes, bytes]:
    """A server certificate signed by ``ca``; returns (cert PEM, key PEM)."""
    key = _key()
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    cert = _validity(builder).sign(ca.key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _pem(key)


def make_client(ca: Authority, cn: str, orgs: list[str] = ()) -> tuple[bytes, bytes]:
    """A client certificate signed by ``ca`` (the API server maps CN to the user and O to its
    groups); returns (cert PEM, key PEM)."""
    key = _key()
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs + [x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    cert = _validity(builder).sign(ca.key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _pem(key)


def _pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass
class Pki:
    dir: Path
    ca_cert: Path
    server_cert: Path
    server_key: Path
    other_ca_cert: Path
    rogue_cert: Path
    rogue_key: Path
    wrong_san_cert: Path
    wrong_san_key: Path

    def pair(self, variant: str = "server") -> tuple[Path, Path]:
        """(cert, key) of a server certificate variant: server, rogue (wrong CA), wrong-san."""
        return {
            "server": (self.server_cert, self.server_key),
            "rogue": (self.rogue_cert, self.rogue_key),
            "wrong-san": (self.wrong_san_cert, self.wrong_san_key),
        }[variant]


def generate(directory: Path | str, server_names: list[str] = API_SERVER_SANS) -> Pki:
    """Writes a fresh PKI into ``directory`` (created if needed); the API server's certificate
    names ``server_names`` (and 127.0.0.1, 10.0.0.1)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ca = make_ca("kube-oidc-discovery test cluster CA")
    other = make_ca("unrelated CA")

    def write(name: str, data: bytes, private: bool = False) -> Path:
        p = d / name
        p.write_bytes(data)
        if private:
            p.chmod(0o600)
        return p

    pem = serialization.Encoding.PEM
    ca_cert = write("ca.crt", ca.cert.public_bytes(pem))
    other_ca_cert = write("other-ca.crt", other.cert.public_bytes(pem))
    cert, key = make_leaf(ca, "kube-apiserver", server_names, ["127.0.0.1", "10.0.0.1"])
    server_cert, server_key = write("server.crt", cert), write("server.key", key, True)
    cert, key = make_leaf(other, "kube-apiserver", server_names, ["127.0.0.1", "10.0.0.1"])
    rogue_cert, rogue_key = write("rogue.crt", cert), write("rogue.key", key, True)
    cert, key = make_leaf(ca, "wrong", ["wrong.example"])
    wrong_san_cert, wrong_san_key = write("wrong-san.crt", cert), write("wrong-san.key", key, True)
    return Pki(d, ca_cert, server_cert, server_key, other_ca_cert, rogue_cert, rogue_key,
               wrong_san_cert, wrong_san_key)
