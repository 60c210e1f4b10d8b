"""The Envoy that Istio would configure: envoy/istio-gateway.yaml (the chart's WasmPlugin,
EnvoyFilters, DestinationRule and VirtualService as istiod turns them into Envoy config) runs the
filter with the cluster named `outbound|443||kubernetes.default.svc.cluster.local` and the token
from the proxy's environment through `host_env_keys`. That other hosts never enter it is
tests/e2e/test_other_hosts.py."""

from __future__ import annotations

import pytest

from e2e import istiod
from e2e.checks import (DOCS, HOST, JWKS, assert_exact_upstream_request, assert_generic_error,
                        leak_words, poll)
from harness import config as cfgmod
from harness.stack import STATIC_TOKEN_ENV

ISTIO = "istio-gateway.yaml"
ISTIO_CLUSTER = "outbound|443||kubernetes.default.svc.cluster.local"


def test_the_istio_config_names_the_istio_cluster_and_takes_the_token_from_the_host():
    cfg = cfgmod.load(ISTIO)
    plugin = cfgmod.plugin_config(cfg)
    assert plugin["cluster"] == ISTIO_CLUSTER
    assert cfgmod.api_cluster(cfg) == ISTIO_CLUSTER
    cfgmod.cluster(cfg, ISTIO_CLUSTER)  # exists
    vm = cfgmod.wasm_plugin(cfg)["vm_config"]
    assert vm["environment_variables"]["host_env_keys"] == [plugin["token_env"]] == [STATIC_TOKEN_ENV]
    assert cfgmod.generic_credential(cfg, ISTIO_CLUSTER) is None  # the filter sends the token


def test_serves_both_documents_with_the_token_from_the_environment(make_stack):
    s = make_stack(ISTIO)
    for path in DOCS:
        r = s.get(path, host=HOST)
        assert r.status == 200, (path, r.status, r.body[:200])
    assert s.get(JWKS, host=HOST).body == s.fake.jwks_body()
    assert {rec.path for rec in s.fake.history} == set(DOCS)
    for rec in s.fake.history:
        assert_exact_upstream_request(rec, s.token)
    assert s.metric("kube_oidc_discovery.upstream.jwks.ok") >= 1
    assert_generic_error(s.get("/api/v1/secrets", host=HOST), 404)


def test_without_the_plugin_the_oidc_host_is_404_and_nothing_behind_the_gateway(make_stack, backend):
    # Fail-open with a plugin that did not load: the VirtualService's directResponse answers.
    s = make_stack(ISTIO, start=False, backend_port=backend.port)
    hcm = cfgmod.hcm(s.cfg)
    hcm["http_filters"] = [f for f in hcm["http_filters"] if not cfgmod.is_wasm(f)]
    assert len(hcm["http_filters"]) == 1
    cfgmod.dump(s.cfg, s.envoy.config_path)
    s.start()
    backend.reset()
    for path in (*DOCS, "/api/v1/secrets", "/"):
        assert s.get(path, host=HOST).status == 404
    assert backend.last() is None
    assert s.get("/x", host="app.example.com").status == 200
    assert s.fake.count() == 0


@pytest.mark.parametrize("variant", ["rogue", "wrong-san"])
def test_destination_rule_tls_fails_closed(make_stack, variant):
    s = make_stack(ISTIO, server_cert=variant, plugin_changes={"timeout_ms": 1000})
    assert_generic_error(s.get(JWKS, host=HOST), 503, leak_words(s.fake, s.token))
    assert poll(lambda: s.fake.handshake_failures, 5, what="a refused handshake")
    assert s.fake.count() == 0


def test_token_never_in_the_trace_log(make_stack):
    s = make_stack(ISTIO, wasm_trace=True)
    assert s.get(JWKS, host=HOST).status == 200
    s.stop()
    log = s.envoy.log_text()
    assert "[trace][wasm]" in log
    assert s.fake.last(JWKS).header("authorization") == f"Bearer {s.token}"
    assert s.token not in log


# ---------------------------------------------------------------------- tied to the Helm chart
def _chart():
    import helm  # tools/helm.py
    return helm


def _rendered(values: dict | None = None) -> dict[str, dict]:
    """The chart's objects by kind; an EnvoyFilter by kind and name suffix (`EnvoyFilter-scope`)."""
    out = {}
    for o in _chart().render(values=values):
        key = o["kind"]
        if key == "EnvoyFilter":
            key += "-" + o["metadata"]["name"].rsplit("-", 1)[1]
        assert key not in out, key
        out[key] = o
    return out


# What the yaml models: the chart with publicGateway.create (its Gateway server and VirtualService).
GATEWAY_VALUES = {"publicGateway": {"create": True}}


