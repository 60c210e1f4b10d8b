"""The `issuers` form on Envoy Gateway's Kubernetes provider, installed as docs/envoy-gateway.md
says (token mode projected, the default): this cluster's issuer (the Envoy pods' projected token)
and another cluster's (a second real kube-apiserver, its own CA, certificate name and
--service-account-issuer, a discovery-only account's token), each at its path on
oidc.example.com, with the other cluster's CA and token put in place by the commands NOTES.txt
prints. Two more entries point at that other API server with the wrong CA and with a name its
certificate does not have: they fail closed, and that API server never hears from them."""

from __future__ import annotations

import json
import re

import pytest

from envoygatewayreal import install
from envoygatewayreal.install import ancestor_conditions
from harness import audit, kubelet, pki as pkimod
from harness.checks import ERROR_BODIES, UPSTREAM_ONLY
from harness.constants import DISCOVERY, JWKS, PROD_ISSUER
from harness.kube import Kube

ISSUER = "https://oidc.example.com/clusters/local"  # this cluster's (conftest's cluster fixture)
ISSUERS = {"local": ISSUER, "prod": PROD_ISSUER, "rogue": "https://oidc.example.com/clusters/rogue",
           "wrongsan": "https://oidc.example.com/clusters/wrongsan"}
REMOTE_HOST = "api.prod.example.internal"  # the only name the other API server's certificate has
REMOTE_NS = "kube-oidc-discovery"
# the other cluster's discovery-only accounts, one per entry: its audit log tells them apart
REMOTE_USER = {n: f"system:serviceaccount:{REMOTE_NS}:{n}" for n in ("prod", "rogue", "wrongsan")}
ACCEPTED = ("True", "Accepted")
RESOLVED = ("True", "ResolvedRefs")


def _prefix(name: str) -> str:
    return "/" + ISSUERS[name].split("://", 1)[1].partition("/")[2]


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    """Cluster prod: a real API server on the node's address whose certificate names
    api.prod.example.internal only; per entry an account bound to the discovery role, its token
    in `<entry>-token`, and the CA each entry is given in `<entry>-ca.crt` (rogue: another CA's),
    in the directory returned, as a user keeps them for the NOTES' commands."""
    d = tmp_path_factory.mktemp("prod")
    pki = pkimod.generate(d / "pki", [REMOTE_HOST])
    other_ca = pkimod.generate(d / "other-pki").ca_cert
    files = d / "files"
    files.mkdir()
    with Kube(d / "kube", pki, issuer=PROD_ISSUER,
              apiserver_args=["--bind-address", "0.0.0.0", *audit.audit_args(d / "kube")]) as kube:
        for name in REMOTE_USER:
            kube.create_discovery_account(REMOTE_NS, name)
            (files / f"{name}-token").write_text(kube.token(REMOTE_NS, name, seconds=86400))
            (files / f"{name}-ca.crt").write_bytes((other_ca if name == "rogue" else pki.ca_cert).read_bytes())
        yield kube, files


@pytest.fixture(scope="module")
def gateway(cluster, remote, tmp_path_factory, tls_image, tls_registry, backend):
    kube, eg = cluster
    prod, files = remote

    def entry(name: str, host: str) -> dict:
        return {"name": name, "issuer": ISSUERS[name],
                "apiServer": {"host": host, "port": prod.port, "addresses": [kubelet.POD_IP]}}
    values = {"issuers": [{"name": "local", "issuer": ISSUER}, entry("prod", REMOTE_HOST),
                          entry("rogue", REMOTE_HOST), entry("wrongsan", "api.wrongsan.example.internal")]}
    pod, get = install.install(kube, tmp_path_factory.mktemp("gateway"), eg, tls_image, tls_registry.ca, backend,
                               values, ready_path=_prefix("prod") + DISCOVERY, remote_files=files)
    yield pod, get
    pod.stop()


def test_the_notes_commands_put_each_other_clusters_token_and_ca_in_place(gateway, cluster):
    kube, _ = cluster
    for name in REMOTE_USER:
        secret = kube.get(f"/api/v1/namespaces/{install.NAMESPACE}/secrets/{install.ROUTE}-{name}-credential")
        assert set(secret["data"]) == {"credential"}
        cm = kube.get(f"/api/v1/namespaces/{install.NAMESPACE}/configmaps/{install.ROUTE}-{name}-ca")
        assert cm["data"]["ca.crt"].startswith("-----BEGIN CERTIFICATE-----")


def test_every_route_and_tls_policy_is_accepted_with_resolved_refs(gateway, cluster):
    kube, _ = cluster
    for name in ISSUERS:
        route = kube.get(f"/apis/gateway.networking.k8s.io/v1/namespaces/{install.NAMESPACE}/httproutes/{install.ROUTE}-{name}")
        conds = ancestor_conditions(route)
        assert conds["Accepted"] == ACCEPTED and conds["ResolvedRefs"] == RESOLVED, (name, conds)
        pol = kube.get(f"/apis/gateway.networking.k8s.io/v1/namespaces/{install.NAMESPACE}/backendtlspolicies/{install.ROUTE}-{name}")
        conds = ancestor_conditions(pol)
        assert conds["Accepted"] == ACCEPTED and conds["ResolvedRefs"] == RESOLVED, (name, conds)


@pytest.mark.parametrize("name", ["local", "prod"])
def test_each_issuers_documents_come_from_its_own_api_server(name, gateway, cluster, remote):
    _, get = gateway
    kube, user = (cluster[0], install.TOKEN_USER) if name == "local" else (remote[0], REMOTE_USER["prod"])
    audit.assert_served_from(kube, get, user, prefix=_prefix(name))
    assert json.loads(get(_prefix(name) + DISCOVERY).body)["issuer"] == ISSUERS[name]


@pytest.mark.parametrize("name, stat", [("rogue", "fail_verify_error"), ("wrongsan", "fail_verify_san")])
def test_a_wrong_ca_or_san_fails_closed(name, stat, gateway, remote):
    pod, get = gateway
    r = get(_prefix(name) + JWKS)
    # the filter's generic 503 (Envoy Gateway's listener sends no `server` header)
    assert (r.status, r.body) == (503, ERROR_BODIES[503]), (r.status, r.body[:200])
    assert not set(UPSTREAM_ONLY) & r.header_names(), r.headers
    # Envoy refused the certificate, for the reason the entry was built to fail on ...
    stats = pod.admin(f"/stats?filter={re.escape(f'{install.ROUTE}-{name}/')}.*ssl\\.")
    failed = {m.group(1): int(m.group(2)) for m in re.finditer(r"ssl\.(\w+): (\d+)", stats)}
    assert failed.get(stat, 0) > 0, stats
    # ... so that API server never saw that entry's token
    assert not [rec for rec in audit.document_requests(remote[0].dir) if rec[0] == REMOTE_USER[name]]
