"""Load helpers for the cache tests (tests/e2e/test_cache.py) and the benchmark
(tests/bench/bench.py), on top of the shared harness:

- ``raise_nofile``: lifts the soft RLIMIT_NOFILE of this process (1000 concurrent sockets);
- ``burst``: N requests sent at once over N raw HTTP/1.1 connections (asyncio);
- ``wrk``: runs wrk with a Lua reporter and returns requests, errors and latency percentiles.
"""

from __future__ import annotations

import asyncio
import json
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .constants import HOST


def raise_nofile(wanted: int) -> int:
    """Raises the soft limit of open files to ``wanted`` (at most the hard limit); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


# ---------------------------------------------------------------------- concurrent burst
@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    error: str | None = None
    done: float = 0.0


@dataclass
class BurstResult:
    responses: list[RawResponse]
    started: float
    all_sent: float
    finished: float
    errors: list[str] = field(default_factory=list)


def _parse(raw: bytes) -> RawResponse:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return RawResponse(0, {}, b"", f"no header end in {len(raw)} bytes")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    headers: dict[str, str] = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    n = headers.get("content-length")
    if n is not None and n.isdigit() and len(body) != int(n):
        return RawResponse(status, headers, body, f"body {len(body)} bytes, content-length {n}")
    return RawResponse(status, headers, body)


async def _burst(port: int, requests: list[bytes], timeout: float, address: str) -> BurstResult:
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    gate = asyncio.Event()
    connected = 0
    sent = 0
    all_sent = loop.create_future()

    async def one(req: bytes) -> RawResponse:
        nonlocal connected, sent
        writer = None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(address, port), timeout)
            connected += 1
            if connected == len(requests):
                gate.set()
            # every connection is open before the first request goes out: the requests then
            # really are in flight at the same time
            await asyncio.wait_for(gate.wait(), timeout)
            writer.write(req)
            await writer.drain()
            sent += 1
            if sent == len(requests) and not all_sent.done():
                all_sent.set_result(time.monotonic())
            raw = await asyncio.wait_for(reader.read(-1), timeout)  # Connection: close
            r = _parse(raw)
            r.done = time.monotonic()
            return r
        except (OSError, asyncio.TimeoutError) as e:
            gate.set()  # never keep the others waiting for a connection that failed
            return RawResponse(0, {}, b"", f"{type(e).__name__}: {e}", time.monotonic())
        finally:
            if writer is not None:
                writer.close()

    responses = await asyncio.gather(*(one(r) for r in requests))
    finished = time.monotonic()
    sent_at = all_sent.result() if all_sent.done() else finished
    return BurstResult(list(responses), started, sent_at, finished,
                       [r.error for r in responses if r.error])


def request_bytes(path: str, host: str = HOST, method: str = "GET",
                  headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def burst(port: int, requests: list[bytes], timeout: float = 20.0,
          address: str = "127.0.0.1") -> BurstResult:
    """Opens one connection per request, then sends every request at once and reads every
    answer. Raise the file limit first (``raise_nofile``) for bursts of hundreds."""
    return asyncio.run(_burst(port, requests, timeout, address))


# ---------------------------------------------------------------------- wrk
WRK_REPORTER = r"""
-- kube-oidc-discovery load reporter: one JSON line after the run (latencies in microseconds)
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
"""

# Per-status counts (summed over wrk's threads in `done`), for runs whose every status matters.
WRK_STATUSES = r"""
local threads = {}
setup = function(thread) table.insert(threads, thread) end
statuses = {}
response = function(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
local report = done
done = function(summary, latency, requests)
  report(summary, latency, requests)
  local total, parts = {}, {}
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("statuses")) do total[status] = (total[status] or 0) + n end
  end
  for status, n in pairs(total) do table.insert(parts, string.format('"%d":%d', status, n)) end
  io.write('WRK_STATUS {' .. table.concat(parts, ",") .. '}\n')
end
"""

# A pause before each request on each connection: a steady, bounded load instead of saturation.
WRK_DELAY = r"""
delay = function() return {delay_ms} end
"""


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    bytes: int
    errors: dict[str, int]
    non_2xx_3xx: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    output: str
    statuses: dict[int, int] | None = None  # with ``statuses=True``: requests by status

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def socket_errors(self) -> int:
        return sum(self.errors.values())


def wrk_bin() -> str:
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is not installed: run `make tools-apt` (Debian package wrk)")
    return found


def _reporter(workdir: Path, statuses: bool = False, delay_ms: int = 0) -> Path:
    script = WRK_REPORTER + (WRK_STATUSES if statuses else "")
    if delay_ms:
        script += WRK_DELAY.replace("{delay_ms}", str(int(delay_ms)))
    name = "wrk_report.lua"
    if script != WRK_REPORTER:
        name = f"wrk_report{'_statuses' if statuses else ''}_delay{int(delay_ms)}.lua"
    p = Path(workdir) / name
    if not p.exists() or p.read_text() != script:
        p.write_text(script)
    return p


def wrk_start(url: str, workdir: Path | str, *, duration_s: float = 10, connections: int = 50,
              threads: int = 2, host: str | None = HOST,
              headers: dict[str, str] | None = None, timeout_s: float = 5,
              statuses: bool = False, delay_ms: int = 0) -> subprocess.Popen:
    """Starts wrk in the background; finish it with ``wrk_finish``. ``statuses``: count the
    requests by status; ``delay_ms``: each connection pauses this long before each request."""
    script = _reporter(Path(workdir), statuses, delay_ms)
    args = [wrk_bin(), "-t", str(threads), "-c", str(connections), "-d", f"{duration_s:g}s",
            "--timeout", f"{timeout_s:g}s", "-s", str(script)]
    if host:
        args += ["-H", f"Host: {host}"]
    for k, v in (headers or {}).items():
        args += ["-H", f"{k}: {v}"]
    args.append(url)
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wrk_finish(proc: subprocess.Popen, timeout: float = 60) -> WrkResult:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise RuntimeError(f"wrk did not finish in {timeout}s:\n{out}")
    line = next((l for l in out.splitlines() if l.startswith("WRK_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed (exit {proc.returncode}):\n{out}")
    j = json.loads(line[len("WRK_JSON "):])
    status_line = next((l for l in out.splitlines() if l.startswith("WRK_STATUS ")), None)
    statuses = ({int(k): v for k, v in json.loads(status_line[len("WRK_STATUS "):]).items()}
                if status_line else None)
    return WrkResult(
        requests=j["requests"], duration_s=j["duration_us"] / 1e6, bytes=j["bytes"],
        errors={k: j[k] for k in ("connect", "read", "write", "timeout")},
        non_2xx_3xx=j["status"], p50_ms=j["p50_us"] / 1000, p90_ms=j["p90_us"] / 1000,
        p99_ms=j["p99_us"] / 1000, max_ms=j["max_us"] / 1000, mean_ms=j["mean_us"] / 1000,
        output=out, statuses=statuses,
    )


def wrk(url: str, workdir: Path | str, **kw) -> WrkResult:
    """Runs wrk to completion (see ``wrk_start`` for the options)."""
    duration = kw.get("duration_s", 10)
    return wrk_finish(wrk_start(url, workdir, **kw), timeout=duration + 30)
