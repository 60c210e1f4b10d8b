"""Serving the two documents, and everything else a public host gets: envoy/pod.yaml as shipped
(hosts ["oidc.example.com"], jwks_uri override, credential_injector token) in a real Envoy."""

from __future__ import annotations

import json

import pytest

from e2e.checks import (DISCOVERY, DOC_HEADERS, DOCS, FAKE_DATE, HOST, JWKS,
                        assert_exact_upstream_request, assert_generic_error,
                        assert_no_upstream_headers, is_strong_etag, poll)
from harness import client
from harness.fake_apiserver import DEFAULT_JWKS_URI
from harness.stack import Stack

PUBLIC_JWKS_URI = "https://oidc.example.com/openid/v1/jwks"
NOT_FOUND_PATHS = [
    "/openid/v1/jwks/",
    "/openid/v1/jwk%73",
    "/OPENID/v1/jwks",
    "//openid/v1/jwks",
    "/openid/v1/../v1/jwks",
    "/api/v1/secrets",
    "/.well-known/openid-configuration/../../api",
    "/.well-known/openid-configuration/",
    "/.well-known/",
    "/openid/v1/jwks;x",
    "/openid/v1",
    "/",
    "/api/v1/namespaces/kube-system/secrets?watch=1",
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, pki, wasm, backend):
    s = Stack(tmp_path_factory.mktemp("serving"), pki, wasm, "pod.yaml", backend_port=backend.port)
    s.fake.date_override = FAKE_DATE  # so an upstream Date would be recognisable
    s.start()
    # the plugin prefetches both documents at start
    poll(lambda: s.fake.count(DISCOVERY) and s.fake.count(JWKS), 10, what="prefetch")
    yield s
    s.stop()


@pytest.fixture
def fresh(stack, backend):
    """The module stack with clean request records."""
    stack.fake.reset()
    backend.reset()
    return stack


def test_shipped_plugin_config_is_what_this_module_tests(stack):
    from harness import config
    plugin = config.plugin_config(stack.cfg)
    assert plugin == {"hosts": [HOST], "jwks_uri": PUBLIC_JWKS_URI}


def test_discovery_served_with_jwks_uri_rewritten_and_every_other_byte_kept(fresh):
    r = fresh.get(DISCOVERY)
    assert r.status == 200
    upstream = fresh.fake.discovery_body()
    old = json.dumps(DEFAULT_JWKS_URI).encode()
    assert upstream.count(old) == 1
    assert r.body == upstream.replace(old, json.dumps(PUBLIC_JWKS_URI).encode())
    doc = json.loads(r.body)
    assert doc["issuer"] == fresh.fake.issuer
    assert doc["jwks_uri"] == PUBLIC_JWKS_URI
    assert r.header("content-type") == "application/json"


def test_jwks_served_byte_for_byte(fresh):
    r = fresh.get(JWKS)
    assert r.status == 200
    assert r.body == fresh.fake.jwks_body()
    assert r.header("content-type") == "application/jwk-set+json"


def test_discovery_byte_for_byte_without_jwks_uri(make_stack):
    s = make_stack("pod.yaml", plugin_changes={"jwks_uri": None})
    r = s.get(DISCOVERY)
    assert r.status == 200
    assert r.body == s.fake.discovery_body()
    assert json.loads(r.body)["jwks_uri"] == DEFAULT_JWKS_URI


@pytest.mark.parametrize("path", DOCS)
def test_only_the_listed_headers_are_relayed(fresh, path):
    r = fresh.get(path)
    assert r.status == 200
    assert r.header_names() == DOC_HEADERS, r.headers
    for name in DOC_HEADERS:
        assert len(r.header_all(name)) == 1, (name, r.headers)
    assert r.header("cache-control") == "public, max-age=3600"
    assert r.header("x-content-type-options") == "nosniff"
    assert r.header("content-length") == str(len(r.body))
    assert is_strong_etag(r.header("etag")), r.header("etag")
    assert r.header("age").isdigit(), r.header("age")
    assert_no_upstream_headers(r)


