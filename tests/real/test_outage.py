"""The real API server stopped: the last good copy is served (stale) until `max_stale_s` past
its refresh time, then 503; when the API server is back, fresh copies again."""

from __future__ import annotations

from harness.checks import poll
from harness.constants import DISCOVERY, JWKS

# A copy is fresh for refresh + timeout, stale up to refresh + max_stale, then expired.
REFRESH_S, TIMEOUT_S, MAX_STALE_S = 5, 1, 4


def test_stale_then_503_then_recovery(own_kube, account, make_stack):
    kube = own_kube()
    ns, name = account(kube)
    s = make_stack("pod-static-token.yaml", fake=kube, token=kube.token(ns, name),
                   plugin_changes={"refresh_interval_s": REFRESH_S, "max_stale_s": MAX_STALE_S,
                                   "timeout_ms": TIMEOUT_S * 1000})
    good = {p: s.get(p) for p in (DISCOVERY, JWKS)}
    assert all(r.status == 200 for r in good.values())

    kube.stop_apiserver()
    for p in (DISCOVERY, JWKS):
        doc = "jwks" if p == JWKS else "discovery"
        stale = f"kube_oidc_discovery.requests.{doc}.stale"
        # past the refresh time the old copy is still served, byte for byte
        r = poll(lambda: (r := s.get(p)).status == 200 and s.metric(stale) >= 1 and r,
                 REFRESH_S + TIMEOUT_S + 3, what=f"a stale {doc}")
        assert r.body == good[p].body and r.header("etag") == good[p].header("etag")
    assert s.metric("kube_oidc_discovery.upstream.jwks.unavailable") >= 1
    # past refresh + max_stale: 503, never the old copy
    r = poll(lambda: (r := s.get(JWKS)).status != 200 and r, REFRESH_S + MAX_STALE_S + 3,
             what="the copy to expire")
    assert r.status == 503 and b"keys" not in r.body

    kube.start_apiserver()
    poll(lambda: s.get(JWKS).status == 200, REFRESH_S + 3, what="recovery")
    r = s.get(JWKS)
    assert r.body == good[JWKS].body and int(r.header("age")) < REFRESH_S
