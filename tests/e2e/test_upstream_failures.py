"""The API server failing while no copy exists: each failure gives the right generic 502/503/504,
with nothing of the upstream's answer, address, TLS detail or the token in it, and the reason
in Envoy's log at warn."""

from __future__ import annotations

import pytest

from harness.checks import assert_generic_error, leak_words, plugin_log_lines, poll
from harness import config as cfgmod
from harness.constants import DOC_NAMES, DOCS



def _wrong_token(fake):
    fake.set_token("a-token-the-filter-does-not-have")


CASES = {
    # id: (setup before Envoy starts, stack options, client status, fetch result metric)
    "wrong-token-401": (_wrong_token, {}, 502, "http_error"),
    "forbidden-403": (lambda f: f.set_mode("fail", status=403), {}, 502, "http_error"),
    "not-found-404": (lambda f: f.set_mode("fail", status=404), {}, 502, "http_error"),
    "internal-500": (lambda f: f.set_mode("fail", status=500), {}, 502, "http_error"),
    "too-many-429": (lambda f: f.set_mode("fail", status=429), {}, 502, "http_error"),
    "unavailable-503": (lambda f: f.set_mode("fail", status=503), {}, 503, "unavailable"),
    "garbage-html-200": (lambda f: f.set_mode("garbage"), {}, 502, "invalid_body"),
    "not-json-200": (lambda f: f.set_mode("custom", status=200, body=b"keys: [] issuer: x"), {}, 502,
                     "invalid_body"),
    "json-array-200": (lambda f: f.set_mode("custom", status=200, body=b'[{"keys":[]}]'), {}, 502,
                       "invalid_body"),
    "oversize-200": (lambda f: f.set_mode("oversize"), {}, 502, "too_large"),
    "hang-timeout": (lambda f: f.set_mode("hang"), {}, 504, "timeout"),
    "closed-port": (None, {"start_fake": False}, 503, "unavailable"),
    "wrong-ca": (None, {"server_cert": "rogue"}, 503, "unavailable"),
    "wrong-san": (None, {"server_cert": "wrong-san"}, 503, "unavailable"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_upstream_failure_without_copy(make_stack, case):
    setup, opts, status, result = CASES[case]
    s = make_stack("pod.yaml", start=False, plugin_changes={"timeout_ms": 300}, **opts)
    if setup:
        setup(s.fake)
    s.start()
    forbidden = leak_words(s.fake, s.token)
    for path in DOCS:
        for method in ("GET", "HEAD"):
            r = s.request(path, method=method)
            if method == "HEAD":
                assert r.status == status and r.body == b"", (r.status, r.body)
                continue
            assert_generic_error(r, status, forbidden)
        metric = f"kube_oidc_discovery.upstream.{DOC_NAMES[path]}.{result}"
        assert s.metric(metric) >= 1, f"{metric} not counted"
        assert s.metric(f"kube_oidc_discovery.upstream.{DOC_NAMES[path]}.ok") == 0
        assert s.metric(f"kube_oidc_discovery.requests.{DOC_NAMES[path]}.upstream_error") >= 1
    # the reason is for the operator: logged at warn, per document
    # (the log is written asynchronously: wait for both lines, not just the first)
    def warns() -> list[str]:
        return [ln for ln in plugin_log_lines(s.envoy.log_text()) if "[warning]" in ln]

    for doc in ("discovery", "jwks"):
        poll(lambda: any(doc in ln for ln in warns()), 5, what=f"a warn line about {doc}")


@pytest.mark.parametrize("variant", ["rogue", "wrong-san"])
def test_untrusted_api_server_never_receives_a_request(make_stack, variant):
    s = make_stack("pod.yaml", start=False, server_cert=variant, plugin_changes={"timeout_ms": 1000})
    s.start()
    assert_generic_error(s.get("/openid/v1/jwks"), 503, leak_words(s.fake, s.token))
    # Envoy did connect and start TLS, and gave up during the handshake:
    assert poll(lambda: s.fake.handshake_failures, 5, what="a refused handshake")
    assert s.fake.handshakes == 0
    assert s.fake.count() == 0
    assert s.fake.history == []


def test_missing_cluster_is_503(make_stack):
    s = make_stack("pod.yaml", plugin_changes={"cluster": "no-such-cluster"})
    assert_generic_error(s.get("/openid/v1/jwks"), 503, leak_words(s.fake, s.token))
    assert_generic_error(s.get("/.well-known/openid-configuration"), 503)
    assert s.fake.count() == 0


def test_timeout_answers_within_the_configured_timeout(make_stack):
    import time
    s = make_stack("pod.yaml", start=False, plugin_changes={"timeout_ms": 300})
    s.fake.set_mode("hang")
    s.start()
    t = time.monotonic()
    r = s.get("/openid/v1/jwks")
    elapsed = time.monotonic() - t
    assert_generic_error(r, 504)
    assert elapsed < 2.5, f"504 took {elapsed:.2f}s with timeout_ms 300"
    assert cfgmod.plugin_config(s.cfg)["timeout_ms"] == 300
