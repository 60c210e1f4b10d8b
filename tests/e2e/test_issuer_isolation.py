"""Each issuer has its own copy, refresh schedule, lease, backoff and coalescing of cold
requests, in real Envoy with several API servers: one API server down or slow never changes what
another issuer's clients get."""

from __future__ import annotations

import time

import pytest

from harness.checks import poll
from harness.issuers import host_of, public_path
from harness.constants import DISCOVERY, JWKS
from harness.constants import METRIC_PREFIX as P
from harness.load import burst, raise_nofile, request_bytes

pytestmark = pytest.mark.timeout(120)


def get(f, name, doc):
    return f.get(public_path(name, doc), host=host_of(name))


def test_one_api_server_down_while_the_others_keep_refreshing(fleet):
    """refresh 5 s, timeout 1 s: prod's API server stops after the prefetch; prod's clients get
    its last good copy (stale past 6 s), dev's and edge's keep being refreshed and served fresh;
    prod recovers when its API server is back."""
    f, clusters = fleet(refresh_interval_s=5, timeout_ms=1000, max_stale_s=60)
    for name in clusters:
        poll(lambda: get(f, name, JWKS).status == 200, 10, what=f"{name} warm")
    prod, dev = clusters["prod"], clusters["dev"]
    prod_jwks = prod.fake.jwks_body()
    prod.fake.stop()
    dev_calls = dev.fake.count(JWKS)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 12:
        r = get(f, "prod", JWKS)
        assert (r.status, r.body) == (200, prod_jwks), r.text
        for name in ("dev", "edge"):
            r = get(f, name, JWKS)
            assert r.status == 200 and r.body == clusters[name].fake.jwks_body()
            assert int(r.header("age")) <= 7, f"{name}'s copy is not refreshed: age {r.header('age')}"
        time.sleep(0.25)
    assert dev.fake.count(JWKS) >= dev_calls + 2, "dev kept refreshing"
    assert f.metric(f"{P}.prod.requests.jwks.stale") > 0
    assert f.metric(f"{P}.prod.upstream.jwks.unavailable") > 0
    for name in ("dev", "edge"):
        assert f.metric(f"{P}.{name}.requests.jwks.stale") == 0
        assert f.metric(f"{P}.{name}.upstream.jwks.unavailable") == 0
        assert f.metric(f"{P}.{name}.upstream.jwks.ok") >= 3
    # back: a refresh within the backoff (at most the 5 s interval) gives a fresh copy
    prod.fake.start()
    poll(lambda: int(get(f, "prod", JWKS).header("age") or 99) < 2, 10, what="prod refreshed")


def test_a_cold_burst_on_one_issuer_makes_one_upstream_call_for_that_issuer(fleet):
    """prod's API server answers 2 s late: 400 concurrent requests for prod's documents during
    the prefetch are answered from one call per document, while dev's clients are served at
    once from dev's copy."""
    raise_nofile(4096)
    delay = 2.0

    def slow_prod(clusters):
        clusters["prod"].fake.set_mode("delay", delay_s=delay)

    f, clusters = fleet(before_envoy=slow_prod, concurrency=2)
    prod, dev = clusters["prod"], clusters["dev"]
    poll(lambda: get(f, "dev", JWKS).status == 200, 5, what="dev warm")
    assert prod.fake.count() == 2, "prod's prefetch is in flight"  # counted on arrival
    n = 400
    reqs = [request_bytes(public_path("prod", JWKS if i % 2 else DISCOVERY)) for i in range(n)]
    t = time.monotonic()
    r = get(f, "dev", DISCOVERY)
    assert r.status == 200 and time.monotonic() - t < 1, "dev is not held up by prod"
    res = burst(f.port, reqs, timeout=delay + 8)
    assert not res.errors, res.errors[:3]
    assert res.all_sent < prod.fake.requests[0].time + delay, "the burst came too late to coalesce"
    for req, resp in zip(reqs, res.responses):
        want = prod.fake.jwks_body() if b"/jwks " in req else None
        assert resp.status == 200, (req, resp.status, resp.body[:200])
        if want is not None:
            assert resp.body == want
    time.sleep(1.5)  # a late duplicate fetch would show up here
    for path in (DISCOVERY, JWKS):
        assert prod.fake.count(path) == 1, f"{path}: {prod.fake.count(path)} calls"
        assert dev.fake.count(path) == 1
    assert f.metric(f"{P}.prod.upstream.jwks.ok") == 1
    assert f.metric(f"{P}.prod.requests.jwks.fresh") == n // 2
    assert f.metric(f"{P}.prod.requests.discovery.fresh") == n // 2
