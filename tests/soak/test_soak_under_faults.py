"""Soak under faults: steady load on both documents, the 404 path and another host, for
SOAK_SECONDS (`make soak`: 1800; `make test`: 120), while the fake API server goes down for 20 s
every 2 minutes, the JWKS rotates every 3 minutes and the service-account token every 5 minutes
(periods scaled by SOAK_SECONDS / 1800, an outage never shorter than a refresh interval and a
tick). envoy/pod.yaml as shipped, 2 workers, refresh every 5 s.

It fails on: a document answered other than 200 (the copy is never older than max_stale_s, the
default day, here); a 5xx, or anything but 200, for the other host; a rotation (keys or token) not
visible within one refresh interval of when it happened, or of when the API server came back if
it was down; more API-server calls than one per document per refresh interval, plus one per
outage, or more failed attempts than the backoff allows; a refused (401) fetch; Envoy's RSS
growing after the warm-up by more than SOAK_RSS_GROWTH_PCT percent. The figures are printed
and written to dist/soak.md.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass, field

import pytest

from e2e.checks import DISCOVERY, HOST, JWKS
from harness import REPO_ROOT, client
from harness.child import rss_kib
from harness.load import WrkResult, wrk_finish, wrk_start
from harness.stack import new_token

FULL_S = 1800
SOAK_S = float(os.environ.get("SOAK_SECONDS", "120"))
SCALE = SOAK_S / FULL_S
REFRESH_S = 5
# one idle tick (1 s), the fetch, and a busy 2-core machine under load
SLACK_S = 2.5
# An outage shorter than a refresh interval and a tick can fall between two fetches and test
# nothing: scaled down, it lasts at least that long, and comes at most every third of the time.
OUTAGE_FOR_S = max(20 * SCALE, REFRESH_S + 1.5)
OUTAGE_EVERY_S = max(120 * SCALE, 3 * OUTAGE_FOR_S)
JWKS_EVERY_S, TOKEN_EVERY_S = 180 * SCALE, 300 * SCALE
WARMUP_S = max(30.0, 0.1 * SOAK_S)
RSS_GROWTH_PCT = float(os.environ.get("SOAK_RSS_GROWTH_PCT", "10"))
# steady, bounded load: each wrk connection pauses DELAY_MS before each request
CONNECTIONS = int(os.environ.get("SOAK_CONNECTIONS", "4"))
DELAY_MS = int(os.environ.get("SOAK_DELAY_MS", "5"))
NOT_FOUND_PATH = "/api/v1/secrets"
APP_HOST = "app.example.com"
OUT = REPO_ROOT / "dist" / "soak.md"
P = "kube_oidc_discovery"

pytestmark = pytest.mark.timeout(SOAK_S + 240)


def outages() -> list[tuple[float, float]]:
    """(start, end) of every outage, in seconds from the start of the load."""
    return [(t, t + OUTAGE_FOR_S) for t in _every(OUTAGE_EVERY_S, OUTAGE_FOR_S)]


def _every(period: float, lasting: float = 0.0) -> list[float]:
    # an event is checked before the load ends: it leaves room for an outage and a refresh
    last = SOAK_S - lasting - OUTAGE_FOR_S - REFRESH_S - SLACK_S
    return [period * k for k in range(1, int(SOAK_S / period) + 1) if period * k <= last]


def deadline(at: float, windows: list[tuple[float, float]]) -> float:
    """When a change made at ``at`` must be served: one refresh interval (and the slack) of the
    API server being up, pushed back past every outage that begins before it is due."""
    due = at + REFRESH_S + SLACK_S
    for start, end in windows:
        if start < due and end > at:
            due = max(due, end + REFRESH_S + SLACK_S)
    return due


def max_failed_attempts(outage_s: float) -> int:
    """Failed fetches of one document an outage allows (src/policy.rs backoff: from 1 s, doubled,
    capped at the refresh interval, jittered down to half, never under 1 s), and the fetch the
    outage cut short."""
    t, n = 0.0, 0
    while t <= outage_s:
        n += 1
        t += max(1.0, min(2.0 ** (n - 1), REFRESH_S) / 2)
    return n + 1


@dataclass
class Pending:
    what: str
    at: float
    due: float
    seen: float | None = None


@dataclass
class Log:
    rotations: list[Pending] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)
    probe_errors: list[str] = field(default_factory=list)


def test_soak_under_faults(make_stack, backend, tmp_path):
    s = make_stack("pod.yaml", concurrency=2, backend_port=backend.port,
                   plugin_changes={"refresh_interval_s": REFRESH_S})
    fake, e = s.fake, s.envoy
    pid = e.proc.pid
    windows = outages()
    events = sorted([(t, "down") for t, _ in windows] + [(t, "up") for _, t in windows]
                    + [(t, "jwks") for t in _every(JWKS_EVERY_S)]
                    + [(t, "token") for t in _every(TOKEN_EVERY_S)])
    url = f"http://127.0.0.1:{e.port}"
    common = dict(duration_s=SOAK_S, connections=CONNECTIONS, threads=1, statuses=True,
                  delay_ms=DELAY_MS)
    started = time.monotonic()
    procs = {
        "discovery": wrk_start(url + DISCOVERY, tmp_path, host=HOST, **common),
        "jwks": wrk_start(url + JWKS, tmp_path, host=HOST, **common),
        "404": wrk_start(url + NOT_FOUND_PATH, tmp_path, host=HOST, **common),
        "other host": wrk_start(url + "/", tmp_path, host=APP_HOST, **common),
    }
    log = Log()
    pending: list[Pending] = []  # rotations not yet served; a later one supersedes them
    jwks_body, valid_tokens = None, [s.token]
    next_rss = 0.0
    try:
        while (now := time.monotonic() - started) < SOAK_S:
            while events and events[0][0] <= now:
                _, kind = events.pop(0)
                if kind == "down":
                    fake.stop()
                elif kind == "up":
                    fake.start()
                elif kind == "jwks":
                    fake.rotate_keys()
                    jwks_body = fake.jwks_body()
                    pending.append(Pending("jwks", now, deadline(now, windows)))
                else:
                    # kubelet's way: the new token is valid at once, the old ones until they expire
                    s.token = new_token()
                    valid_tokens.append(s.token)
                    fake.set_token(*reversed(valid_tokens))
                    s.tokens.write_token(s.token)
                    pending.append(Pending("token", now, deadline(now, windows)))
            if any(r.what == "jwks" for r in pending):
                r = client.get(e.port, JWKS, host=HOST)
                if r.status != 200:
                    log.probe_errors.append(f"{now:.1f}s: JWKS {r.status}")
                elif r.body == jwks_body:
                    seen(pending, log, "jwks", now)
            if any(r.what == "token" for r in pending):
                bearer = f"Bearer {s.token}"
                if all(any(rec.header("authorization") == bearer for rec in fake.requests_for(path))
                       for path in (DISCOVERY, JWKS)):
                    seen(pending, log, "token", now)
                    valid_tokens = [s.token]
                    fake.set_token(s.token)  # the old ones expire: using one now would be a 401
            if now >= next_rss:
                log.rss.append((now, rss_kib(pid)))
                next_rss = now + 5
            time.sleep(0.2)
        results = {name: wrk_finish(p, timeout=60) for name, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(10)
        if not fake.running:
            fake.start()
    elapsed = time.monotonic() - started
    log.rotations += pending
    log.rss.append((elapsed, rss_kib(pid)))
    stats = {k[len("wasmcustom."):]: v for k, v in e.stats("wasmcustom").items()}
    report = write_report(results, log, stats, fake, elapsed, windows)
    print(report)

    # every answer as it should be, and no client error
    for name in ("discovery", "jwks"):
        r = results[name]
        assert r.statuses == {200: r.requests} and r.socket_errors == 0, (name, r.statuses, r.errors)
    assert results["404"].statuses == {404: results["404"].requests}, results["404"].statuses
    other = results["other host"]
    assert not any(st >= 500 for st in other.statuses), other.statuses
    assert other.statuses == {200: other.requests} and other.socket_errors == 0, other.statuses
    assert not log.probe_errors, log.probe_errors
    # the outages happened to the filter: each spans a refresh
    assert all(stats[f"{P}.upstream.{d}.unavailable"] >= 1 for d in ("discovery", "jwks")), stats
    # every rotation visible in time
    assert log.rotations and all(r.seen is not None and r.seen <= r.due for r in log.rotations), \
        [(r.what, round(r.at, 1), round(r.due, 1), r.seen and round(r.seen, 1)) for r in log.rotations]
    # API-server calls within the bound; never a refused token
    for d, path in (("discovery", DISCOVERY), ("jwks", JWKS)):
        calls, failed = fake.count(path), stats[f"{P}.upstream.{d}.unavailable"] + stats[f"{P}.upstream.{d}.timeout"]
        assert calls <= math.ceil(elapsed / REFRESH_S) + 1 + len(windows), (d, calls)
        assert failed <= len(windows) * max_failed_attempts(OUTAGE_FOR_S), (d, failed)
        assert stats[f"{P}.upstream.{d}.http_error"] == 0, stats
        assert stats[f"{P}.requests.{d}.upstream_error"] == 0, stats
    # memory flat after the warm-up
    growth, base = rss_growth(log.rss)
    assert growth <= base * RSS_GROWTH_PCT / 100, f"RSS grew {growth} KiB from {base} KiB"


def seen(pending: list[Pending], log: Log, what: str, now: float) -> None:
    """The latest rotation of a kind is served: so are the ones before it."""
    for r in [r for r in pending if r.what == what]:
        r.seen = now
        pending.remove(r)
        log.rotations.append(r)


def rss_growth(samples: list[tuple[float, int]]) -> tuple[int, int]:
    """(growth, base) in KiB: the median of the last tenth of the run minus the median of the
    first tenth after the warm-up."""
    after = [(t, v) for t, v in samples if t >= WARMUP_S]
    n = max(1, len(after) // 10)
    base = int(statistics.median(v for _, v in after[:n]))
    return int(statistics.median(v for _, v in after[-n:])) - base, base


def write_report(results: dict[str, WrkResult], log: Log, stats: dict[str, int], fake,
                 elapsed: float, windows: list[tuple[float, float]]) -> str:
    rows = ["| load | requests | statuses | socket errors | p99 (ms) |", "|---|---:|---|---:|---:|"]
    for name, r in results.items():
        sts = ", ".join(f"{k}: {v:,}" for k, v in sorted((r.statuses or {}).items()))
        rows.append(f"| {name} | {r.requests:,} | {sts} | {r.socket_errors} | {r.p99_ms:.1f} |")
    late = [r for r in log.rotations if r.seen is not None and r.seen <= r.due]
    growth, base = rss_growth(log.rss)
    lines = [
        f"Soak under faults: {elapsed:.0f} s ({SOAK_S:g} s asked), refresh every {REFRESH_S} s, "
        f"{len(windows)} outages of {OUTAGE_FOR_S:.1f} s every {OUTAGE_EVERY_S:.1f} s, JWKS rotated every "
        f"{JWKS_EVERY_S:.1f} s, token every {TOKEN_EVERY_S:.1f} s; wrk 4 x {CONNECTIONS} connections, "
        f"{DELAY_MS} ms between requests",
        "", *rows, "",
        f"- rotations: {len(log.rotations)} ({sum(r.what == 'jwks' for r in log.rotations)} JWKS, "
        f"{sum(r.what == 'token' for r in log.rotations)} token), {len(late)} served in time, after at most "
        f"{max((r.seen - r.at for r in late), default=0):.1f} s (an outage in between) and at least "
        f"{min((r.due - r.seen for r in late), default=0):.1f} s before the deadline ({REFRESH_S} s + "
        f"{SLACK_S} s of the API server being up)",
    ]
    for d, path in (("discovery", DISCOVERY), ("jwks", JWKS)):
        lines.append(
            f"- {d}: {fake.count(path)} API-server calls (bound {math.ceil(elapsed / REFRESH_S) + 1 + len(windows)}), "
            f"{stats[f'{P}.upstream.{d}.unavailable'] + stats[f'{P}.upstream.{d}.timeout']} failed attempts "
            f"(bound {len(windows) * max_failed_attempts(OUTAGE_FOR_S)}), "
            f"{stats[f'{P}.requests.{d}.fresh']:,} fresh and {stats[f'{P}.requests.{d}.stale']:,} stale answers")
    lines.append(f"- Envoy RSS: {base / 1024:.1f} MiB after the {WARMUP_S:.0f} s warm-up, "
                 f"{growth / 1024:+.1f} MiB ({100 * growth / base:+.1f} %) by the end; "
                 f"min {min(v for _, v in log.rss) / 1024:.1f}, max {max(v for _, v in log.rss) / 1024:.1f} MiB")
    text = "\n".join(lines) + "\n"
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    return text
