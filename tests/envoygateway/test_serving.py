"""The chart's single-issuer form in the Envoy that Envoy Gateway drives: every object Accepted
and ResolvedRefs, both documents served from the fake kube-apiserver over TLS with the cluster CA
and the token the chart's EnvoyPatchPolicy puts on the backend's cluster (token mode projected,
read from the token file as the kubelet writes it), every other path
Envoy Gateway's 404 without an upstream request, and requests of another route on the same
Gateway never entering the filter."""

from __future__ import annotations

import re

import pytest

from names import APP_HOST, NAMESPACE, ROUTE, TOKEN
from harness.checks import assert_exact_upstream_request, poll, served_discovery
from harness.constants import DISCOVERY, DOCS, HOST, JWKS

EG_ENV = "single"
JWKS_URI = f"https://{HOST}/openid/v1/jwks"
# Envoy's trace line for the first proxy-wasm callback of every HTTP stream that enters the
# filter (as tests/e2e/test_other_hosts.py)
STREAM_CALLBACK = re.compile(r"\[host->vm\] proxy_on_request_headers\(")


def condition(status: dict, ctype: str) -> dict:
    (c,) = [c for c in status.get("conditions", []) if c["type"] == ctype]
    return c


@pytest.fixture
def env(single):
    return single


def test_every_object_is_accepted_with_resolved_refs(env):
    st = env.eg.statuses()
    route = st[("HTTPRoute", f"{NAMESPACE}/{ROUTE}")]
    (parent,) = route["parents"]
    assert parent["parentRef"]["name"] == "eg"
    for ctype in ("Accepted", "ResolvedRefs"):
        c = condition(parent, ctype)
        assert c["status"] == "True", (ctype, c)
    policy = st[("EnvoyExtensionPolicy", f"{NAMESPACE}/{ROUTE}")]
    (anc,) = policy["ancestors"]
    assert condition(anc, "Accepted")["status"] == "True", anc
    # the API server's Backend of the release's own, and its BackendTLSPolicy
    tls = st[("BackendTLSPolicy", f"{NAMESPACE}/{ROUTE}")]
    for anc in tls["ancestors"]:
        for ctype in ("Accepted", "ResolvedRefs"):
            assert condition(anc, ctype)["status"] == "True", (ctype, anc)
    assert condition(st[("Backend", f"{NAMESPACE}/{ROUTE}")], "Accepted")["status"] == "True"
    # token mode projected: the EnvoyPatchPolicy that puts the token on the API server's cluster
    (anc,) = st[("EnvoyPatchPolicy", f"{NAMESPACE}/{ROUTE}")]["ancestors"]
    for ctype in ("Accepted", "Programmed"):
        assert condition(anc, ctype)["status"] == "True", (ctype, anc)
    # (Programmed stays False: standalone mode has no Service to give the Gateway an address)
    gw = st[("Gateway", f"{NAMESPACE}/eg")]
    assert condition(gw, "Accepted")["status"] == "True", gw


def test_both_documents_served_with_the_injected_token(env, fake):
    fake.reset()
    for path in DOCS:
        r = env.get(path, HOST)
        assert r.status == 200, (path, r.status, r.body[:300])
        want = served_discovery(fake, JWKS_URI) if path == DISCOVERY else fake.jwks_body()
        assert r.body == want, path
        assert r.header("etag"), r.headers
        assert "audit-id" not in r.header_names(), r.headers
    # the filter's own fetches: TLS to the API server's Backend, the projected token that the
    # EnvoyPatchPolicy's credential_injector put on, nothing of a client's
    recs = poll(lambda: [h for h in fake.history if h.path in DOCS], 30, what="upstream fetches")
    for rec in recs:
        assert_exact_upstream_request(rec, TOKEN)


NOT_ROUTED = ["/", "/api/v1/secrets", "/api", "/openid/v1/jwks/", "/.well-known/openid-configuration/x",
              "/openid/v1/jwks.json", "/OPENID/v1/jwks"]
# Envoy Gateway's listeners normalize the path before routing (normalize_path always, RFC 3986:
# percent-decoded unreserved characters, dot segments; merge_slashes by default;
# internal/xds/translator/listener.go, internal/gatewayapi/listener.go, v1.9.1): these reach the
# chart's route, and the filter, as the document path itself. (The shipped Envoy configs keep the
# path as sent, so there they are 404.)
NORMALIZED = {"/openid/v1/jwk%73": JWKS, "//openid/v1/jwks": JWKS, "/openid/v1/../v1/jwks": JWKS,
              "/.well-known/./openid-configuration": DISCOVERY}


def test_other_paths_are_404_and_never_sent_upstream(env, fake):
    fake.reset()
    before = len(fake.history)
    for path in NOT_ROUTED:
        r = env.get(path, HOST)
        assert r.status == 404, (path, r.status, r.body[:200])
    assert len(fake.history) == before, [h.path for h in fake.history[before:]]


@pytest.mark.parametrize("path", list(NORMALIZED))
def test_equivalent_paths_are_the_document(env, fake, path):
    r = env.get(path, HOST)
    assert r.status == 200, (path, r.status)
    assert r.body == env.get(NORMALIZED[path], HOST).body


def test_other_routes_never_enter_the_filter(env, app):
    assert env.eg.admin("/logging?wasm=trace", method="POST")[0] == 200

    def callbacks() -> int:
        return len(STREAM_CALLBACK.findall(env.eg.log_text()))

    base = callbacks()
    app.reset()
    for _ in range(5):
        r = env.get("/", APP_HOST)
        assert r.status == 200 and r.header("x-backend") == "app", r
    assert len(app.requests) == 5
    assert callbacks() == base, "a request of another route entered the filter"
    # the same log catches the filter on its own route
    assert env.get(JWKS, HOST).status == 200
    poll(lambda: callbacks() > base, 10, what="the filter's stream callback in the trace log")
    env.eg.admin("/logging?wasm=info", method="POST")