def test_the_istio_config_is_what_the_chart_renders():
    objs = _rendered(GATEWAY_VALUES)
    wp, dr = objs["WasmPlugin"]["spec"], objs["DestinationRule"]["spec"]
    cfg = cfgmod.load(ISTIO)
    assert cfgmod.plugin_config(cfg) == wp["pluginConfig"]
    meta = objs["WasmPlugin"]["metadata"]
    assert cfgmod.wasm_plugin(cfg)["name"] == f"{meta['namespace']}.{meta['name']}"
    host_keys = [e["name"] for e in wp["vmConfig"]["env"] if e["valueFrom"] == "HOST"]
    assert cfgmod.wasm_plugin(cfg)["vm_config"]["environment_variables"]["host_env_keys"] == host_keys
    assert ISTIO_CLUSTER == f"outbound|443||{dr['host']}"
    tls = cfgmod.tls_context(cfg, ISTIO_CLUSTER)
    assert tls["sni"] == dr["trafficPolicy"]["tls"]["sni"]
    vc = tls["common_tls_context"]["validation_context"]
    assert vc["trusted_ca"]["filename"] == dr["trafficPolicy"]["tls"]["caCertificates"]
    assert [m["matcher"]["exact"] for m in vc["match_typed_subject_alt_names"]] == \
        dr["trafficPolicy"]["tls"]["subjectAltNames"]


def test_the_istio_config_is_scoped_as_the_charts_envoy_filter_says():
    objs = _rendered(GATEWAY_VALUES)
    gw, vs = objs["Gateway"]["spec"]["servers"][0], objs["VirtualService"]
    cfg = cfgmod.load(ISTIO)
    rc = cfgmod.hcm(cfg)["route_config"]
    # istiod's names: the route table https.<port>.<port name>.<gateway>.<namespace>, the virtual
    # host <host>:<port> (gateway.go), domains the host alone (ignore_port_in_host_matching)
    gw_meta = objs["Gateway"]["metadata"]
    assert rc["name"] == f"https.{gw['port']['number']}.{gw['port']['name']}.{gw_meta['name']}.{gw_meta['namespace']}"
    assert rc["ignore_port_in_host_matching"] is True
    (host,) = vs["spec"]["hosts"]
    oidc = next(vh for vh in rc["virtual_hosts"] if vh["domains"] == [host])
    assert oidc["name"] == f"{host}:{gw['port']['number']}"
    assert oidc["routes"][0]["direct_response"]["status"] == vs["spec"]["http"][0]["directResponse"]["status"]
    # the yaml is what the EnvoyFilter makes of the config istiod builds without it
    before = cfgmod.clone(cfg)
    istiod.unscoped(before)
    assert before != cfg
    assert istiod.apply_scope(before, objs["EnvoyFilter-scope"]["spec"], inline=True) == (1, 1)
    assert before == cfg
    assert [f.get("disabled") for f in cfgmod.hcm(cfg)["http_filters"]] == [True, None]


def test_rotating_mode_from_the_chart_uses_a_swapped_token_without_a_restart(make_stack):
    from harness.stack import new_token
    objs = _rendered({"token": {"mode": "rotating"}, "plugin": {"refreshIntervalS": 5}})
    wp, ef, cm = objs["WasmPlugin"]["spec"], objs["EnvoyFilter-credential"]["spec"], objs["ConfigMap"]
    cfg = cfgmod.load(ISTIO)
    # what istiod does with the chart's objects in this mode
    cfgmod.set_plugin_config(cfg, wp["pluginConfig"])
    cfgmod.wasm_plugin(cfg)["vm_config"]["environment_variables"].pop("host_env_keys")
    (patch,) = ef["configPatches"]
    assert patch["patch"]["operation"] == "MERGE"
    istiod.merge_cluster(cfgmod.cluster(cfg, patch["match"]["cluster"]["name"]), patch["patch"]["value"])
    gen = cfgmod.generic_credential(cfg, ISTIO_CLUSTER)
    assert gen["credential"]["name"] in cm["data"]["token-sds.yaml"]
    # the mounted Secret and ConfigMap become the test's token directory and SDS file
    s = make_stack(ISTIO, base_cfg=cfg)
    assert "token_env" not in cfgmod.plugin_config(s.cfg)
    assert s.get(JWKS, host=HOST).status == 200
    assert s.fake.last(JWKS).header("authorization") == f"Bearer {s.token}"
    new = new_token()
    s.tokens.write_token(new)  # the kubelet's ..data swap of the Secret volume
    s.fake.set_token(new)
    seen = len(s.fake.history)
    poll(lambda: len(s.fake.history) > seen, 12, what="the next refresh")
    for rec in s.fake.history[seen:]:
        assert_exact_upstream_request(rec, new)
    assert s.get(JWKS, host=HOST).status == 200
