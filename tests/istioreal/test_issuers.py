"""The `issuers` form as a user installs it (static tokens), in classic and in Gateway API mode
(there the chart's HTTPRoute on Gateway `public`'s listener for oidc.example.com): this cluster's
issuer and another cluster's, each at its path on oidc.example.com. The other cluster is a second
real kube-apiserver (its own CA, certificate name and --service-account-issuer) with a
discovery-only account; its CA and token go into the Secrets whose `kubectl create secret` lines
NOTES.txt prints, and the gateway serves each issuer's documents from its own API server."""

from __future__ import annotations

import json

import pytest

from harness import audit, pki as pkimod
from harness.constants import DISCOVERY, PROD_ISSUER
from harness.kube import Kube
from istioreal import install

ISSUER = "https://oidc.example.com/clusters/local"  # this cluster's (conftest's cluster fixture)
REMOTE_HOST = "api.prod.example.internal"
REMOTE_NS, REMOTE_ACCOUNT = "kube-oidc-discovery", "discovery"
REMOTE_USER = f"system:serviceaccount:{REMOTE_NS}:{REMOTE_ACCOUNT}"


@pytest.fixture(scope="module", params=install.MODES)
def mode(request):
    return request.param


@pytest.fixture(scope="module")
def remote(mode, tmp_path_factory):
    """Cluster prod: a real API server at 127.0.0.1 whose certificate names api.prod.example.internal
    only, its documents readable by account discovery (the chart README's steps there). One per
    mode, as the cluster: its audit log holds that mode's requests only."""
    d = tmp_path_factory.mktemp(f"prod-{mode}")
    pki = pkimod.generate(d / "pki", [REMOTE_HOST])
    with Kube(d / "kube", pki, issuer=PROD_ISSUER, apiserver_args=audit.audit_args(d / "kube")) as kube:
        kube.create_discovery_account(REMOTE_NS, REMOTE_ACCOUNT)
        (d / "prod-ca.crt").write_bytes(pki.ca_cert.read_bytes())
        (d / "prod-token").write_text(kube.token(REMOTE_NS, REMOTE_ACCOUNT, seconds=86400))
        yield kube, {"prod-ca.crt": d / "prod-ca.crt", "prod-token": d / "prod-token"}


@pytest.fixture(scope="module")
def gateway(mode, cluster, remote, tmp_path_factory, image, backend):
    kube, _ = cluster
    prod, files = remote
    values = {"issuers": [
        {"name": "local", "issuer": ISSUER},
        {"name": "prod", "issuer": PROD_ISSUER,
         "apiServer": {"host": REMOTE_HOST, "port": prod.port, "addresses": ["127.0.0.1"]}}]}
    made = []
    pod, get = install.gateway(
        mode, kube, tmp_path_factory.mktemp(f"issuers-{mode}"), image, backend, values,
        ready_path=_path(ISSUER, DISCOVERY),
        before_pod=lambda notes: made.extend(install.create_remote_secrets(kube, notes, files)))
    assert len(made) == 2  # the CA's and the token's
    yield pod, get
    pod.stop()


def _path(issuer: str, doc: str) -> str:
    return "/" + issuer.split("://", 1)[1].partition("/")[2] + doc


@pytest.mark.parametrize("name", ["local", "prod"])
def test_each_issuers_documents_come_from_its_own_api_server(name, gateway, cluster, remote):
    _, get = gateway
    kube, user = (cluster[0], install.TOKEN_USER) if name == "local" else (remote[0], REMOTE_USER)
    issuer = ISSUER if name == "local" else PROD_ISSUER
    audit.assert_served_from(kube, get, user, prefix=_path(issuer, ""))
    assert json.loads(get(_path(issuer, DISCOVERY)).body)["issuer"] == issuer
