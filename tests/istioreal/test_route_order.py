"""Whose routes a document path takes when a user's VirtualService also routes an OIDC host,
with the creation times the real API server gives (tests/istio/test_route_order.py has istiod's
rule: the older VirtualService's routes first, then only catch-alls moved last). The chart
(classic mode, its own Gateway) serves two hosts; a user's VirtualService on oidc.example.com is
created before `helm install`, one on oidc2.example.com after it, each named so that the name
alone would order it the other way, a second apart (creationTimestamp has one-second
resolution)."""

from __future__ import annotations

import time

import pytest

from harness.checks import assert_generic_error, poll
from harness.constants import DOCS, JWKS, NOT_FOUND_PATH
from istioreal import install

FIRST, LATER = install.PUBLIC_HOSTS[0], install.PUBLIC_HOSTS[2]
CHART_VS = "kod-kube-oidc-discovery"  # the chart's VirtualService and Gateway (release kod)
# "zz-..." sorts after the chart's name, "app-..." before it
USER_FIRST, USER_LATER = "zz-oidc-routes", "app-oidc-routes"
VS_PATH = f"/apis/networking.istio.io/v1/namespaces/{install.GATEWAY_NS}/virtualservices"


def _users_virtualservice(kube, name: str, host: str) -> None:
    app = {"destination": {"host": f"{install.APP}.{install.GATEWAY_NS}.svc.cluster.local", "port": {"number": 8080}}}
    kube.create(VS_PATH, {
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": name, "namespace": install.GATEWAY_NS},
        "spec": {"hosts": [host], "gateways": [f"{install.GATEWAY_NS}/{CHART_VS}"], "http": [
            {"name": "user.well-known", "match": [{"uri": {"prefix": "/.well-known/"}}], "route": [app]},
            {"name": "user.openid", "match": [{"uri": {"prefix": "/openid/"}}], "route": [app]},
            {"name": "user.app", "route": [app]}]}})


def _next_second() -> None:
    time.sleep(1.05 - time.time() % 1)


@pytest.fixture(scope="module")
def gateway(cluster, tmp_path_factory, image, backend):
    kube, _ = cluster
    kube.create_namespace(install.GATEWAY_NS)
    _users_virtualservice(kube, USER_FIRST, FIRST)
    _next_second()

    def later(_notes):
        _next_second()
        _users_virtualservice(kube, USER_LATER, LATER)
    pod, get = install.classic_gateway(kube, tmp_path_factory.mktemp("route-order"), image, backend,
                                       {"hosts": [FIRST, LATER]}, ready_path=NOT_FOUND_PATH,
                                       ready=lambda status: status != 0, before_pod=later)
    # the gateway's config holds the later VirtualService too (its prefix route answers)
    poll(lambda: install.status_of(get, "/.well-known/other", host=LATER) == 200, 10, interval=0.3,
         what="the later VirtualService's routes")
    yield pod, get
    pod.stop()


def test_the_three_virtualservices_have_the_creation_times_of_their_order(gateway, cluster):
    kube, _ = cluster
    created = {o["metadata"]["name"]: o["metadata"]["creationTimestamp"] for o in kube.get(VS_PATH)["items"]}
    assert created[USER_FIRST] < created[CHART_VS] < created[USER_LATER], created


def _app_answered(get, backend, path: str, host: str) -> bool:
    backend.reset()
    r = get(path, host=host)
    return r.status == 200 and r.header("x-backend") == "app" and backend.last().path == path


def test_a_users_virtualservice_created_before_the_chart_takes_the_document_paths(gateway, backend):
    _, get = gateway
    for path in (*DOCS, NOT_FOUND_PATH):
        assert _app_answered(get, backend, path, FIRST), path


def test_a_users_virtualservice_created_after_the_chart_loses_the_documents_and_its_catch_all(gateway, cluster, backend):
    _, get = gateway
    kube, _ = cluster
    for path in DOCS:
        backend.reset()
        r = get(path, host=LATER)
        assert r.status == 200 and backend.last() is None, (path, r.status, r.body[:200])
    assert get(JWKS, host=LATER).body == kube.request("GET", JWKS, admin=True)[2]
    assert _app_answered(get, backend, "/.well-known/other", LATER)  # the user's prefix keeps the rest
    backend.reset()
    assert_generic_error(get(NOT_FOUND_PATH, host=LATER), 404, server="istio-envoy")  # the chart's 404 first
    assert backend.last() is None
