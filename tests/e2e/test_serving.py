"""Serving the two documents, and everything else a public host gets: envoy/pod.yaml as shipped
(hosts ["oidc.example.com"], jwks_uri override, credential_injector token) in a real Envoy; in an
Envoy that refuses pod.yaml (1.36: harness.envoy.pod_config), envoy/pod-static-token.yaml."""

from __future__ import annotations

import json
import time

import pytest

from harness.checks import (DOC_HEADERS, ERROR_BODIES, FAKE_DATE, assert_exact_upstream_request,
                        assert_generic_error, assert_no_upstream_headers, is_strong_etag, poll,
                        served_discovery)
from harness.constants import DISCOVERY, DOCS, HOST, JWKS
from harness.fake_apiserver import DEFAULT_JWKS_URI
from harness.stack import Stack

PUBLIC_JWKS_URI = f"https://{HOST}{JWKS}"
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
def pod_stack(tmp_path_factory, pki, wasm, backend):
    """One Stack of the shipped envoy/pod.yaml (or what this Envoy runs instead) for the whole
    module (tests that need a stack of their own take make_stack)."""
    s = Stack(tmp_path_factory.mktemp("serving"), pki, wasm, backend_port=backend.port)
    s.fake.date_override = FAKE_DATE  # so an upstream Date would be recognisable
    s.start()
    # the plugin prefetches both documents at start
    poll(s.envoy.prefetched, 10, what="the prefetch")
    yield s
    s.stop()


@pytest.fixture
def fresh(pod_stack, backend):
    """The module stack with clean request records."""
    pod_stack.fake.reset()
    backend.reset()
    return pod_stack


def test_shipped_plugin_config_is_what_this_module_tests(pod_stack):
    from harness import config
    plugin = config.plugin_config(pod_stack.cfg)
    # envoy/pod-static-token.yaml also names the token's variable
    plugin.pop("token_env", None)
    assert plugin == {"hosts": [HOST], "jwks_uri": PUBLIC_JWKS_URI}


def test_discovery_served_with_jwks_uri_rewritten_and_every_other_byte_kept(fresh):
    r = fresh.get(DISCOVERY)
    assert r.status == 200
    assert r.body == served_discovery(fresh.fake, PUBLIC_JWKS_URI)
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
    s = make_stack(plugin_changes={"jwks_uri": None})
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
    assert plain.status == 200
    for query in ("?x=1", "?", "?watch=true&resourceVersion=0", "?a=%2e%2e%2fapi"):
        r = fresh.get(path + query)
        assert r.status == 200, query
        assert r.body == plain.body, query
        assert r.header("etag") == plain.header("etag")
    assert fresh.fake.count() == 0


def test_if_none_match_gives_304_and_the_age_grows(make_stack):
    s = make_stack()  # refresh every 60 s: the copy only ages during this test
    first = {path: s.get(path) for path in DOCS}
    for path, r0 in first.items():
        assert r0.status == 200
        etag = r0.header("etag")
        # a strong etag matches itself, in a list, and weakly (RFC 9110 weak comparison)
        for inm in (etag, f'"nope", {etag}', f"W/{etag}", "*"):
            r = s.get(path, headers={"If-None-Match": inm})
            assert r.status == 304, (inm, r.status)
            assert r.body == b""
            assert r.header("etag") == etag
        for inm in ('"0123456789abcdef-1"', etag.strip('"')):
            r = s.get(path, headers={"If-None-Match": inm})
            assert r.status == 200 and r.body == r0.body, (inm, r.status)
    time.sleep(2.2)
    for path, r0 in first.items():
        r = s.get(path)
        assert int(r.header("age")) >= int(r0.header("age")) + 2, r.headers
        r304 = s.get(path, headers={"If-None-Match": r0.header("etag")})
        assert r304.status == 304 and int(r304.header("age")) >= 2
    for name in ("discovery", "jwks"):
        assert s.metric(f"kube_oidc_discovery.requests.{name}.not_modified") == 5
    assert all(s.fake.count(p) == 1 for p in DOCS), s.fake.counts


def test_every_upstream_request_is_the_filters_constant_request(pod_stack):
    recorded = list(pod_stack.fake.history)
    assert recorded, "no upstream request recorded"
    for rec in recorded:
        assert_exact_upstream_request(rec, pod_stack.token)


@pytest.mark.parametrize("path", NOT_FOUND_PATHS)
def test_other_paths_are_404_without_upstream_request(fresh, path):
    before = fresh.metric("kube_oidc_discovery.requests.not_found")
    assert_generic_error(fresh.get(path), 404)
    assert fresh.fake.count() == 0
    assert fresh.metric("kube_oidc_discovery.requests.not_found") == before + 1


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_paths_with_other_methods_are_404(fresh, method):
    assert_generic_error(fresh.request("/api/v1/secrets", method=method, body=b"{}"), 404)
    assert fresh.fake.count() == 0


@pytest.mark.parametrize("method, status", [("GET", 400), ("OPTIONS", 404)])
def test_asterisk_request_target_never_reaches_the_api_server(fresh, method, status):
    # Envoy's HTTP/1 codec refuses `GET *` (400, http1.invalid_url) and answers `OPTIONS *` with
    # 404 (absolute_path_rejected) before any HTTP filter runs: not served, nothing upstream.
    before = fresh.metric("kube_oidc_discovery.requests.not_found")
    r = fresh.request("*", method=method)
    assert r.status == status
    assert r.body != ERROR_BODIES[404], "the filter saw the request"
    assert fresh.metric("kube_oidc_discovery.requests.not_found") == before
    assert fresh.fake.count() == 0


@pytest.mark.parametrize("path", DOCS)
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_on_the_document_paths_are_405(fresh, path, method):
    r = fresh.request(path, method=method, body=b'{"keys":[]}',
                      headers={"content-type": "application/json"})
    assert_generic_error(r, 405)
    assert r.header("allow") == "GET, HEAD"
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
    s = make_stack(start=False)
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