@pytest.mark.parametrize("path", DOCS)
def test_head_has_the_same_headers_and_no_body(fresh, path):
    g = fresh.get(path)
    h = fresh.head(path)
    assert (g.status, h.status) == (200, 200)
    assert h.body == b""
    assert h.header_names() == g.header_names()
    for name in g.header_names() - {"date", "age"}:
        assert h.header(name) == g.header(name), name
    assert h.header("content-length") == str(len(g.body))
    assert fresh.fake.count() == 0, "HEAD must be answered from the copy"


@pytest.mark.parametrize("path", DOCS)
def test_query_string_is_ignored(fresh, path):
    plain = fresh.get(path)
    for query in ("?x=1", "?", "?watch=true&resourceVersion=0", "?a=%2e%2e%2fapi"):
        r = fresh.get(path + query)
        assert r.status == 200, query
        assert r.body == plain.body, query
        assert r.header("etag") == plain.header("etag")
    assert fresh.fake.count() == 0


@pytest.mark.parametrize("path", DOCS)
def test_if_none_match_gives_304_without_body(fresh, path):
    etag = fresh.get(path).header("etag")
    r = fresh.get(path, headers={"if-none-match": etag})
    assert r.status == 304
    assert r.body == b""
    assert r.header("etag") == etag
    r = fresh.get(path, headers={"if-none-match": '"something-else"'})
    assert r.status == 200 and r.body


def test_every_upstream_request_is_the_filters_constant_request(stack):
    recorded = list(stack.fake.history)
    assert recorded, "no upstream request recorded"
    for rec in recorded:
        assert_exact_upstream_request(rec, stack.token)


@pytest.mark.parametrize("path", NOT_FOUND_PATHS)
def test_other_paths_are_404_without_upstream_request(fresh, path):
    before = fresh.metric("kube_oidc_discovery.requests.not_found")
    r = fresh.get(path)
    assert_generic_error_404(r)
    assert fresh.fake.count() == 0
    assert fresh.metric("kube_oidc_discovery.requests.not_found") == before + 1


def assert_generic_error_404(r):
    assert r.status == 404, (r.status, r.body)
    assert r.body == b'{"error":"not found"}'
    assert r.header("content-type") == "application/json"
    assert r.header("x-content-type-options") == "nosniff"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_paths_with_other_methods_are_404(fresh, method):
    r = fresh.request("/api/v1/secrets", method=method, body=b"{}")
    assert_generic_error_404(r)
    assert fresh.fake.count() == 0


@pytest.mark.parametrize("method", ["GET", "OPTIONS"])
def test_asterisk_request_target_never_reaches_the_api_server(fresh, method):
    # Envoy's HTTP/1 codec refuses `GET *` (400, http1.invalid_url) and answers `OPTIONS *` with
    # 404 (absolute_path_rejected) before any HTTP filter runs: not served, nothing upstream.
    r = fresh.request("*", method=method)
    assert r.status in (400, 404), r.status
    assert b"keys" not in r.body and b"issuer" not in r.body
    assert fresh.fake.count() == 0


@pytest.mark.parametrize("path", DOCS)
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_on_the_document_paths_are_405(fresh, path, method):
    r = fresh.request(path, method=method, body=b'{"keys":[]}',
                      headers={"content-type": "application/json"})
    assert r.status == 405
    assert r.body == b'{"error":"method not allowed"}'
    assert r.header("allow") == "GET, HEAD"
    assert r.header("content-type") == "application/json"
    assert fresh.fake.count() == 0


@pytest.mark.parametrize("host", ["OIDC.Example.COM", "oidc.example.com:8080", "OIDC.EXAMPLE.COM:443",
                                  "oidc.example.com:80"])
def test_public_host_matches_case_insensitively_and_with_a_port(fresh, backend, host):
    r = fresh.get(JWKS, host=host)
    assert r.status == 200
    assert r.body == fresh.fake.jwks_body()
    r = fresh.get("/api/v1/secrets", host=host)
    assert r.status == 404 and r.body == b'{"error":"not found"}'
    assert backend.last() is None
    assert fresh.fake.count() == 0


