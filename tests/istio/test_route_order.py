"""Whose routes a document path takes when a user's VirtualService also names an OIDC host, run
through istiod's own code and then in Envoy. istiod takes the VirtualServices of a gateway in
creation-time order, then by name (`VirtualServiceController.MergedVirtualServices`,
`configCompareByCreationTime`), appends each one's routes to the host's virtual host in that
order, and then moves only the catch-all routes last, keeping their order (`SortVHostRoutes`,
`IsCatchAllRoute`: prefix `/` or regex `.*` with no header, query or metadata match). Envoy takes
the first route that matches. So a user's VirtualService created before the chart's takes every
document path one of its non-catch-all routes matches (with plugin.scope hosts the filter never
sees those requests), and with the chart's created first the chart's 404 catch-all comes before
the user's catch-all. With plugin.scope all the filter runs on the user's routes too and answers
every path of its hosts, whatever the order.

Every object gets a creationTimestamp (cluster.created_at): the cluster's Gateway and the
application's VirtualService a day before the chart, the user's VirtualService on the OIDC host
a minute before or after it. Each user's VirtualService is named so that the name alone would
order it the other way: the creation time decides, not the name."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from harness import pki as pkimod
from harness.checks import assert_generic_error, is_strong_etag
from harness.constants import DOCS, JWKS, NOT_FOUND_PATH
from istio import cluster, istiod, matrix
from istio.gateway import APP_HOST, ISTIOD_SERVER, ApiServer, Gateway

HOST = "oidc.example.com"
CHART_VS = "kod-kube-oidc-discovery"
CHART = f"{istiod.NAMESPACE}.{CHART_VS}"
DOCUMENTS, NOT_FOUND = f"{CHART}.documents", f"{CHART}.not-found"
INSTALLED = datetime(2026, 6, 1, 12, 0, 0, tzinfo=timezone.utc)  # the chart's objects
# the cluster's Gateway `public`, shared with an application (publicGateway.gateways)
SINGLE = matrix.Case("route-order", matrix.COLLAPSE_VALUES, own_gateway=True)
ISSUERS = matrix.Case("route-order-issuers", matrix.COLLAPSE_VALUES, own_gateway=True, issuers=True)
# the user's VirtualService on the OIDC host, per order: (created, name); "app-..." sorts before
# the chart's name, "zz-..." after it
ORDERS = {
    "user-first": (INSTALLED - timedelta(minutes=1), "zz-oidc-routes"),
    "chart-first": (INSTALLED + timedelta(minutes=1), "app-oidc-routes"),
}


def _route(name: str, match: list[dict] | None = None) -> dict:
    r = {"name": name, "route": [{"destination": {"host": APP_HOST, "port": {"number": 8080}}}]}
    return {**r, "match": match} if match else r


# single form: prefixes holding the document paths, a `/` that matches a header (not a
# catch-all), and a catch-all (no match: istiod writes prefix `/`)
SINGLE_ROUTES = [
    _route("user.well-known", [{"uri": {"prefix": "/.well-known/"}}]),
    _route("user.openid", [{"uri": {"prefix": "/openid/"}}]),
    _route("user.canary", [{"uri": {"prefix": "/"}, "headers": {"x-canary": {"exact": "1"}}}]),
    _route("user.app"),
]
# issuers form: the prefix of the issuer paths https://oidc.example.com/clusters/<name>
ISSUERS_ROUTES = [_route("user.clusters", [{"uri": {"prefix": "/clusters/"}}]), _route("user.app")]


def with_users_virtualservice(g: Gateway, order: str, routes: list[dict]) -> Gateway:
    """The chart's objects created at INSTALLED, the cluster's own a day before, and a user's
    VirtualService on the OIDC host on the same Gateway, created as ``order`` says."""
    created, name = ORDERS[order]
    chart = {(o["kind"], o["metadata"]["name"]) for o in g.objects}
    for o in g.config:
        ours = (o["kind"], o["metadata"]["name"]) in chart
        cluster.created_at([o], INSTALLED if ours else INSTALLED - timedelta(days=1))
    g.config += cluster.created_at([{
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": name, "namespace": istiod.NAMESPACE},
        "spec": {"hosts": [HOST], "gateways": [cluster.GATEWAY_NAME], "http": routes}}], created)
    return g


def route_names(g: Gateway, host: str = HOST) -> list[str]:
    """The names of the routes of ``host``'s virtual host, in istiod's (and Envoy's) order."""
    (vh,) = [vh for rc in g.result.xds["routes"] for vh in rc.get("virtual_hosts", []) if host in vh["domains"]]
    return [r["name"] for r in vh["routes"]]


def generated(tmp_path, servers, case: matrix.Case, order: str, routes: list[dict]) -> Gateway:
    g = with_users_virtualservice(Gateway(tmp_path, case, servers=servers), order, routes)
    g.generate()
    assert not g.result.problems(), g.result.problems()
    return g


USER_PREFIXES = ["user.well-known", "user.openid", "user.canary"]


def test_a_users_virtualservice_created_before_the_charts_takes_the_document_paths_it_matches(tmp_path, servers):
    g = generated(tmp_path, servers, SINGLE, "user-first", SINGLE_ROUTES)
    # the user's non-catch-all routes, a `/` with a header match among them, before the chart's
    # document route; then the catch-alls in the same order
    assert route_names(g) == USER_PREFIXES + [DOCUMENTS] * 2 + ["user.app", NOT_FOUND]


def test_a_users_clusters_prefix_created_before_the_charts_takes_every_issuer_path(tmp_path, servers):
    g = generated(tmp_path, servers, ISSUERS, "user-first", ISSUERS_ROUTES)
    # the chart's document route lists the 6 paths of its hosts: the 4 under /clusters/ are the user's
    assert route_names(g) == ["user.clusters"] + [DOCUMENTS] * 6 + ["user.app", NOT_FOUND]


def test_with_the_charts_virtualservice_created_first_its_404_comes_before_the_users_catch_all(tmp_path, servers):
    g = generated(tmp_path, servers, SINGLE, "chart-first", SINGLE_ROUTES)
    assert route_names(g) == [DOCUMENTS] * 2 + USER_PREFIXES + [NOT_FOUND, "user.app"]
    g = generated(tmp_path / "issuers", servers, ISSUERS, "chart-first", ISSUERS_ROUTES)
    assert route_names(g) == [DOCUMENTS] * 6 + ["user.clusters", NOT_FOUND, "user.app"]


def test_a_users_virtualservice_exported_only_to_the_gateways_namespace_comes_first_whatever_its_age(
        tmp_path, servers):
    # VirtualServicesForGateway: those private to the gateway's namespace, then those exported
    # to it by name, then the public ones (the chart's), each group in creation-time order
    g = with_users_virtualservice(Gateway(tmp_path, SINGLE, servers=servers), "chart-first", SINGLE_ROUTES)
    (vs,) = [o for o in g.config if o["metadata"]["name"] == ORDERS["chart-first"][1]]
    vs["spec"]["exportTo"] = ["."]
    g.generate()
    assert route_names(g) == USER_PREFIXES + [DOCUMENTS] * 2 + ["user.app", NOT_FOUND]


@pytest.mark.parametrize("name, first", [("app-oidc-routes", "user"), ("zz-oidc-routes", "chart")])
def test_in_the_same_second_the_virtualservice_name_decides(name, first, tmp_path, servers):
    g = with_users_virtualservice(Gateway(tmp_path, SINGLE, servers=servers), "user-first", SINGLE_ROUTES)
    (vs,) = [o for o in g.config if o["metadata"]["name"] == ORDERS["user-first"][1]]
    vs["metadata"]["name"] = name
    cluster.created_at([vs], INSTALLED)
    g.generate()
    names = route_names(g)
    users_first = names.index("user.well-known") < names.index(DOCUMENTS)
    assert users_first is (first == "user"), names


@pytest.fixture
def local(tmp_path):
    s = ApiServer(tmp_path, "local", "https://kubernetes.default.svc.cluster.local", pkimod.API_SERVER_SANS)
    yield s
    s.stop()


def app_answered(g: Gateway, backend, path: str) -> bool:
    backend.reset()
    r = g.get(path, host=HOST)
    rec = backend.last()
    return r.status == 200 and r.header("x-backend") == "app" and rec is not None and rec.path == path


def filter_served(g: Gateway, backend, path: str) -> bool:
    backend.reset()
    r = g.get(path, host=HOST)
    ok = r.status == 200 and is_strong_etag(r.header("etag")) and backend.last() is None
    return ok and (path != JWKS or r.body == g.servers["local"].fake.jwks_body())


@pytest.mark.parametrize("order", list(ORDERS))
def test_in_envoy_the_older_virtualservice_answers_the_document_paths(order, make_gateway, local, backend):
    g = with_users_virtualservice(make_gateway(SINGLE, {"local": local}), order, SINGLE_ROUTES).start()
    if order == "user-first":
        # the documents and every other path go to the user's application; the filter sees none
        for path in (*DOCS, NOT_FOUND_PATH):
            assert app_answered(g, backend, path), path
    else:
        for path in DOCS:
            assert filter_served(g, backend, path), path
        # the user's prefix keeps the other paths under it; the chart's 404 shadows the user's `/`
        assert app_answered(g, backend, "/.well-known/other")
        backend.reset()
        assert_generic_error(g.get(NOT_FOUND_PATH, host=HOST), 404, server=ISTIOD_SERVER)
        assert backend.last() is None


def test_with_plugin_scope_all_the_filter_answers_every_path_of_its_hosts_whatever_the_route_order(
        make_gateway, local, backend):
    # the plugin runs on every route of the gateway, the user's too: on its hosts it answers the
    # documents and a 404 for every other path, whichever route Envoy picked
    g = with_users_virtualservice(make_gateway(SINGLE, {"local": local}, values=matrix.SCOPE_ALL),
                                  "user-first", SINGLE_ROUTES).start()
    assert route_names(g)[0] == "user.well-known"
    for path in DOCS:
        assert filter_served(g, backend, path), path
    for path in ("/.well-known/other", NOT_FOUND_PATH):
        backend.reset()
        assert_generic_error(g.get(path, host=HOST), 404, server=ISTIOD_SERVER)
        assert backend.last() is None
