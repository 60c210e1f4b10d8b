"""What istiod produced for the chart, in real Envoy (1.40; `make envoy-matrix`: the Envoy of
each supported Istio release, harness.releases) (tests/istio/gateway.py): the single
form in each mode of the matrix. On each public host both documents are served from this
cluster's API server with the gateway's token, every other path is a 404; the application hosts
on the same gateway reach their backend untouched and never enter the filter (Wasm trace log,
as tests/e2e/test_other_hosts.py counts it); the token reaches the API server in both token
modes; a wrong CA fails closed; a plugin pilot-agent could not fetch fails open to the chart's
404 routes."""

from __future__ import annotations

import pytest

from harness.checks import (assert_exact_upstream_request, assert_generic_error, is_strong_etag, leak_words,
                            plugin_log_lines, poll)
from harness.constants import DOCS, JWKS
from e2e.test_other_hosts import STREAM_CALLBACK
from harness import envoy, pki as pkimod, releases
from harness.stack import new_token
from istio import matrix
from istio.gateway import ISTIOD_SERVER, ApiServer, Gateway

ISTIO_API_CLUSTER = "outbound|443||kubernetes.default.svc.cluster.local"

SERVED = ["classic", "classic-scope-all", "classic-filtered-clusters", "classic-no-route-collapse",
          "collapse-shared-host", "collapse-two-oidc-hosts", "gateway-api", "gateway-api-filtered-clusters"]


@pytest.fixture
def local(tmp_path):
    s = ApiServer(tmp_path, "local", "https://kubernetes.default.svc.cluster.local", pkimod.API_SERVER_SANS)
    yield s
    s.stop()



def start(make_gateway, case, servers, image, module_fetched=True, **kw) -> Gateway:
    g = make_gateway(case, servers, image=image, **kw)
    g.start(wasm_trace=True, module_fetched=module_fetched)
    if module_fetched and servers["local"].fake.handshake_failures == 0 and "timeoutMs" not in kw.get("values", {}).get("plugin", {}):
        # the VM fetches both documents at start, whether or not a request enters the filter
        poll(g.envoy.prefetched, 10, what="the prefetch")
    return g


def callbacks(g: Gateway) -> int:
    return len(STREAM_CALLBACK.findall(g.envoy.log_text()))


def pass_app_hosts(g: Gateway, backend) -> None:
    body = b"payload for the application"
    upstream = g.servers["local"].fake.count()
    for host in g.case.app_hosts:
        if host in g.public_hosts():
            continue
        backend.reset()
        r = g.request(JWKS + "?q=1", method="POST", host=host, body=body,
                      headers=[("x-app-header", "kept"), ("authorization", "Bearer app-user-token")])
        assert r.status == 200 and r.header("x-backend") == "app", (host, r.status, r.body[:200])
        rec = backend.last()
        assert (rec.method, rec.path, rec.body) == ("POST", JWKS + "?q=1", body)
        assert rec.header("x-app-header") == "kept" and rec.header("authorization") == "Bearer app-user-token"
    assert g.servers["local"].fake.count() == upstream


def serve_public_hosts(g: Gateway, backend) -> int:
    """Both documents and a 404 on every public host; returns the requests made. Where a user's
    VirtualService also routes a public host (the collapse cases), its other paths are the
    user's: only the documents are the filter's there."""
    fake, n = g.servers["local"].fake, 0
    backend.reset()
    for host in g.public_hosts():
        for path in DOCS:
            r = g.get(path, host=host)
            assert r.status == 200 and is_strong_etag(r.header("etag")), (
                host, path, r.status, r.body[:200], plugin_log_lines(g.envoy.log_text())[-4:])
        assert g.get(JWKS, host=host).body == fake.jwks_body()
        n += 3
        if host not in g.case.app_hosts:
            assert_generic_error(g.get("/api/v1/secrets", host=host), 404, server=ISTIOD_SERVER)
            n += 1
            assert backend.last() is None
    assert {rec.path for rec in fake.history} == set(DOCS)
    for rec in fake.history:
        assert_exact_upstream_request(rec, g.servers["local"].token)
    return n


@pytest.mark.parametrize("case_id", SERVED)
def test_public_hosts_served_and_app_hosts_untouched(case_id, make_gateway, local, image, backend):
    g = start(make_gateway, matrix.BY_ID[case_id], {"local": local}, image)
    pass_app_hosts(g, backend)
    apps = len([h for h in g.case.app_hosts if h not in g.public_hosts()])
    scope_all = g.values.get("plugin", {}).get("scope") == "all"
    poll(lambda: callbacks(g) >= (apps if scope_all else 0), 5, what="the app hosts' callbacks")
    assert callbacks(g) == (apps if scope_all else 0)
    n = serve_public_hosts(g, backend)
    poll(lambda: callbacks(g) >= n + (apps if scope_all else 0), 5, what="the public hosts' callbacks")
    assert callbacks(g) == n + (apps if scope_all else 0)


