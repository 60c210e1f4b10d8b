"""The copy over time: background refresh picks up new keys, an outage is bridged with the last
good copy (stale), a copy older than max_stale_s is no longer served, and service resumes when
the API server is back. refresh_interval_s is at its minimum (5 s) to keep these short."""

from __future__ import annotations

import pytest

from e2e.checks import DISCOVERY, JWKS, assert_generic_error, assert_no_upstream_headers, leak_words, poll

pytestmark = pytest.mark.timeout(90)


def test_rotated_signing_keys_are_served_after_the_next_refresh(make_stack):
    s = make_stack("pod.yaml", plugin_changes={"refresh_interval_s": 5})
    first = s.get(JWKS)
    assert first.status == 200 and first.body == s.fake.jwks_body()
    s.fake.rotate_keys()
    new_body = s.fake.jwks_body()
    assert new_body != first.body
    r = poll(lambda: (lambda r: r if r.body == new_body else None)(s.get(JWKS)), 12, interval=0.25,
             what="the rotated JWKS")
    assert r.status == 200
    assert r.header("etag") != first.header("etag")
    assert s.fake.count(JWKS) >= 2


def test_outage_is_bridged_with_the_last_good_copy_then_recovers(make_stack):
    s = make_stack("pod.yaml", plugin_changes={"refresh_interval_s": 5, "timeout_ms": 500})
    good = {p: s.get(p) for p in (DISCOVERY, JWKS)}
    assert all(r.status == 200 for r in good.values())
    s.fake.stop()
    # once the copy is past its refresh time and the refresh failed, it is served stale
    poll(lambda: s.metric("kube_oidc_discovery.upstream.jwks.unavailable"), 12, what="a failed refresh")

    def stale_served():
        r = s.get(JWKS)
        assert r.status == 200, (r.status, r.body)
        assert r.body == good[JWKS].body
        return s.metric("kube_oidc_discovery.requests.jwks.stale") > 0

    poll(stale_served, 12, interval=0.25, what="a stale answer")
    r = s.get(DISCOVERY)
    assert r.status == 200 and r.body == good[DISCOVERY].body
    assert_no_upstream_headers(r)
    # the API server comes back on the same address: fresh copies again
    ok_before = s.metric("kube_oidc_discovery.upstream.jwks.ok")
    s.fake.start()
    poll(lambda: s.metric("kube_oidc_discovery.upstream.jwks.ok") > ok_before, 15, what="recovery")
    fresh_before = s.metric("kube_oidc_discovery.requests.jwks.fresh")
    assert s.get(JWKS).status == 200
    assert s.metric("kube_oidc_discovery.requests.jwks.fresh") == fresh_before + 1


def test_copy_older_than_max_stale_is_not_served(make_stack):
    s = make_stack("pod.yaml", plugin_changes={"refresh_interval_s": 5, "max_stale_s": 1,
                                               "timeout_ms": 300})
    assert s.get(JWKS).status == 200
    s.fake.stop()

    def expired():
        r = s.get(JWKS)
        if r.status == 200:
            return None
        return r

    r = poll(expired, 15, interval=0.25, what="the copy to expire")
    assert_generic_error(r, 503, leak_words(s.fake, s.token))
    assert_generic_error(s.get(DISCOVERY), 503)
