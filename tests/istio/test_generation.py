"""What istiod's own config generation sends the gateway for each case of the matrix
(tests/istio/istiod.py): the facts the chart relies on, read from istiod's output rather than
from its source. The Wasm filter is disabled in every HTTP connection manager of the gateway and
enabled exactly on the chart's routes (by route name; never on an application's route, also
when a user's VirtualService shares an OIDC host and virtual hosts collapse); every API server's
cluster reaches the gateway, with PILOT_FILTER_GATEWAY_CLUSTER_CONFIG on too; the cluster's TLS is
the DestinationRule's; the plugin's configuration is the WasmPlugin's pluginConfig as istiod
serialises it."""

from __future__ import annotations

import json

import pytest

from harness.config import HCM
from harness.config import WASM_TYPE as WASM
from istio import matrix
from istio.gateway import Gateway



_generated: dict[str, Gateway] = {}


@pytest.fixture
def generated(servers, tmp_path_factory):
    """One generation per case for the module (istiod's output does not change between tests)."""
    def get(case: matrix.Case) -> Gateway:
        if case.id not in _generated:
            g = Gateway(tmp_path_factory.mktemp(case.id), case, servers=servers)
            g.generate()
            _generated[case.id] = g
        return _generated[case.id]
    return get


def hcms(result) -> list[dict]:
    out = []
    for ls in result.xds["listeners"]:
        for fc in ls.get("filter_chains", []):
            out += [f["typed_config"] for f in fc["filters"] if f["name"] == HCM]
    return out


def wasm_filter_names(result) -> set[str]:
    return {e["name"] for e in result.xds.get("extensions", []) if e["typed_config"]["@type"] == WASM}


def enabled_routes(result, filter_name: str) -> dict[str, list[str]]:
    """Virtual host -> names of its routes where the filter is enabled (route or vhost level)."""
    out = {}
    for rc in result.xds["routes"]:
        for vh in rc.get("virtual_hosts", []):
            vh_on = filter_name in (vh.get("typed_per_filter_config") or {})
            names = [r.get("name", "") for r in vh.get("routes", [])
                     if vh_on or filter_name in (r.get("typed_per_filter_config") or {})]
            if names:
                out[vh["name"]] = names
    return out


def chart_route_names(g: Gateway) -> set[str]:
    prefix = "istio-ingress.kod-kube-oidc-discovery."
    return {prefix + s for s in (("0", "1") if g.case.gateway_api else ("documents", "not-found"))}


@pytest.mark.parametrize("case", matrix.CASES, ids=[c.id for c in matrix.CASES])
def test_the_filter_runs_on_the_charts_routes_only(case, generated):
    g = generated(case)
    r = g.result
    (name,) = wasm_filter_names(r)
    scope_all = g.values.get("plugin", {}).get("scope") == "all"
    # in every HTTP connection manager of the gateway, disabled unless scope all
    for hcm in hcms(r):
        (f,) = [f for f in hcm["http_filters"] if f["name"] == name]
        assert f.get("disabled", False) is (not scope_all), f
        assert "config_discovery" in f
    if scope_all:
        assert enabled_routes(r, name) == {}
        return
    on = enabled_routes(r, name)
    assert on, "the filter is enabled nowhere"
    assert {n for names in on.values() for n in names} == chart_route_names(g), on
    # every public host's virtual host has the chart's routes enabled
    for host in g.public_hosts():
        vhs = [vh for rc in r.xds["routes"] for vh in rc.get("virtual_hosts", []) if host in vh["domains"]]
        assert vhs and all(vh["name"] in on for vh in vhs), (host, on)


@pytest.mark.parametrize("case", matrix.CASES, ids=[c.id for c in matrix.CASES])
def test_every_api_servers_cluster_reaches_the_gateway(case, generated):
    g = generated(case)
    (wp,) = [o for o in g.objects if o["kind"] == "WasmPlugin"]
    pc = wp["spec"]["pluginConfig"]
    wanted = {e["cluster"] for e in pc.get("issuers", [pc])}
    assert wanted <= set(g.result.names("clusters")), (wanted, g.result.names("clusters"))
    for name in wanted:
        c = g.result.resource("clusters", name)
        ts = c["transport_socket"]["typed_config"]
        assert ts["@type"].endswith("UpstreamTlsContext")
        assert ts["sni"] in ("kubernetes.default.svc", "api.prod.example.internal")


def test_a_dotless_api_server_host_gets_no_tls(servers, tmp_path):
    """Why the chart's schema wants a dot in apiServer.host: istiod reads a DestinationRule's
    dotless host as a short name of its namespace (`localhost` -> localhost.istio-ingress.svc.
    cluster.local), so the rule never applies to a ServiceEntry host without a dot and the
    cluster has no TLS at all. The chart refuses such a host, so the objects are rendered with a
    dotted one and renamed."""
    values = {"issuers": [{"name": "local", "issuer": "https://oidc.example.com/clusters/local"},
                          {"name": "edge", "issuer": "https://edge-oidc.example.com",
                           "apiServer": {"host": "edge.invalid", "port": 6443}}]}
    g = Gateway(tmp_path, matrix.BY_ID["classic"], servers=servers, values=values)
    for o in g.config:
        if o["kind"] == "ServiceEntry":
            o["spec"]["hosts"] = ["localhost" if h == "edge.invalid" else h for h in o["spec"]["hosts"]]
        if o["kind"] == "DestinationRule" and o["spec"]["host"] == "edge.invalid":
            o["spec"]["host"] = "localhost"
    g.generate()
    assert "transport_socket" not in g.result.resource("clusters", "outbound|6443||localhost")
    assert "transport_socket" in g.result.resource("clusters", "outbound|443||kubernetes.default.svc.cluster.local")


def test_the_in_cluster_api_server_tls_is_the_destination_rules(generated):
    g = generated(matrix.BY_ID["classic"])
    (dr,) = [o for o in g.objects if o["kind"] == "DestinationRule"]
    tls = dr["spec"]["trafficPolicy"]["tls"]
    c = g.result.resource("clusters", "outbound|443||kubernetes.default.svc.cluster.local")
    ctx = c["transport_socket"]["typed_config"]
    assert ctx["sni"] == tls["sni"]
    vc = ctx["common_tls_context"]["combined_validation_context"]
    sans = [m["exact"] for m in vc["default_validation_context"]["match_subject_alt_names"]]
    assert sans == tls["subjectAltNames"]
    # the CA: an SDS secret pilot-agent serves from the gateway's file
    assert vc["validation_context_sds_secret_config"]["name"] == f"file-root:{tls['caCertificates']}"


def test_the_plugin_gets_the_wasmplugins_config_as_istiod_serialises_it(generated):
    g = generated(matrix.BY_ID["classic"])
    (wp,) = [o for o in g.objects if o["kind"] == "WasmPlugin"]
    (ext,) = [e for e in g.result.xds["extensions"] if e["typed_config"]["@type"] == WASM]
    cfg = ext["typed_config"]["config"]
    assert cfg["name"] == ext["name"].rsplit("/", 1)[1]  # <ns>.<name>~istio-translated-wasmplugin at this version
    assert json.loads(cfg["configuration"]["value"]) == wp["spec"]["pluginConfig"]
    env = [e["name"] for e in wp["spec"]["vmConfig"]["env"]]
    assert cfg["vm_config"]["environment_variables"]["host_env_keys"] == env
    assert cfg["vm_config"]["code"]["remote"]["http_uri"]["uri"] == wp["spec"]["url"]
