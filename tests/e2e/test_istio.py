"""The Envoy that Istio would configure: envoy/istio-gateway.yaml (the chart's WasmPlugin,
DestinationRule and VirtualService as istiod turns them into Envoy config) runs the filter with
the cluster named `outbound|443||kubernetes.default.svc.cluster.local` and the token from the
proxy's environment through `host_env_keys`."""

from __future__ import annotations

import pytest

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


def test_other_hosts_still_reach_their_application(make_stack, backend):
    s = make_stack(ISTIO, backend_port=backend.port)
    poll(lambda: s.fake.count() >= 2, 5, what="the prefetch of both documents")
    backend.reset()
    before = s.fake.count()
    r = s.get("/openid/v1/jwks", host="app.example.com")
    assert r.status == 200 and r.header("x-backend") == "app"
    assert backend.last().path == "/openid/v1/jwks"
    assert s.fake.count() == before


def test_without_the_plugin_the_oidc_host_is_404_and_nothing_behind_the_gateway(make_stack, backend):
    # Fail-open with a plugin that did not load: the VirtualService's directResponse answers.
    s = make_stack(ISTIO, start=False, backend_port=backend.port)
    hcm = cfgmod.hcm(s.cfg)
    hcm["http_filters"] = [f for f in hcm["http_filters"] if f["typed_config"]["@type"] != cfgmod.WASM_TYPE]
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
