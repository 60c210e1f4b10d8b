"""The process-wide cache in real Envoy (``--concurrency 2``, the shipped envoy/pod.yaml): how
often the API server is called under load (once per document per process), coalescing of a
cold burst, serving stale copies through an outage and their expiry, refusal of unusable answers,
key rotation, and every metric at admin /stats and /stats/prometheus. (What one answer looks
like, 304 and the age header included, is test_serving.py.)

Each test starts its own fake kube-apiserver and Envoy, so every test starts from a cold cache.
The time windows below follow the filter's rules (src/policy.rs):
- a copy is fresh while its age <= refresh_interval_s + timeout_ms, stale (still served, counted
  as ``stale``) while age <= refresh_interval_s + max_stale_s, then never served (503);
- the root context ticks every second while idle: a refresh is due ``refresh_interval_s`` after
  the last success and starts within one tick.
"""

from __future__ import annotations

import math
import re
import time

import pytest

from harness.checks import ERROR_BODIES, poll, served_discovery
from harness import client, config
from harness.constants import DISCOVERY, DOC_NAMES, DOCS, HOST, JWKS
from harness.constants import METRIC_PREFIX as P
from harness.envoy import Envoy
from harness.load import burst, raise_nofile, request_bytes, wrk_finish, wrk_start
from harness.stack import Stack

pytestmark = pytest.mark.timeout(120)

TICK_SLACK_S = 1.5  # one idle tick (1 s) plus the fetch itself, on a busy 2-core machine

# Every metric of src/metrics.rs, as /stats/prometheus names them (dots -> underscores).
OUTCOMES = ("fresh", "stale", "not_modified", "upstream_error")
RESULTS = ("ok", "http_error", "invalid_body", "too_large", "unavailable", "timeout", "issuer_mismatch")
EXPECTED_METRICS = {
    f"{P}_requests_not_found": "counter",
    f"{P}_requests_method_not_allowed": "counter",
    **{f"{P}_requests_{d}_{o}": "counter" for d in DOC_NAMES.values() for o in OUTCOMES},
    **{f"{P}_upstream_{d}_{r}": "counter" for d in DOC_NAMES.values() for r in RESULTS},
    **{f"{P}_upstream_{d}_latency_ms": "histogram" for d in DOC_NAMES.values()},
    **{f"{P}_copy_{d}_age_s": "gauge" for d in DOC_NAMES.values()},
}


# ---------------------------------------------------------------------- fixtures
@pytest.fixture
def make_cache_stack(make_stack):
    """``make_cache_stack(delay_s=0, before_envoy=None, **plugin_changes)`` -> a started Stack:
    the shipped envoy/pod.yaml with 2 workers, against its own fake API server, which answers
    ``delay_s`` late (its ``delay`` mode) and is set up by ``before_envoy(fake)`` first."""
    stacks = []

    def make(delay_s: float = 0.0, before_envoy=None, **plugin_changes) -> Stack:
        s = make_stack(start=False, concurrency=2, plugin_changes=plugin_changes)
        # histograms reach /stats/prometheus only after a stats flush (default every 5 s)
        s.cfg["stats_flush_interval"] = "1s"
        config.dump(s.cfg, s.envoy.config_path)
        if delay_s:
            s.fake.set_mode("delay", delay_s=delay_s)
        if before_envoy:
            before_envoy(s.fake)
        stacks.append(s)
        return s.start()

    yield make
    for s in stacks:
        print(f"---- Envoy log (tail) ----\n{s.envoy.tail(30)}")


# ---------------------------------------------------------------------- helpers
def get(e: Envoy, path: str, **kw) -> client.Response:
    return client.get(e.port, path, host=HOST, **kw)


def warm(e: Envoy) -> dict[str, client.Response]:
    """Waits for both documents to be served (prefetch done); returns the first 200 of each."""
    out = {}
    for path, name in DOC_NAMES.items():
        def ok():
            r = get(e, path)
            return r if r.status == 200 else None
        out[name] = poll(ok, 10, 0.1, f"200 on {path}")
    return out


def prometheus(e: Envoy) -> tuple[dict[str, float], dict[str, str]]:
    """(sample name -> value for unlabelled samples and histogram _count/_sum, name -> TYPE)."""
    values: dict[str, float] = {}
    types: dict[str, str] = {}
    for line in e.prometheus().splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)$", line)
        if m:
            types[m.group(1)] = m.group(2)
            continue
        m = re.match(r"([A-Za-z_:][\w:]*)(\{[^}]*\})? (\S+)$", line)
        if m and (m.group(2) in (None, "{}")):
            values[m.group(1)] = float(m.group(3))
    return values, types


