"""The service-account token: sent upstream, rotated without a restart (credential_injector,
envoy/pod.yaml), taken from the environment (token_env, envoy/pod-static-token.yaml), and never
shown to a client or written to Envoy's log, even with the Wasm VM at trace level."""

from __future__ import annotations

import pytest

from harness.checks import assert_exact_upstream_request, plugin_log_lines, poll
from harness.constants import DOCS, JWKS
from harness.stack import new_token

pytestmark = pytest.mark.timeout(90)


@pytest.mark.needs_header_value_prefix
def test_rotated_projected_token_is_used_for_the_next_upstream_call(make_stack):
    s = make_stack("pod.yaml", plugin_changes={"refresh_interval_s": 5})
    old = s.token
    assert s.get(JWKS).status == 200
    assert s.fake.last(JWKS).header("authorization") == f"Bearer {old}"
    # the kubelet's way: new timestamped dir, ..data_tmp -> it, rename over ..data
    new = new_token()
    s.tokens.write_token(new)
    assert (s.tokens.path / "token").is_symlink()
    assert s.tokens.read_token() == new
    s.fake.set_token(new)
    rotated_at = len(s.fake.history)
    poll(lambda: len(s.fake.history) > rotated_at, 12, what="the next refresh")
    after = s.fake.history[rotated_at:]
    for rec in after:
        assert_exact_upstream_request(rec, new)
    assert s.metric("kube_oidc_discovery.upstream.jwks.http_error") == 0
    assert s.metric("kube_oidc_discovery.upstream.discovery.http_error") == 0
    r = s.get(JWKS)
    assert r.status == 200 and r.body == s.fake.jwks_body()


def test_static_token_from_the_environment(make_stack):
    token = new_token()
    # as it would come from a file or a Secret: surrounding whitespace and a newline, trimmed
    s = make_stack("pod-static-token.yaml", token=token, env_token=f"  {token}\n")
    for path in DOCS:
        r = s.get(path)
        assert r.status == 200, (path, r.status, r.body)
    recorded = s.fake.history
    assert {rec.path for rec in recorded} == set(DOCS)
    for rec in recorded:
        assert_exact_upstream_request(rec, token)


def test_static_token_config_injects_nothing_itself(make_stack):
    # Without token_env the filter sends no credential; with pod-static-token.yaml there is no
    # credential_injector either, so the API server sees no authorization at all.
    s = make_stack("pod-static-token.yaml", plugin_changes={"token_env": None})
    assert s.get(JWKS).status == 502
    rec = s.fake.last(JWKS)
    assert rec is not None and rec.header("authorization") is None


def _exercise(s) -> list[str]:
    """Requests of every kind; returns the full text of every answer."""
    seen = []
    for path in DOCS:
        for method in ("GET", "HEAD"):
            seen.append(s.request(path, method=method).raw())
        seen.append(s.request(path, method="POST", body=b"x").raw())
        etag = s.get(path).header("etag")
        if etag:
            seen.append(s.get(path, headers={"if-none-match": etag}).raw())
    seen.append(s.get("/api/v1/secrets").raw())
    seen.append(s.get("/openid/v1/jwks", headers={"authorization": "Bearer x"}).raw())
    return seen


@pytest.mark.parametrize("config", [
    pytest.param("pod.yaml", marks=pytest.mark.needs_header_value_prefix), "pod-static-token.yaml"])
def test_token_never_in_a_response_or_the_trace_log(make_stack, config):
    good = make_stack(config, wasm_trace=True)
    bad = make_stack(config, wasm_trace=True, start=False)
    bad.fake.set_token("the-api-server-wants-another-token")
    bad.start()
    answers = _exercise(good) + _exercise(bad)
    assert any(a.startswith("200") for a in answers) and any(a.startswith("502") for a in answers)
    for text in answers:
        assert good.token not in text and bad.token not in text
    good.stop()
    bad.stop()
    for s in (good, bad):
        log = s.envoy.log_text()
        assert "[trace][wasm]" in log, "the Wasm VM did not log at trace level"
        assert "proxy_on_request_headers" in log
        assert s.token not in log, f"token in {s.envoy.log_path}"
        for rec in s.fake.history:  # the token really was in play
            assert rec.header("authorization") == f"Bearer {s.token}"
    # the refused token was logged about, per document, with the API server's answer quoted:
    # the line that repeats upstream bytes is the one that must not carry the token either
    warns = [ln for ln in plugin_log_lines(bad.envoy.log_text()) if "[warning]" in ln]
    for doc in ("discovery", "jwks"):
        assert any(f"fetching {doc} " in ln and "answered 401; upstream body: " in ln
                   and "Unauthorized" in ln for ln in warns), warns