@pytest.mark.needs_header_value_prefix
@pytest.mark.parametrize("case_id", ["classic-rotating", "gateway-api-rotating"])
def test_rotating_token_from_the_mounted_secret_without_a_restart(case_id, make_gateway, local, image):
    g = start(make_gateway, matrix.BY_ID[case_id], {"local": local}, image,
              values={"plugin": {"refreshIntervalS": 5}})
    assert g.static_tokens() == {}  # no token in the gateway's environment
    assert g.get(JWKS, host="oidc.example.com").status == 200
    assert_exact_upstream_request(local.fake.last(JWKS), local.token)
    new = new_token()
    g.token_dirs["local"].write_token(new)  # the kubelet's ..data swap of the Secret volume
    local.fake.set_token(new)
    seen = len(local.fake.history)
    poll(lambda: len(local.fake.history) > seen, 12, what="the next refresh")
    for rec in local.fake.history[seen:]:
        assert_exact_upstream_request(rec, new)
    assert g.get(JWKS, host="oidc.example.com").status == 200


@pytest.mark.skipif(envoy.has_header_value_prefix(),
                    reason="the defect of an Envoy without header_value_prefix (make envoy-matrix: 1.36)")
@pytest.mark.parametrize("case_id", ["classic-rotating", "gateway-api-rotating"])
def test_rotating_in_istio_1_28s_envoy_leaves_the_gateway_without_the_api_servers_cluster(case_id, make_gateway, local, image):
    # istiod (1.28.8 and later know the field) sends header_value_prefix; Envoy 1.36 (Istio 1.28's
    # gateway) refuses the API server's cluster for that unknown field, so the filter has no
    # cluster to call: why the chart says rotating needs Istio 1.29 (docs/support.md)
    g = make_gateway(matrix.BY_ID[case_id], {"local": local}, image=image).start()
    r = g.get(JWKS, host="oidc.example.com")
    assert_generic_error(r, 503, leak_words(local.fake, local.token), server=ISTIOD_SERVER)
    assert local.fake.count() == 0
    refusal = f"Error adding/updating cluster(s) {ISTIO_API_CLUSTER}: {releases.HEADER_VALUE_PREFIX_XDS_REFUSAL}"
    for line in (refusal, "the call could not be dispatched (is the cluster defined?)"):
        poll(lambda: line in " ".join(g.envoy.log_text().split()), 10, what=line)


@pytest.mark.parametrize("variant", ["wrong-ca", "wrong-san"])
def test_the_destination_rules_tls_fails_closed(variant, make_gateway, tmp_path, image):
    other = ApiServer(tmp_path, "other", "https://x", pkimod.API_SERVER_SANS)
    sans = pkimod.API_SERVER_SANS if variant == "wrong-ca" else ["wrong.example"]
    local = ApiServer(tmp_path, "local", "https://kubernetes.default.svc.cluster.local", sans,
                      signed_by=other if variant == "wrong-ca" else None)
    try:
        g = start(make_gateway, matrix.BY_ID["classic"], {"local": local}, image,
                  values={"plugin": {"timeoutMs": 1000}})
        assert_generic_error(g.get(JWKS, host="oidc.example.com"), 503, leak_words(local.fake, local.token), server=ISTIOD_SERVER)
        assert poll(lambda: local.fake.handshake_failures, 5, what="a refused handshake")
        assert local.fake.count() == 0
    finally:
        local.stop()
        other.stop()


def test_a_plugin_the_agent_cannot_fetch_fails_open_to_the_charts_404(make_gateway, local, image, backend):
    # a sha256 that is not the image's: pilot-agent's pkg/wasm refuses the module and, as
    # failStrategy FAIL_OPEN says, hands Envoy an allow-all RBAC filter in its place
    bad = type(image)(image.registry, image.url, "0" * 64)
    g = start(make_gateway, matrix.BY_ID["classic"], {"local": local}, bad, module_fetched=False)
    for path in (*DOCS, "/"):  # the chart's VirtualService answers (directResponse 404)
        r = g.get(path, host="oidc.example.com")
        assert (r.status, r.body) == (404, b'{"error":"not found"}'), (path, r.status, r.body[:200])
    assert backend.last() is None and local.fake.count() == 0
    pass_app_hosts(g, backend)


def test_token_never_in_the_trace_log(make_gateway, local, image):
    g = start(make_gateway, matrix.BY_ID["classic"], {"local": local}, image)
    assert g.get(JWKS, host="oidc.example.com").status == 200
    g.stop()
    log = g.envoy.log_text()
    assert "[trace][wasm]" in log
    assert local.fake.last(JWKS).header("authorization") == f"Bearer {local.token}"
    assert local.token not in log


def test_the_largest_values_as_istiod_serialises_them(make_gateway, local, image):
    # pluginConfig goes Struct -> JSON in istiod (numbers are doubles there): the filter must
    # accept what istiod writes for the schema's largest values
    values = {"plugin": {"maxStaleS": 31536000, "refreshIntervalS": 86400, "timeoutMs": 60000}}
    g = start(make_gateway, matrix.BY_ID["classic"], {"local": local}, image, values=values)
    (ext,) = g.result.agent_ecds
    sent = ext["typed_config"]["config"]["configuration"]["value"]
    # Go's encoding/json writes these doubles as integers
    assert '"max_stale_s":31536000' in sent and '"refresh_interval_s":86400' in sent and '"timeout_ms":60000' in sent, sent
    assert g.get(JWKS, host="oidc.example.com").body == local.fake.jwks_body()