def wasm_stats(e: Envoy) -> dict[str, int]:
    return {k[len("wasmcustom."):]: v for k, v in e.stats("wasmcustom").items()}


def is_generic_error(r: client.Response, status: int) -> None:
    assert r.status == status, (r.status, r.text)
    assert r.body == ERROR_BODIES[status], r.text
    assert r.header("content-type") == "application/json"
    assert r.header("etag") is None and r.header("age") is None


# ---------------------------------------------------------------------- tests
def test_sustained_load_calls_the_api_server_once_per_refresh_interval(make_cache_stack, tmp_path):
    """~10 s of load on both documents, refresh every 5 s: at most one call per document per
    refresh interval (plus the prefetch), every client answer a 200 from the copy."""
    t0 = time.monotonic()
    s = make_cache_stack(refresh_interval_s=5)
    fake, e = s.fake, s.envoy
    warm(e)
    load_s = 10
    procs = {name: wrk_start(f"http://127.0.0.1:{e.port}{path}", tmp_path, duration_s=load_s,
                             connections=25, threads=1, host=HOST)
             for path, name in DOC_NAMES.items()}
    results = {name: wrk_finish(p, timeout=load_s + 30) for name, p in procs.items()}
    elapsed = time.monotonic() - t0
    stats = wasm_stats(e)

    for path, name in DOC_NAMES.items():
        r = results[name]
        calls = fake.count(path)
        bound = math.ceil(elapsed / 5) + 1
        print(f"{name}: {r.requests} requests ({r.rps:.0f}/s, p99 {r.p99_ms:.2f} ms), "
              f"{calls} upstream calls in {elapsed:.1f}s (bound {bound})")
        assert r.requests >= 2000, f"{name}: load too light to mean anything: {r.output}"
        assert r.non_2xx_3xx == 0 and r.socket_errors == 0, r.output
        assert calls <= bound, f"{name}: {calls} upstream calls in {elapsed:.1f}s, at most {bound} allowed"
        # the refresh does run under load (prefetch + at least one refresh in > 10 s)
        assert calls >= 2, f"{name}: no refresh in {elapsed:.1f}s ({calls} call)"
        assert stats[f"{P}.upstream.{name}.ok"] == calls
        assert stats[f"{P}.requests.{name}.fresh"] >= r.requests
        assert stats[f"{P}.requests.{name}.stale"] == 0
        assert stats[f"{P}.requests.{name}.upstream_error"] == 0


