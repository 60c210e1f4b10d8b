"""Assertions shared by the tests of every tier: generic errors, the exact upstream request, what may never leak, and `poll`."""

from __future__ import annotations

import json
import re
import time

from harness.client import Response
from harness.constants import API_SERVER_NAME, DOCS, JWKS, MEDIA_TYPES, PLUGIN_NAME
from harness.fake_apiserver import Recorded

# Headers a document answer may carry: relayed or set by the filter, plus Envoy's own date/server.
DOC_HEADERS = {"content-type", "cache-control", "content-length", "x-content-type-options",
               "etag", "age", "date", "server"}
# Headers of the API server's answers that must never be relayed.
UPSTREAM_ONLY = ("audit-id", "set-cookie", "x-kubernetes-pf-flowschema-uid",
                 "x-kubernetes-pf-prioritylevel-uid")
FAKE_DATE = "Mon, 01 Jan 2001 00:00:00 GMT"

# What an upstream request may carry: the spec's headers, the filter's user-agent, and what
# Envoy's async client adds by itself (x-envoy-*). Nothing else, nothing from a client.
UPSTREAM_ALLOWED = {"host", "accept", "authorization", "user-agent",
                    "x-envoy-internal", "x-envoy-expected-rq-timeout-ms"}

ERROR_BODIES = {
    404: b'{"error":"not found"}',
    405: b'{"error":"method not allowed"}',
    502: b'{"error":"bad gateway"}',
    503: b'{"error":"service unavailable"}',
    504: b'{"error":"gateway timeout"}',
}


# The `server` header Envoy writes: its own name, or the HCM's server_name (istiod: istio-envoy).
ENVOY_SERVER = "envoy"


def assert_no_upstream_headers(r: Response, server: str = ENVOY_SERVER) -> None:
    names = r.header_names()
    for h in UPSTREAM_ONLY:
        assert h not in names, f"upstream header {h} relayed: {r.headers}"
    assert not any(n.startswith("x-kubernetes-") for n in names), r.headers
    assert r.header("server") == server, r.headers
    assert r.header("date") != FAKE_DATE, r.headers


def assert_generic_error(r: Response, status: int, forbidden: list[str] = (), server: str = ENVOY_SERVER) -> None:
    """A generic JSON error: exact status and body, no upstream detail anywhere in the answer."""
    assert r.status == status, f"want {status}, got {r.status}: {r.body[:300]!r}"
    assert r.body == ERROR_BODIES[status], r.body[:300]
    assert r.header("content-type") == "application/json", r.headers
    assert r.header("x-content-type-options") == "nosniff", r.headers
    # an error answer is never cached downstream, a 404/405 may be
    assert r.header("cache-control") == ("no-store" if status >= 500 else None), r.headers
    assert_no_upstream_headers(r, server)
    raw = r.raw()
    for word in forbidden:
        assert word not in raw, f"{word!r} leaked into the answer: {raw[:500]}"


def leak_words(fake, token: str) -> list[str]:
    """Texts that identify the upstream or its failure, none of which a client may see."""
    return [
        token, f":{fake.port}", str(fake.port), "127.0.0.1", "kubernetes.default.svc",
        "Unauthorized", "Forbidden", "forbidden", "Status", "Failure", "Internal", "etcd",
        "TLS", "SSL", "ssl", "certificate", "CERTIFICATE_VERIFY_FAILED", "verify",
        "upstream connect", "reset reason", "refused", "overflow", "delayed connect",
        "upstream request timeout", "<html", "Sign in", "fake-kube-apiserver", "c00k1e",
    ]


def assert_exact_upstream_request(rec: Recorded, token: str) -> None:
    """The API server received exactly the filter's constant request and nothing else."""
    assert rec.method == "GET", rec
    assert rec.path in DOCS, f"path not constant: {rec.path!r}"
    assert rec.body == b"", rec.body
    names = rec.header_names()
    assert len(names) == len(set(names)), f"duplicate headers: {rec.headers}"
    assert set(names) <= UPSTREAM_ALLOWED, f"unexpected upstream headers: {sorted(set(names) - UPSTREAM_ALLOWED)}"
    assert rec.header("host") == API_SERVER_NAME, rec.headers
    assert rec.header("accept") == MEDIA_TYPES[rec.path], rec.headers
    assert rec.header_all("authorization") == [f"Bearer {token}"], rec.headers


def served_discovery(fake, jwks_uri: str | None) -> bytes:
    """The discovery document as the filter serves it: the API server's bytes, with only the
    ``jwks_uri`` value replaced when the plugin configures one."""
    upstream = fake.discovery_body()
    if jwks_uri is None:
        return upstream
    old = json.dumps(fake.jwks_uri).encode()
    assert upstream.count(old) == 1, upstream
    return upstream.replace(old, json.dumps(jwks_uri).encode())


def poll(fn, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Calls fn until it returns a truthy value; returns it, or fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def plugin_log_lines(log: str) -> list[str]:
    """Lines the filter logged (Envoy prefixes them with `wasm log <plugin name>:`)."""
    return [line for line in log.splitlines() if f"wasm log {PLUGIN_NAME}" in line]


def is_strong_etag(value: str | None) -> bool:
    return bool(value) and re.fullmatch(r'"[\x21\x23-\x7e]+"', value) is not None


def assert_served_as_the_api_server_serves(r: Response, path: str, real: bytes, jwks_uri: str) -> None:
    """A document served by the filter is the API server's own answer ``real``: the JWKS byte for
    byte, the discovery document with ``jwks_uri`` rewritten and every other member kept."""
    assert r.status == 200, (path, r.status, r.body[:300])
    if path == JWKS:
        assert r.header("content-type") == "application/jwk-set+json"
        assert r.body == real and json.loads(r.body)["keys"]
    else:
        assert r.header("content-type") == "application/json"
        served, origin = json.loads(r.body), json.loads(real)
        assert served.pop("jwks_uri") == jwks_uri
        origin.pop("jwks_uri")
        assert served == origin and served["issuer"]
