"""plugin.failOpen (the default) on Envoy Gateway's Kubernetes provider: the image cannot be
pulled (a tag the registry does not have), Envoy Gateway reports the EnvoyExtensionPolicy not
Accepted in the API server and keeps the chart's route without the filter. What remains is the
hardened proxy the chart builds, here in front of the real kube-apiserver: exactly the two
document paths, GET only, with the Envoy pods' token (a client's Authorization overwritten), no
client cookie or impersonation header upstream, and none of the API server's identifying
headers back."""

from __future__ import annotations

import pytest

from envoygatewayreal import install
from envoygatewayreal.install import ancestor_condition, ancestor_conditions
from harness import audit
from harness.checks import UPSTREAM_ONLY
from harness.constants import DOCS, JWKS

MISSING_TAG = "missing"
HOSTILE = [("Authorization", "Bearer client-token"), ("Cookie", "session=client"),
           ("Impersonate-User", "system:admin"), ("Impersonate-Group", "system:masters"),
           ("Impersonate-Uid", "0")]


@pytest.fixture(scope="module")
def gateway(cluster, tmp_path_factory, tls_image, tls_registry, backend):
    kube, eg = cluster
    missing = {"url": tls_image["url"].rsplit(":", 1)[0] + ":" + MISSING_TAG, "sha256": ""}
    pod, get = install.install(kube, tmp_path_factory.mktemp("gateway"), eg, missing, tls_registry.ca, backend, {})
    yield pod, get
    pod.stop()


def test_envoy_gateway_reports_the_policy_not_accepted_and_keeps_the_route(gateway, cluster):
    kube, _ = cluster
    pol = kube.get(f"/apis/gateway.envoyproxy.io/v1alpha1/namespaces/{install.NAMESPACE}/envoyextensionpolicies/{install.FULLNAME}")
    accepted = ancestor_condition(pol, "Accepted")
    assert accepted["status"] == "False" and MISSING_TAG in accepted["message"], accepted
    route = kube.get(f"/apis/gateway.networking.k8s.io/v1/namespaces/{install.NAMESPACE}/httproutes/{install.ROUTE}")
    conds = ancestor_conditions(route)
    assert conds["Accepted"][0] == conds["ResolvedRefs"][0] == "True", conds
    pod, _ = gateway
    assert "envoy.filters.http.wasm" not in pod.admin("/config_dump?resource=dynamic_listeners")


def test_the_documents_are_proxied_hardened(gateway, cluster):
    kube, _ = cluster
    _, get = gateway
    for path in DOCS:
        before = len(audit.document_requests(kube.dir))
        r = get(path, headers=HOSTILE)
        # an impersonation header that reached the API server would be refused (403): the Envoy
        # pods' account may not impersonate
        assert r.status == 200, (path, r.status, r.body[:300])
        # the request the API server answered: the Envoy pods' token, not the client's
        assert audit.document_requests(kube.dir)[before:] == [(install.TOKEN_USER, path, 200)]
        assert r.body == kube.request("GET", path, admin=True)[2]
        for h in UPSTREAM_ONLY + ("warning",):
            assert h not in r.header_names(), (h, r.headers)
        assert not any(n.startswith("x-kubernetes-") for n in r.header_names()), r.headers


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
def test_other_methods_are_not_routed(gateway, cluster, method):
    kube, _ = cluster
    _, get = gateway
    before = len(audit.document_requests(kube.dir))
    r = get(JWKS, method=method, body=b"{}" if method in ("POST", "PUT", "PATCH") else None)
    # Envoy Gateway's own 404 (no route), not the API server's
    assert (r.status, r.body) == (404, b""), (method, r.status, r.headers)
    assert len(audit.document_requests(kube.dir)) == before


def test_other_paths_are_not_routed(gateway):
    _, get = gateway
    for path in ["/api/v1/secrets", "/apis", "/openid/v1/jwks/", "/version"]:
        r = get(path)
        # Envoy Gateway's own 404 (no route): the API server would answer JSON with an audit-id
        assert (r.status, r.body) == (404, b""), (path, r.status, r.headers)
        assert "audit-id" not in r.header_names()