def test_client_headers_and_body_never_reach_the_api_server(make_stack):
    # Make the API server fail at start, so the copy is missing and the requests below are the
    # ones waiting for (and triggering) the next fetch; then let it answer.
    s = make_stack("pod.yaml", start=False)
    s.fake.set_mode("fail", status=500)
    s.start()
    poll(lambda: s.metric("kube_oidc_discovery.upstream.jwks.http_error"), 10, what="failed prefetch")
    s.fake.set_mode("ok")
    evil = [
        ("authorization", "Bearer client-secret"),
        ("x-evil", "evil-value"),
        ("cookie", "session=client-cookie"),
        ("user-agent", "evil-agent/6.6.6"),
        ("x-forwarded-for", "6.6.6.6"),
        ("impersonate-user", "system:admin"),
        ("impersonate-group", "system:masters"),
        ("content-type", "application/json"),
        ("accept", "text/html"),
    ]

    def attempt():
        statuses = []
        for path in DOCS:
            for method in ("HEAD", "GET"):  # a client HEAD must still be a GET upstream
                r = s.request(path + "?evil-query=1", method=method, headers=evil,
                              body=b'{"evil-body":true}')
                statuses.append(r.status)
        return all(st == 200 for st in statuses)

    poll(attempt, 15, interval=0.2, what="documents served after the API server recovered")
    recorded = s.fake.requests
    assert recorded
    for rec in recorded:
        assert_exact_upstream_request(rec, s.token)
        flat = repr(rec.headers) + rec.path + rec.body.decode("latin-1")
        for word in ("client-secret", "evil", "6.6.6", "client-cookie", "system:admin",
                     "system:masters", "text/html"):
            assert word not in flat, f"{word!r} reached the API server: {rec}"


def test_one_upstream_fetch_per_document_for_the_whole_process(make_stack):
    s = make_stack("pod.yaml", concurrency=2)
    bodies = set()
    for i in range(40):
        r = s.get(JWKS if i % 2 else DISCOVERY)  # one connection per request: spread over workers
        assert r.status == 200
        bodies.add(r.body)
    assert len(bodies) == 2
    assert s.fake.count(JWKS) == 1
    assert s.fake.count(DISCOVERY) == 1


def test_metrics_in_admin_stats_and_prometheus(fresh):
    name = "kube_oidc_discovery.requests.jwks.fresh"
    before = fresh.metric(name)
    for _ in range(3):
        assert fresh.get(JWKS).status == 200
    assert fresh.metric(name) == before + 3
    stats = fresh.envoy.stats("kube_oidc_discovery")
    for m in ("requests.discovery.fresh", "requests.jwks.not_modified", "requests.jwks.stale",
              "requests.jwks.upstream_error", "requests.not_found", "requests.method_not_allowed",
              "upstream.jwks.ok", "upstream.discovery.ok", "upstream.jwks.timeout",
              "copy.jwks.age_s"):
        assert f"wasmcustom.kube_oidc_discovery.{m}" in stats, m
    assert stats["wasmcustom.kube_oidc_discovery.upstream.jwks.ok"] >= 1
    prom = fresh.envoy.prometheus()
    line = [ln for ln in prom.splitlines() if ln.startswith("kube_oidc_discovery_requests_jwks_fresh")]
    assert line, "kube_oidc_discovery_requests_jwks_fresh missing from /stats/prometheus"
    assert int(float(line[0].rsplit(" ", 1)[1])) == before + 3
    assert "kube_oidc_discovery_upstream_jwks_latency_ms_bucket" in prom


def test_error_answers_carry_no_upstream_headers(fresh):
    r = fresh.get("/nope")
    assert_no_upstream_headers(r)
    assert_generic_error(fresh.request(JWKS, method="POST", body=b"x"), 405)


def test_requests_waiting_for_the_first_fetch_get_the_full_document(make_stack):
    import threading
    s = make_stack("pod.yaml", start=False, concurrency=2)
    s.fake.set_mode("delay", delay_s=1.0)  # the prefetch is still in flight when clients come
    s.start()
    results = []

    def fetch(path):
        r = s.get(path)
        results.append((path, r))

    threads = [threading.Thread(target=fetch, args=(p,)) for p in DOCS * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(results) == 8
    s.fake.set_mode("ok")
    want = {DISCOVERY: None, JWKS: s.fake.jwks_body()}
    for path, r in results:
        assert r.status == 200, (path, r.status, r.body)
        assert r.header("content-length") == str(len(r.body))
        if want[path] is not None:
            assert r.body == want[path]
        assert json.loads(r.body)
    assert s.fake.count(JWKS) == 1 and s.fake.count(DISCOVERY) == 1
