"""Token mode inject on Envoy Gateway's Kubernetes provider, as docs/envoy-gateway.md says: `helm
install` into the real API server, the token Secret from the NOTES' command, and the Envoy that
Envoy Gateway deployed for the Gateway serving the documents from the real API server with the
chart's dedicated account; every status read back from the API server. (The default, projected:
test_projected.py.)"""

from __future__ import annotations

from envoygatewayreal import install
from envoygatewayreal.install import ancestor_conditions, conditions
from harness import audit
from harness.checks import poll
from harness.constants import DOCS, JWKS, NOT_FOUND_PATH, OTHER_HOST

VALUES = {"token": {"mode": "inject"}}
ACCEPTED = ("True", "Accepted")
RESOLVED = ("True", "ResolvedRefs")


def test_the_gateway_is_accepted_and_programmed_at_the_envoy_pod(gateway, cluster):
    kube, _ = cluster
    path = f"/apis/gateway.networking.k8s.io/v1/namespaces/{install.GATEWAY_NS}/gateways/{install.GATEWAY}"
    programmed = lambda: (lambda g: g if conditions(g).get("Programmed", ("",))[0] == "True" else None)(kube.get(path))
    # Programmed once the Envoy Deployment has an available replica and its Service an address
    gw = poll(programmed, 30, what="Gateway eg Programmed")
    assert conditions(gw)["Accepted"] == ACCEPTED
    assert [a["value"] for a in gw["status"]["addresses"]] == [install.ENVOY_POD_IP]
    (listener,) = gw["status"]["listeners"]
    assert listener["attachedRoutes"] == 2  # the chart's route and the application's


def test_the_charts_route_is_accepted_with_its_references_resolved(gateway, cluster):
    kube, _ = cluster
    route = kube.get(f"/apis/gateway.networking.k8s.io/v1/namespaces/{install.NAMESPACE}/httproutes/{install.ROUTE}")
    conds = ancestor_conditions(route)
    assert conds["Accepted"] == ACCEPTED and conds["ResolvedRefs"] == RESOLVED, conds
    # every reference stays in its namespace: resolved with no ReferenceGrant anywhere
    assert not kube.get("/apis/gateway.networking.k8s.io/v1beta1/referencegrants")["items"]


def test_the_extension_policy_is_accepted(gateway, cluster):
    kube, _ = cluster
    pol = kube.get(f"/apis/gateway.envoyproxy.io/v1alpha1/namespaces/{install.NAMESPACE}/envoyextensionpolicies/{install.FULLNAME}")
    assert ancestor_conditions(pol)["Accepted"] == ACCEPTED


def test_the_backend_tls_policy_is_accepted_with_its_ca_resolved(gateway, cluster):
    kube, _ = cluster
    # on the chart's Backend, in the release's namespace: nothing in `default`
    assert not kube.get("/apis/gateway.networking.k8s.io/v1/namespaces/default/backendtlspolicies")["items"]
    pol = kube.get(f"/apis/gateway.networking.k8s.io/v1/namespaces/{install.NAMESPACE}/backendtlspolicies/{install.FULLNAME}")
    conds = ancestor_conditions(pol)
    assert conds["Accepted"] == ACCEPTED and conds["ResolvedRefs"] == RESOLVED, conds


def test_both_documents_are_served_from_the_real_api_server_with_the_charts_account(gateway, cluster):
    _, get = gateway
    audit.assert_served_from(cluster[0], get, install.INJECT_USER)


def test_other_paths_of_the_oidc_host_are_envoy_gateways_404_and_never_enter_the_filter(gateway, cluster):
    """The chart's route matches the two paths only and the filter is enabled on that route only,
    so another path is Envoy Gateway's own 404 (no route: empty body, no server header), not the
    filter's JSON 404 of the Istio and plain-Envoy configs."""
    pod, get = gateway
    with pod.trace_wasm():
        before = pod.filter_callbacks()
        r = get(NOT_FOUND_PATH)
        assert (r.status, r.body, r.header_names()) == (404, b"", {"date", "content-length"}), r.headers
        assert pod.filter_callbacks() == before
    assert {p for _, p, _ in audit.document_requests(cluster[0].dir)} <= set(DOCS)


def test_another_host_reaches_its_backend_and_never_enters_the_filter(gateway, backend):
    pod, get = gateway
    with pod.trace_wasm():
        before = pod.filter_callbacks()
        r = get(JWKS + "?q=1", host=OTHER_HOST)
        assert r.status == 200 and r.header("x-backend") == "app", (r.status, r.body[:200])
        assert backend.last().path == JWKS + "?q=1"
        assert pod.filter_callbacks() == before
        get(JWKS)  # the OIDC host's request enters it: the count would see one
        poll(lambda: pod.filter_callbacks() > before, 5, what="the filter's callback on the OIDC host")
