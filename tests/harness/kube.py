"""A real Kubernetes control plane on 127.0.0.1 for the tests: etcd, kube-apiserver and
kube-controller-manager (for the token controller), the versions tools/kube/go.mod pins, built
from their Go modules by tools/kube/build.sh (`make kube-tools`).

The API server runs hardened, like the clusters this project is for: ``--anonymous-auth=false``,
``--authorization-mode=Node,RBAC``, no insecure port. It serves the harness PKI's server
certificate (SANs kubernetes.default.svc, kubernetes.default.svc.cluster.local, 127.0.0.1), so
the shipped Envoy configs validate it exactly as they validate the fake. Admin requests use a
client certificate in group ``system:masters``.

    with Kube(workdir, pki) as kube:
        kube.create_service_account("demo", "reader")
        token = kube.token("demo", "reader")
        kube.add_verification_key()
        kube.restart_apiserver()

The API server's port stays the same across restarts, so an Envoy pointed at it keeps working.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import ssl
import subprocess
import time
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from . import CACHE, REPO_ROOT, child, pinned
from .child import free_port
from .constants import DEFAULT_ISSUER, MEDIA_TYPES
from .pki import Pki, make_ca, make_client

class KubeError(RuntimeError):
    pass


# What the binaries are built from, and what /version and --version then say.
VERSION = pinned(REPO_ROOT / "tools" / "kube" / "go.mod", "k8s.io/kubernetes")
ETCD_VERSION = pinned(REPO_ROOT / "tools" / "kube" / "go.mod", "go.etcd.io/etcd/server/v3")
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
READY_TIMEOUT_S = 60
ANONYMOUS_DISCOVERY_BINDING = "oidc-discovery-unauthenticated"
ANONYMOUS_DISCOVERY_CLUSTER_ROLE_BINDING = {
    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
    "metadata": {"name": ANONYMOUS_DISCOVERY_BINDING},
    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                "name": "system:service-account-issuer-discovery"},
    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:unauthenticated"}],
}
# KEP-4633 (docs/configuration.md#no-token-anonymous-discovery): anonymous authentication for the
# two OIDC paths alone, every other path still 401.
ANONYMOUS_DISCOVERY_AUTHENTICATION_CONFIG = {
    "apiVersion": "apiserver.config.k8s.io/v1", "kind": "AuthenticationConfiguration",
    "anonymous": {"enabled": True, "conditions": [
        {"path": "/.well-known/openid-configuration"}, {"path": "/openid/v1/jwks"}]},
}


def printed_authentication_configuration(text: str) -> dict:
    """The AuthenticationConfiguration a text prints (NOTES.txt, indented; a doc, in a YAML block):
    the docs and the charts are held to the one the tests run."""
    m = re.search(r"^( *)apiVersion: apiserver\.config\.k8s\.io/.*?(?=\n\s*\n|\n```)", text, re.S | re.M)
    if not m:
        raise ValueError("no AuthenticationConfiguration in the text")
    return yaml.safe_load("\n".join(line[len(m.group(1)):] for line in m.group(0).splitlines()))
# kube-apiserver drains for 10 s and more on SIGTERM (its watches stay open); after this it is
# killed. Everything it stores is in etcd, so a restart loses nothing.
STOP_GRACE_S = 2


def default_bin_dir() -> Path:
    return Path(os.environ.get("KOD_KUBE_BIN") or CACHE / "kube" / "bin")


def missing_binaries(bin_dir: Path | None = None) -> list[str]:
    d = bin_dir or default_bin_dir()
    return [b for b in BINARIES if not os.access(d / b, os.X_OK)]


def _rsa_key_pem() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def https_request(port: int, ca: Path, method: str, path: str, *, token: str | None = None,
                  headers: dict[str, str] | None = None, body: bytes | None = None,
                  cert: tuple[Path, Path] | None = None,
                  timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """One HTTPS request to an API server (real or fake) on 127.0.0.1, its certificate checked
    against ``ca``; a bearer ``token`` and a client ``cert`` (cert, key) are optional. Returns
    (status, lower-cased headers, body)."""
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    if body is not None:
        h.setdefault("Content-Type", "application/json")
    try:
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


class Kube:
    def __init__(self, workdir: Path | str, pki: Pki, *, bin_dir: Path | None = None,
                 issuer: str = DEFAULT_ISSUER, jwks_uri: str | None = None, port: int = 0,
                 anonymous_discovery: bool = False, apiserver_args: list[str] = ()):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.bin = bin_dir or default_bin_dir()
        missing = missing_binaries(self.bin)
        if missing:
            raise KubeError(f"{', '.join(missing)} missing in {self.bin}: run `make kube-tools`")
        self.pki = pki
        self.issuer = issuer
        self.jwks_uri = jwks_uri
        self.anonymous_discovery = anonymous_discovery
        self.extra_apiserver_args = list(apiserver_args)  # after the harness's own
        self.port = port or free_port()
        self.etcd_port, self.etcd_peer_port = free_port(), free_port()
        self.procs: dict[str, subprocess.Popen] = {}
        # Admin client certificate (group system:masters) from a client CA of its own.
        client_ca = make_ca("kube-oidc-discovery test client CA")
        self.client_ca = self._write("client-ca.crt",
                                     client_ca.cert.public_bytes(serialization.Encoding.PEM))
        cert, key = make_client(client_ca, "kod-test-admin", ["system:masters"])
        self.admin_cert, self.admin_key = self._write("admin.crt", cert), self._write("admin.key", key)
        # Service-account keys: the first signs; every key's public half verifies (and is
        # published in the JWKS).
        self.signing_key: Path | None = None
        self.verification_keys: list[Path] = []
        self.add_verification_key()
        self.kubeconfig = self._write("kubeconfig", self._kubeconfig().encode())

    # ------------------------------------------------------------------ files
    def _write(self, name: str, data: bytes) -> Path:
        p = self.dir / name
        p.write_bytes(data)
        p.chmod(0o600)
        return p

    def add_verification_key(self) -> Path:
        """A new service-account key pair; its public key is verified (and published) from the
        next API-server start on. The first pair also signs."""
        n = len(self.verification_keys) + 1
        private, public = _rsa_key_pem()
        priv_path = self._write(f"sa-{n}.key", private)
        self.verification_keys.append(self._write(f"sa-{n}.pub", public))
        if self.signing_key is None:
            self.signing_key = priv_path
        return self.verification_keys[-1]

    def _kubeconfig(self) -> str:
        return json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {
                "server": self.url, "certificate-authority": str(self.pki.ca_cert)}}],
            "users": [{"name": "admin", "user": {
                "client-certificate": str(self.admin_cert), "client-key": str(self.admin_key)}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
        })

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ processes
    def _spawn(self, name: str, args: list) -> None:
        self.procs[name] = child.spawn([self.bin / name, *args], self.dir / f"{name}.log")

    def _etcd_args(self) -> list:
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        return ["--name", "test", "--data-dir", self.dir / "etcd",
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"test={peer}", "--log-level", "warn"]

    def _apiserver_args(self) -> list:
        args = [
            "--etcd-servers", f"http://127.0.0.1:{self.etcd_port}",
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
            # v1.37 refuses a loopback advertise address while it reconciles the endpoints of
            # default/kubernetes; no test reads them.
            "--endpoint-reconciler-type", "none",
            "--secure-port", self.port,
            "--tls-cert-file", self.pki.server_cert, "--tls-private-key-file", self.pki.server_key,
            "--client-ca-file", self.client_ca, "--cert-dir", self.dir / "certs",
            *self._anonymous_args(), "--authorization-mode", "Node,RBAC",
            "--service-account-issuer", self.issuer,
            "--service-account-signing-key-file", self.signing_key,
            "--service-cluster-ip-range", "10.0.0.0/24", "--profiling=false",
        ]
        for key in self.verification_keys:
            args += ["--service-account-key-file", key]
        if self.jwks_uri:
            args += ["--service-account-jwks-uri", self.jwks_uri]
        return args + self.extra_apiserver_args

    def _anonymous_args(self) -> list:
        """Hardened: no anonymous request at all. With ``anonymous_discovery`` (KEP-4633), anonymous
        requests of the two document paths only; the two cannot be combined. Either way RBAC
        still decides: anonymous reads need `system:service-account-issuer-discovery` bound to
        `system:unauthenticated` (``bind_discovery_to_unauthenticated``)."""
        if not self.anonymous_discovery:
            return ["--anonymous-auth=false"]
        config = self._write("authentication-config.json", json.dumps(
            ANONYMOUS_DISCOVERY_AUTHENTICATION_CONFIG).encode())
        return ["--authentication-config", config]

    def _controller_manager_args(self) -> list:
        return ["--kubeconfig", self.kubeconfig, "--controllers", "serviceaccount-token",
                "--service-account-private-key-file", self.signing_key,
                "--root-ca-file", self.pki.ca_cert, "--leader-elect=false",
                "--use-service-account-credentials=false", "--secure-port", "0"]

    def start(self) -> "Kube":
        try:
            self._spawn("etcd", self._etcd_args())
            self.start_apiserver()
        except BaseException:
            self.stop()
            raise
        return self

    def start_apiserver(self) -> None:
        """Starts the API server, waits until it is ready, then the controller manager."""
        self._spawn("kube-apiserver", self._apiserver_args())
        self.wait_ready()
        self._spawn("kube-controller-manager", self._controller_manager_args())

    def stop_apiserver(self) -> None:
        """Stops the API server, and the controller manager first (it exits without one)."""
        for name in ("kube-controller-manager", "kube-apiserver"):
            child.stop(self.procs.pop(name, None), STOP_GRACE_S)

    def restart_apiserver(self) -> None:
        """Stops the API server and starts it again (with the keys added since)."""
        self.stop_apiserver()
        self.start_apiserver()

    def stop(self) -> None:
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            child.stop(self.procs.pop(name, None), STOP_GRACE_S)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise KubeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")
            try:
                if self.api("GET", "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise KubeError(f"kube-apiserver not ready after {timeout}s:\n{self.log_tail('kube-apiserver')}")

    def log_tail(self, name: str, lines: int = 30) -> str:
        p = self.dir / f"{name}.log"
        return "\n".join(p.read_text(errors="replace").splitlines()[-lines:]) if p.exists() else ""

    # ------------------------------------------------------------------ requests
    def request(self, method: str, path: str, *, token: str | None = None, admin: bool = False,
                headers: dict[str, str] | None = None, body: bytes | None = None,
                timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
        """One request, as the admin (client certificate) or with a bearer token (or neither)."""
        cert = (self.admin_cert, self.admin_key) if admin else None
        return https_request(self.port, self.pki.ca_cert, method, path, token=token,
                             headers=headers, body=body, cert=cert, timeout=timeout)

    def api(self, method: str, path: str, obj: dict | None = None) -> tuple[int, dict]:
        """An admin API call with a JSON body; returns (status, decoded body)."""
        body = json.dumps(obj).encode() if obj is not None else None
        status, _, data = self.request(method, path, admin=True, body=body)
        try:
            return status, json.loads(data) if data else {}
        except ValueError:
            return status, {"raw": data.decode("utf-8", "replace")}

    def _ok(self, what: str, result: tuple[int, dict], *ok: int) -> dict:
        status, obj = result
        if status not in ok:
            raise KubeError(f"{what}: {status} {obj}")
        return obj

    def get(self, path: str) -> dict:
        """An admin GET of ``path``: the object (KubeError unless 200)."""
        return self._ok(f"GET {path}", self.api("GET", path), 200)

    def create(self, path: str, obj: dict, *, exists_ok: bool = False) -> dict:
        """An admin POST of ``obj`` to ``path``: the object created (KubeError unless 201, or 409
        with ``exists_ok``)."""
        return self._ok(f"POST {path}", self.api("POST", path, obj), 201, *((409,) if exists_ok else ()))

    def create_namespace(self, ns: str) -> None:
        self._ok(f"create namespace {ns}", self.api("POST", "/api/v1/namespaces", {
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}), 201, 409)

    def create_service_account(self, ns: str, name: str) -> None:
        self.create_namespace(ns)
        self._ok(f"create serviceaccount {ns}/{name}",
                 self.api("POST", f"/api/v1/namespaces/{ns}/serviceaccounts", {
                     "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}),
                 201, 409)

    def create_discovery_account(self, ns: str, name: str) -> None:
        """Service account ``ns``/``name`` bound to system:service-account-issuer-discovery and
        nothing else (ClusterRoleBinding oidc-discovery-<ns>-<name>): the account another
        cluster's token comes from in the `issuers` tests, as the chart READMEs set it up."""
        self.create_service_account(ns, name)
        self.create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": f"oidc-discovery-{ns}-{name}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "system:service-account-issuer-discovery"},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]})

    def delete_service_account(self, ns: str, name: str) -> None:
        self._ok(f"delete serviceaccount {ns}/{name}",
                 self.api("DELETE", f"/api/v1/namespaces/{ns}/serviceaccounts/{name}"), 200)

    def token(self, ns: str, name: str, audiences: list[str] | None = None,
              seconds: int = 3600) -> str:
        """A bound token of the service account from the TokenRequest API (what `kubectl create
        token` does in later versions)."""
        spec: dict = {"expirationSeconds": seconds}
        if audiences:
            spec["audiences"] = audiences
        obj = self._ok(f"token for {ns}/{name}", self.api(
            "POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{name}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}), 201)
        return obj["status"]["token"]

    def kubectl(self, *args: str, input: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin / "kubectl"), "--kubeconfig", str(self.kubeconfig),
                               *args], input=input, capture_output=True, text=True,
                              timeout=timeout)

    def shell(self, command: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        """A command line as a user runs it (docs, NOTES.txt): bash with errexit and pipefail, this
        cluster's kubectl first on PATH and KUBECONFIG set, in ``cwd``."""
        env = dict(os.environ) | {"KUBECONFIG": str(self.kubeconfig), "PATH": f"{self.bin}:{os.environ.get('PATH', '')}"}
        return subprocess.run(["bash", "-euo", "pipefail", "-c", command], env=env, cwd=cwd, capture_output=True,
                              text=True, timeout=timeout)

    def anonymous_get(self, path: str) -> tuple[int, bytes]:
        """``GET path`` with no credential at all, accepting a document's own media type: the API
        server's status and body."""
        status, _, body = self.request("GET", path, headers={"Accept": MEDIA_TYPES.get(path, "*/*")})
        return status, body

    def bind_discovery_to_unauthenticated(self) -> None:
        """The ClusterRoleBinding that, with ``anonymous_discovery``, lets a request without a
        credential read the two documents."""
        self._ok("create clusterrolebinding", self.api(
            "POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            ANONYMOUS_DISCOVERY_CLUSTER_ROLE_BINDING), 201, 409)

    def unbind_discovery_from_unauthenticated(self) -> None:
        self._ok("delete clusterrolebinding", self.api(
            "DELETE", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/"
            + ANONYMOUS_DISCOVERY_BINDING), 200, 404)