def test_cold_burst_is_coalesced_into_one_upstream_call(make_cache_stack):
    """1000 concurrent requests while the (slow) prefetch is in flight: all get the document,
    the API server sees exactly one call per document."""
    raise_nofile(8192)
    delay = 2.0
    s = make_cache_stack(delay_s=delay)
    fake, e = s.fake, s.envoy
    n = 1000
    reqs = [request_bytes(JWKS if i % 2 else DISCOVERY) for i in range(n)]
    res = burst(e.port, reqs, timeout=delay + 8)

    assert not res.errors, f"{len(res.errors)} client errors, first: {res.errors[:3]}"
    # the burst really happened while the first fetch was in flight
    for path in DOCS:
        first = fake.requests_for(path)[0].time
        assert res.all_sent < first + delay, (
            f"burst sent {res.all_sent - first:.2f}s after the fetch of {path} began: too late "
            "to test coalescing")
    by_path: dict[str, list] = {p: [] for p in DOCS}
    for req, r in zip(reqs, res.responses):
        by_path[req.split(b" ")[1].decode()].append(r)
    want = {JWKS: fake.jwks_body(),
            DISCOVERY: served_discovery(fake, config.plugin_config(s.cfg).get("jwks_uri"))}
    for path, rs in by_path.items():
        statuses = {}
        for r in rs:
            statuses[r.status] = statuses.get(r.status, 0) + 1
        assert statuses == {200: n // 2}, f"{path}: {statuses}"
        bodies = {r.body for r in rs}
        assert len(bodies) == 1, f"{path}: {len(bodies)} different bodies"
        assert bodies.pop() == want[path], path
    # every answer waited for the one fetch, and none for a later one
    fetched = max(fake.requests_for(p)[0].time for p in DOCS) + delay
    assert min(r.done for r in res.responses) >= fetched - 0.1
    assert max(r.done for r in res.responses) - res.started < delay + 3
    time.sleep(1.5)  # a late duplicate fetch would show up here
    for path in DOCS:
        assert fake.count(path) == 1, f"{path}: {fake.count(path)} upstream calls"
    stats = wasm_stats(e)
    for name in DOC_NAMES.values():
        assert stats[f"{P}.upstream.{name}.ok"] == 1
        assert stats[f"{P}.requests.{name}.fresh"] == n // 2
        assert stats[f"{P}.requests.{name}.upstream_error"] == 0


def test_outage_serves_the_copy_until_max_stale_then_503(make_cache_stack):
    """API server stopped after the prefetch. refresh 5 s, timeout 1 s, max_stale 3 s: the copy
    is fresh up to age 6 s, stale (still 200) up to 8 s, then 503; back after the restart."""
    s = make_cache_stack(refresh_interval_s=5, timeout_ms=1000, max_stale_s=3)
    fake, e = s.fake, s.envoy
    first = warm(e)
    fetched = {path: fake.requests_for(path)[-1].time for path in DOCS}
    assert all(fake.count(p) == 1 for p in DOCS), fake.counts
    fake.stop()
    t_stop = time.monotonic()

    seen: dict[str, list[tuple[float, client.Response]]] = {p: [] for p in DOCS}
    while time.monotonic() < max(fetched.values()) + 10:
        for path in DOCS:
            r = get(e, path)
            seen[path].append((time.monotonic() - fetched[path], r))
        time.sleep(0.08)

    stats = wasm_stats(e)
    for path, name in DOC_NAMES.items():
        good = first[name]
        log = [(round(a, 2), r.status) for a, r in seen[path]]
        for age, r in seen[path]:
            if age <= 7.7:
                assert r.status == 200, f"{path} at age {age:.2f}s: {r.status} {r.text}\n{log}"
                assert r.body == good.body and r.header("etag") == good.header("etag")
                assert int(r.header("age")) <= math.ceil(age)
            elif age >= 8.3:
                is_generic_error(r, 503)
        stale_answers = [r for a, r in seen[path] if 6.3 <= a <= 7.7]
        assert stale_answers and all(int(r.header("age")) >= 6 for r in stale_answers)
        assert stats[f"{P}.requests.{name}.stale"] >= len(stale_answers), stats
        assert stats[f"{P}.requests.{name}.upstream_error"] >= 1
        assert stats[f"{P}.upstream.{name}.unavailable"] >= 1
        assert stats[f"{P}.upstream.{name}.ok"] == 1

    # the API server comes back: the next retry (backoff <= refresh interval) brings a copy
    fake.start()
    t_back = time.monotonic()
    for path in DOCS:
        def ok():
            r = get(e, path)
            return r if r.status == 200 else None
        r = poll(ok, 5 + TICK_SLACK_S + 1, 0.1, f"200 on {path} after the restart")
        assert int(r.header("age")) <= 1
    assert time.monotonic() - t_back <= 5 + TICK_SLACK_S + 1
    print(f"outage from {t_stop:.1f}; recovered in {time.monotonic() - t_back:.1f}s")


def test_unusable_answers_are_never_stored(make_cache_stack):
    """A 200 with an HTML body and a 401 are refused: 502 while cold, the last good copy once
    there is one; never a 200 with anything but a valid document."""
    def garbage(fake):
        fake.set_mode("garbage")

    s = make_cache_stack(before_envoy=garbage, refresh_interval_s=5, timeout_ms=1000)
    fake, e = s.fake, s.envoy

    def attempts(path):
        return fake.count(path)

    # cold: the HTML page from a "corporate proxy"
    for path in DOCS:
        poll(lambda: attempts(path) >= 1, 5, what=f"first fetch of {path}")
    time.sleep(0.2)
    for path in DOCS:
        r = get(e, path)
        is_generic_error(r, 502)
        assert b"html" not in r.body.lower()

    # cold: the API server refuses the token (a real 401 Status body)
    fake.set_token("some-other-token")
    fake.set_mode("ok")
    before = {p: attempts(p) for p in DOCS}
    for path in DOCS:
        poll(lambda: attempts(path) > before[path], 5 + TICK_SLACK_S, what=f"retry of {path}")
    time.sleep(0.2)
    for path in DOCS:
        r = get(e, path)
        is_generic_error(r, 502)
        assert b"Unauthorized" not in r.body

    # the API server recovers: the next retry stores a good copy
    fake.set_token(s.token)
    good = {}
    for path in DOCS:
        def ok():
            r = get(e, path)
            assert r.status in (200, 502), (r.status, r.text)
            return r if r.status == 200 else None
        good[path] = poll(ok, 5 + TICK_SLACK_S, 0.1, f"200 on {path}")
    assert good[JWKS].body == fake.jwks_body()

    # warm: an HTML 200, then a 401, on refresh: the good copy stays
    for mode in ("garbage", "401"):
        if mode == "garbage":
            fake.set_mode("garbage")
        else:
            fake.set_token("some-other-token")
            fake.set_mode("ok")
        before = {p: attempts(p) for p in DOCS}
        deadline = time.monotonic() + 5 + TICK_SLACK_S + 1
        while time.monotonic() < deadline and not all(attempts(p) > before[p] + 0 for p in DOCS):
            for path in DOCS:
                r = get(e, path)
                assert r.status == 200, (mode, path, r.status, r.text)
                assert r.body == good[path].body and r.header("etag") == good[path].header("etag")
            time.sleep(0.1)
        assert all(attempts(p) > before[p] for p in DOCS), f"no refresh in {mode} mode"
        time.sleep(0.3)  # the refused answers have been processed
        for path in DOCS:
            for _ in range(5):
                r = get(e, path)
                assert r.status == 200, (mode, path, r.status, r.text)
                assert r.body == good[path].body, (mode, path, r.text)
                assert r.header("etag") == good[path].header("etag")

    stats = wasm_stats(e)
    fake.set_token(s.token)
    for name in DOC_NAMES.values():
        assert stats[f"{P}.upstream.{name}.invalid_body"] >= 2, stats
        assert stats[f"{P}.upstream.{name}.http_error"] >= 2, stats
        assert stats[f"{P}.upstream.{name}.ok"] == 1, stats
    assert not any(r.path not in DOCS for r in fake.requests)


def test_rotated_jwks_reaches_clients_within_one_refresh_interval(make_cache_stack):
    s = make_cache_stack(refresh_interval_s=5)
    fake, e = s.fake, s.envoy
    old = warm(e)["jwks"]
    assert old.body == fake.jwks_body()
    # rotate right after the prefetch: the worst case, a whole refresh interval to wait
    t_rot = time.monotonic()
    fake.rotate_keys()
    new_body = fake.jwks_body()
    assert new_body != old.body

    def rotated():
        r = get(e, JWKS)
        assert r.status == 200
        assert r.body in (old.body, new_body), r.text
        return r if r.body == new_body else None

    r = poll(rotated, 5 + TICK_SLACK_S + 1, 0.1, "the rotated JWKS")
    took = time.monotonic() - t_rot
    print(f"rotated JWKS served {took:.2f}s after the rotation")
    assert took <= 5 + TICK_SLACK_S, f"rotation took {took:.2f}s"
    assert r.header("etag") != old.header("etag")
    assert int(r.header("age")) <= 1
    r = get(e, JWKS, headers={"If-None-Match": old.header("etag")})
    assert r.status == 200 and r.body == new_body


def test_metrics_in_prometheus(make_cache_stack):
    e = make_cache_stack().envoy
    warm(e)  # 1 fresh request per document
    for _ in range(3):
        assert get(e, JWKS).status == 200
    etag = get(e, DISCOVERY).header("etag")
    assert get(e, DISCOVERY, headers={"If-None-Match": etag}).status == 304
    for path in ("/openid/v1/jwks/", "/api/v1/secrets"):
        assert get(e, path).status == 404
    assert client.request(e.port, JWKS, method="POST", host=HOST, body=b"{}").status == 405
    time.sleep(2.5)  # a stats flush (1 s here) for the histograms, two ticks for the age gauge

    values, types = prometheus(e)
    for name, kind in EXPECTED_METRICS.items():
        assert types.get(name) == kind, f"{name}: TYPE {types.get(name)!r}, want {kind}"
    ours = {n for n in types if n.startswith(P + "_")}
    assert ours == set(EXPECTED_METRICS), sorted(ours ^ set(EXPECTED_METRICS))
    assert not any("wasmcustom" in n for n in types)

    want = {
        "requests_jwks_fresh": 4, "requests_discovery_fresh": 2,
        "requests_discovery_not_modified": 1, "requests_jwks_not_modified": 0,
        "requests_jwks_stale": 0, "requests_discovery_stale": 0,
        "requests_jwks_upstream_error": 0, "requests_discovery_upstream_error": 0,
        "requests_not_found": 2, "requests_method_not_allowed": 1,
        "upstream_jwks_ok": 1, "upstream_discovery_ok": 1,
        "upstream_jwks_http_error": 0, "upstream_discovery_timeout": 0,
        "upstream_jwks_latency_ms_count": 1, "upstream_discovery_latency_ms_count": 1,
    }
    got = {k: values.get(f"{P}_{k}") for k in want}
    assert got == want
    for name in DOC_NAMES.values():
        assert 1 <= values[f"{P}_copy_{name}_age_s"] <= 5, values[f"{P}_copy_{name}_age_s"]
    # the same counters at admin /stats, as wasmcustom.<dotted name>
    stats = e.stats("wasmcustom")
    assert stats[f"wasmcustom.{P}.requests.jwks.fresh"] == 4
    assert stats[f"wasmcustom.{P}.requests.not_found"] == 2
