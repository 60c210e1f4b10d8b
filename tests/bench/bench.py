"""`make bench`: Envoy CPU per request, throughput and latency of the filter in a real Envoy
(2 workers) with wrk, and Envoy's memory with and without it.

One Envoy runs the shipped envoy/pod.yaml (the filter on the ``public`` listener, scoped to the
OIDC virtual host; the fake kube-apiserver behind the ``kubernetes`` cluster, refresh every 5 s)
plus twin listeners built from copies of the public one, with the same HTTP connection manager
settings: ``direct`` without the Wasm filter, whose route answers ``/openid/v1/jwks`` with Envoy's
own ``direct_response`` of exactly the bytes (and the same response headers) the filter serves;
``floor``, whose Wasm filter is tools/floor.rs; ``unscoped``, the filter in every request's
path (the configs before it was scoped). Every scenario sends the same browser-like headers. The
scenarios run interleaved (ABC then CBA) in rounds, each slice a wrk run of a few seconds. Envoy's
CPU is utime+stime of its process (/proc/<pid>/stat) over each slice, divided by the requests
wrk completed in it. The table gives that per scenario (over all slices, and the range of the
slices), requests/s over all slices, the mean p50/p99 of the slices, the ratio to
direct_response, and the calls the API server saw. Then Envoy's RSS with and without the filter
at --concurrency 2 and 8 (tests/bench/memory.py). Printed and written to dist/bench.md.

Exit status 1 on a correctness problem (a wrong status or body, socket errors, more API server
calls than one per document per refresh interval plus the prefetch); a ratio under the target
is reported, not failed on (a shared 2-core machine is noisy).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import REPO_ROOT, client, config, pki  # noqa: E402
from harness.envoy import envoy_bin  # noqa: E402
from harness.fake_apiserver import CACHE_CONTROL, DISCOVERY_PATH, JWKS_PATH  # noqa: E402
from harness.load import WrkResult, wrk, wrk_bin  # noqa: E402
from harness.stack import Stack  # noqa: E402

sys.path.insert(0, str(REPO_ROOT / "tools"))
import wasm_exports  # noqa: E402  (tools/wasm_exports.py)
from memory import KINDS, WARM_ROUNDS, rss_rows, without_filter  # noqa: E402  (tests/bench/memory.py)

WASM = REPO_ROOT / "dist" / "kube_oidc_discovery.wasm"
# tools/floor.rs: a Wasm filter that only answers a constant (make bench builds it)
FLOOR_WASM = REPO_ROOT / "target" / "wasm32-wasip1" / "release" / "examples" / "floor.wasm"
WORKDIR = REPO_ROOT / ".run" / "bench"
OUT = REPO_ROOT / "dist" / "bench.md"
HOST = "oidc.example.com"
NOT_FOUND_PATH = "/api/v1/secrets"
APP_HOST, APP_PATH, APP_BODY = "app.example.com", "/home", "hello from the application\n"
# What a browser sends to an application behind the same gateway; every scenario sends it, so the
# scenarios differ only in what Envoy does with the request.
BROWSER_HEADERS = {
    "user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    "accept-language": "en-US,en;q=0.9",
    "accept-encoding": "gzip, deflate, br",
    "referer": "https://app.example.com/start",
    "cookie": "session=" + "a1b2c3d4" * 32 + "; theme=dark; consent=yes",
    "sec-fetch-dest": "document", "sec-fetch-mode": "navigate", "sec-fetch-site": "same-origin",
    "upgrade-insecure-requests": "1", "cache-control": "max-age=0",
}
TARGET_RATIO, AIM_RATIO = 0.6, 0.8
# Envoy CPU per request (issue 9): another host with the scoped filter vs no filter, cached JWKS vs
# the do-nothing Wasm filter.
SCOPED_TARGET_US, FLOOR_TARGET_US = 1.0, 3.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Response headers the filter sets on a 200 besides content-length (src/answer.rs).
RELAYED = ("cache-control", "etag", "age", "x-content-type-options", "content-type")


# ---------------------------------------------------------------------- Envoy configuration
def filter_etag(body: bytes) -> str:
    """The entity tag the filter computes (src/shared.rs: FNV-1a 64 of the body, then its length)."""
    h = 0xCBF29CE484222325
    for b in body + b"\xff":
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f'"{h:016x}-{len(body):x}"'


def route_other_hosts_to_constant(cfg: dict) -> None:
    """Every other host of listener 0 gets a direct_response instead of the application cluster,
    so that pass-through traffic can be measured without a backend (before the twins are made)."""
    vhost = next(v for v in config.hcm(cfg)["route_config"]["virtual_hosts"] if v["domains"] == ["*"])
    vhost["routes"] = [{"match": {"prefix": "/"},
                        "direct_response": {"status": 200, "body": {"inline_string": APP_BODY}}}]


def add_twin_listener(cfg: dict, name: str) -> dict:
    """Appends a copy of listener 0 named ``name`` on an ephemeral port; returns its HTTP
    connection manager (same settings, its own stat prefix)."""
    twin = copy.deepcopy(config.listeners(cfg)[0])
    twin["name"] = name
    twin["address"]["socket_address"]["port_value"] = 0
    config.listeners(cfg).append(twin)
    hcm = config.hcm(cfg, -1)
    hcm["stat_prefix"] = name
    return hcm


def add_direct_listener(cfg: dict, body: bytes, headers: dict[str, str]) -> None:
    """Appends listener ``direct``: a copy of listener 0 without the Wasm filter whose route for
    the JWKS path is a direct_response of ``body`` with ``headers``."""
    hcm = add_twin_listener(cfg, "direct")
    without_filter(cfg, -1)
    assert [f["name"] for f in hcm["http_filters"]] == ["envoy.filters.http.router"], hcm["http_filters"]
    rc = hcm["route_config"]
    rc["name"] = "direct"
    vhost = next(v for v in rc["virtual_hosts"] if HOST in v["domains"])
    vhost["routes"] = [{
        "match": {"path": JWKS_PATH},
        "direct_response": {"status": 200, "body": {"inline_string": body.decode()}},
        "response_headers_to_add": [
            {"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
            for k, v in headers.items()
        ],
    }] + vhost["routes"]


def add_unscoped_listener(cfg: dict) -> None:
    """Appends listener ``unscoped``: a copy of listener 0 whose filter is in every request's
    path, as in the configs before it was scoped to the OIDC virtual host."""
    hcm = add_twin_listener(cfg, "unscoped")
    for f in hcm["http_filters"]:
        f.pop("disabled", None)


def add_floor_listener(cfg: dict, wasm: Path, body: bytes, headers: dict[str, str], name: str = "floor") -> None:
    """Appends listener ``name``: a copy of listener 0 whose Wasm filter is tools/floor.rs,
    answering every request with ``body`` and ``headers``: the least any Wasm filter costs."""
    add_twin_listener(cfg, name)
    plugin = config.wasm_plugin(cfg, -1)
    plugin["name"] = plugin["vm_config"]["vm_id"] = name
    plugin["vm_config"].pop("environment_variables", None)
    config.set_wasm_file(cfg, wasm, -1)
    head = "".join(f"{k}: {v}\n" for k, v in headers.items())
    config.set_plugin_config(cfg, head + "\n" + body.decode(), -1)


def compare_names(count: int) -> list[str]:
    """The listeners (and VM ids) of --compare-wasm's builds: ``compare``, ``compare2``, ..."""
    return ["compare" if i == 0 else f"compare{i + 1}" for i in range(count)]


def add_compare_listener(cfg: dict, wasm: Path, name: str) -> None:
    """Appends listener ``name``: a copy of listener 0 running another build of the filter
    (--compare-wasm), in a VM of its own, so that builds are measured side by side."""
    add_twin_listener(cfg, name)
    plugin = config.wasm_plugin(cfg, -1)
    plugin["vm_config"]["vm_id"] = name
    config.set_wasm_file(cfg, wasm, -1)
    # its copy is prefetched once and never refreshed, so the API-server calls counted in the
    # run stay those of the filter under test
    settings = json.loads(plugin["configuration"]["value"])
    settings["refresh_interval_s"] = 86_400
    settings["max_stale_s"] = 86_400
    config.set_plugin_config(cfg, settings, -1)


def listener_ports(stack: Stack) -> dict[str, int]:
    status, body = stack.envoy.admin_get("/listeners?format=json")
    assert status == 200, body
    return {ls["name"]: ls["local_address"]["socket_address"]["port_value"]
            for ls in json.loads(body)["listener_statuses"]}


# ---------------------------------------------------------------------- machine
def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    envoy_version = subprocess.run([envoy_bin(), "--version"], capture_output=True, text=True,
                                   timeout=30).stdout.strip().split("version:")[-1].strip()
    wrk_version = subprocess.run([wrk_bin(), "-v"], capture_output=True, text=True,
                                 timeout=10).stdout.splitlines()[0].split("[")[0].strip()
    return {"nproc": str(os.cpu_count()), "cpu": model, "kernel": platform.release(),
            "envoy": envoy_version, "wrk": wrk_version}


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# ---------------------------------------------------------------------- run
class Scenario:
    def __init__(self, key: str, label: str, listener: str, path: str, status: int,
                 host: str = HOST, headers: dict[str, str] | None = None):
        self.key, self.label, self.listener, self.path, self.status = key, label, listener, path, status
        self.host, self.headers = host, headers
        self.slices: list[WrkResult] = []
        self.cpu_s: list[float] = []  # Envoy CPU seconds over each slice
        self.calls = {"discovery": 0, "jwks": 0}

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.slices)

    @property
    def rps(self) -> float:
        return self.requests / sum(r.duration_s for r in self.slices)

    def mean(self, attr: str) -> float:
        return sum(getattr(r, attr) for r in self.slices) / len(self.slices)

    @property
    def cpu_us(self) -> float:
        """Envoy CPU µs per request over all slices."""
        return sum(self.cpu_s) / self.requests * 1e6

    @property
    def cpu_us_range(self) -> tuple[float, float]:
        per_slice = [c / r.requests * 1e6 for c, r in zip(self.cpu_s, self.slices)]
        return min(per_slice), max(per_slice)

    def problems(self) -> list[str]:
        out = []
        for r in self.slices:
            if r.socket_errors:
                out.append(f"{self.label}: socket errors {r.errors}")
            bad = r.non_2xx_3xx if self.status < 400 else r.requests - r.non_2xx_3xx
            if bad:
                out.append(f"{self.label}: {bad} of {r.requests} answers were not {self.status}")
        return out


def calls(stack: Stack) -> dict[str, int]:
    return {"discovery": stack.fake.count(DISCOVERY_PATH), "jwks": stack.fake.count(JWKS_PATH)}


def check_answers(ports: dict[str, int], jwks: bytes) -> list[str]:
    """Both JWKS paths give the same bytes; the 404 path gives 404. Returns notes."""
    notes = []
    f = client.get(ports["public"], JWKS_PATH, host=HOST)
    d = client.get(ports["direct"], JWKS_PATH, host=HOST)
    n = client.get(ports["public"], NOT_FOUND_PATH, host=HOST)
    if f.status != 200 or f.body != jwks:
        raise SystemExit(f"filter JWKS answer wrong: {f.status} {f.text[:200]}")
    if d.status != 200 or d.body != f.body:
        raise SystemExit(f"direct_response JWKS differs from the filter's: {d.status} {d.text[:200]}")
    for listener in ("public", "unscoped", "direct"):
        app = client.get(ports[listener], APP_PATH, host=APP_HOST)
        if app.status != 200 or app.body != APP_BODY.encode():
            raise SystemExit(f"{APP_HOST} on listener {listener} did not reach its route: {app.status}")
    for floor in ("floor", "floor_kept"):
        fl = client.get(ports[floor], JWKS_PATH, host=HOST)
        if fl.status != 200 or fl.body != f.body or fl.header_names() != f.header_names():
            raise SystemExit(f"the {floor} filter's answer differs from the filter's: {fl.status} {fl.headers}")
    if n.status != 404:
        raise SystemExit(f"{NOT_FOUND_PATH} answered {n.status}, not 404")
    if f.header("etag") != d.header("etag"):
        notes.append(f"etag differs: filter {f.header('etag')}, direct {d.header('etag')}")
    fh, dh = f.header_names(), d.header_names()
    if fh != dh:
        notes.append(f"response header names differ: filter only {sorted(fh - dh)}, "
                     f"direct only {sorted(dh - fh)}")
    raw = lambda r: sum(len(k) + len(v) + 4 for k, v in r.headers)  # noqa: E731
    notes.append(f"response size: filter {raw(f) + len(f.body)} B, direct {raw(d) + len(d.body)} B "
                 f"(body {len(f.body)} B, {len(fh)} headers each)")
    return notes


def table(scenarios: list[Scenario], run_s: float, run_calls: dict[str, int], refresh_s: int,
          prefetch_calls: dict[str, int]) -> tuple[str, list[str]]:
    direct = next(s for s in scenarios if s.key == "direct")
    by_key = {s.key: s for s in scenarios}
    rows = ["| scenario | Envoy CPU µs/request (slices) | requests/s | p50 (ms) | p99 (ms) | vs direct_response "
            "| API server calls (discovery / jwks) |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    verdicts = []
    for s in scenarios:
        lo, hi = s.cpu_us_range
        rows.append(f"| {s.label} | {s.cpu_us:.1f} ({lo:.1f}-{hi:.1f}) | {s.rps:,.0f} | {s.mean('p50_ms'):.2f} | "
                    f"{s.mean('p99_ms'):.2f} | {s.rps / direct.rps:.2f}x | {s.calls['discovery']} / {s.calls['jwks']} |")

    def delta(a: str, b: str, target: float | None, what: str) -> None:
        if a in by_key and b in by_key:
            d = by_key[a].cpu_us - by_key[b].cpu_us
            verdict = "" if target is None else f" (target <= {target:g} µs: {'met' if d <= target else 'NOT met'})"
            verdicts.append(f"{what}: {d:+.1f} µs of Envoy CPU per request{verdict}")

    delta("other_scoped", "other_none", SCOPED_TARGET_US, "another host, scoped filter - no filter")
    delta("other_unscoped", "other_none", None, "another host, unscoped filter - no filter")
    delta("filter_jwks", "floor", FLOOR_TARGET_US, "cached JWKS - do-nothing Wasm filter")
    delta("filter_jwks", "floor_kept", None, "cached JWKS - do-nothing filter built as the filter is")
    delta("floor", "floor_kept", None, "do-nothing filter: SDK's callbacks - only its own")
    for name in dict.fromkeys(s.listener for s in scenarios if s.key.startswith("compare")):
        delta("filter_jwks", f"{name}_jwks", None, f"cached JWKS, this build - {name}")
        delta(f"{name}_jwks", "floor", None, f"{name} - do-nothing Wasm filter")
        delta("filter_404", f"{name}_404", None, f"404, this build - {name}")
    delta("floor", "direct", None, "do-nothing Wasm filter - direct_response")
    if "filter_jwks" in by_key:
        ratio = by_key["filter_jwks"].rps / direct.rps
        verdicts.append(f"cached JWKS / direct_response throughput = {ratio:.2f} (target >= {TARGET_RATIO}, "
                        f"aim {AIM_RATIO}): {'met' if ratio >= TARGET_RATIO else 'NOT met'}")
    bound = math.ceil(run_s / refresh_s) + 1
    rows.append(f"| whole measured run ({run_s:.0f} s, refresh every {refresh_s} s; prefetch "
                f"{prefetch_calls['discovery']} / {prefetch_calls['jwks']} before it) | | | | | | "
                f"{run_calls['discovery']} / {run_calls['jwks']} (bound {bound} each) |")
    over = [d for d, n in run_calls.items() if n > bound]
    verdicts.append(f"API server calls <= ceil({run_s:.0f}/{refresh_s})+1 = {bound} per document: "
                    + ("met" if not over else f"NOT met for {', '.join(over)}"))
    return "\n".join(rows), verdicts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slice", type=float, default=5, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=3, help="rounds over all scenarios (ABC, CBA, ...)")
    ap.add_argument("--warmup", type=float, default=2, help="seconds of warm-up per scenario")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=2, help="Envoy worker threads")
    ap.add_argument("--refresh", type=int, default=5, help="refresh_interval_s of the filter")
    ap.add_argument("--wasm", default=str(WASM), help="filter to measure (default: dist/)")
    ap.add_argument("--floor-wasm", default=str(FLOOR_WASM), help="the do-nothing filter (tools/floor.rs)")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--only", default="", help="comma-separated scenario keys (profiling runs); "
                    "besides the default ones: direct_404")
    ap.add_argument("--memory", default="2,8", help="--concurrency values of the RSS table ('' skips it)")
    ap.add_argument("--compare-wasm", default="", help="other builds of the filter, comma-separated, "
                    "measured beside this one (scenarios compare_jwks, compare2_jwks, ...; with --only also "
                    "compare_404, ...; e.g. dist/ of the previous commit)")
    args = ap.parse_args(argv)

    wasm = Path(args.wasm)
    for path, how in ((wasm, "make build"),
                      (Path(args.floor_wasm), "cargo build --release --target wasm32-wasip1 --example floor")):
        if not path.exists():
            print(f"{path} is missing: run `{how}` (make bench does)", file=sys.stderr)
            return 2
    wrk_bin()  # fails early with a hint when wrk is missing
    info = machine()
    shutil.rmtree(WORKDIR, ignore_errors=True)
    WORKDIR.mkdir(parents=True)
    stack = Stack(WORKDIR / "stack", pki.generate(WORKDIR / "pki"), wasm, "pod.yaml",
                  plugin_changes={"refresh_interval_s": args.refresh}, concurrency=args.concurrency)
    try:
        jwks = stack.fake.jwks_body()
        ctype = stack.fake.document(JWKS_PATH)[1]
        # the headers the filter will send, so that both answers have the same bytes
        headers = {"cache-control": CACHE_CONTROL, "etag": filter_etag(jwks), "age": "0",
                   "x-content-type-options": "nosniff", "content-type": ctype}
        route_other_hosts_to_constant(stack.cfg)
        add_unscoped_listener(stack.cfg)
        add_direct_listener(stack.cfg, jwks, headers)
        add_floor_listener(stack.cfg, Path(args.floor_wasm), jwks, headers)
        floor_kept = WORKDIR / "floor.kept.wasm"
        wasm_exports.finish(Path(args.floor_wasm), floor_kept, wasm_exports.FLOOR)
        add_floor_listener(stack.cfg, floor_kept, jwks, headers, "floor_kept")
        compared = [Path(w) for w in args.compare_wasm.split(",") if w]
        for name, path in zip(compare_names(len(compared)), compared):
            add_compare_listener(stack.cfg, path, name)
        config.dump(stack.cfg, stack.envoy.config_path)
        t_start = time.monotonic()
        stack.start()
        ports = listener_ports(stack)
        deadline = time.monotonic() + 10
        while client.get(ports["public"], JWKS_PATH, host=HOST).status != 200:
            if time.monotonic() > deadline:
                raise SystemExit("the filter never served the JWKS:\n" + stack.envoy.tail())
            time.sleep(0.1)
        notes = check_answers(ports, jwks)

        b = BROWSER_HEADERS
        scenarios = [
            Scenario("filter_jwks", "JWKS through the filter (cached copy)", "public", JWKS_PATH, 200, headers=b),
            Scenario("filter_discovery", "discovery through the filter (cached copy)", "public", DISCOVERY_PATH, 200,
                     headers=b),
            Scenario("filter_404", f"404 through the filter ({NOT_FOUND_PATH})", "public", NOT_FOUND_PATH, 404,
                     headers=b),
            Scenario("floor", "JWKS by a do-nothing Wasm filter (tools/floor.rs, constant answer)",
                     "floor", JWKS_PATH, 200, headers=b),
            Scenario("floor_kept", "JWKS by the do-nothing filter without the callbacks it does not implement "
                     "(built as the filter is)", "floor_kept", JWKS_PATH, 200, headers=b),
            Scenario("direct", "JWKS by Envoy direct_response (same bytes, no filter)", "direct", JWKS_PATH, 200,
                     headers=b),
            Scenario("other_scoped", "another host, filter scoped to the OIDC host (shipped configs)", "public",
                     APP_PATH, 200, host=APP_HOST, headers=b),
            Scenario("other_unscoped", "another host, filter in its path (unscoped)", "unscoped", APP_PATH, 200,
                     host=APP_HOST, headers=b),
            Scenario("other_none", "another host, no filter (same direct_response route)", "direct", APP_PATH, 200,
                     host=APP_HOST, headers=b),
        ]
        extra = [Scenario("direct_404", "404 by direct_response (no filter)", "direct", NOT_FOUND_PATH, 404,
                          headers=b)]
        for i, (name, path) in enumerate(zip(compare_names(len(compared)), compared)):
            scenarios.insert(1 + i, Scenario(f"{name}_jwks", f"JWKS through {name} ({path})",
                                             name, JWKS_PATH, 200, headers=b))
            extra.append(Scenario(f"{name}_404", f"404 through {name} ({path})", name, NOT_FOUND_PATH, 404,
                                  headers=b))
        if args.only:
            keys = args.only.split(",")
            scenarios = [s for s in scenarios + extra if s.key in keys]
            if "direct" not in keys:  # (floor is optional)
                raise SystemExit("--only needs the direct scenario (the ratios are to it)")
        common = dict(connections=args.connections, threads=args.threads)

        def url(s: Scenario) -> str:
            return f"http://127.0.0.1:{ports[s.listener]}{s.path}"

        for s in scenarios:
            if args.warmup > 0:
                wrk(url(s), WORKDIR, duration_s=args.warmup, host=s.host, headers=s.headers, **common)
        prefetch = calls(stack)
        pid = stack.envoy.proc.pid
        load_before = load_average()
        t0 = time.monotonic()
        before_run = calls(stack)
        for rnd in range(args.rounds):
            order = scenarios if rnd % 2 == 0 else list(reversed(scenarios))
            for s in order:
                before, cpu0 = calls(stack), cpu_seconds(pid)
                r = wrk(url(s), WORKDIR, duration_s=args.slice, host=s.host, headers=s.headers, **common)
                cpu1, after = cpu_seconds(pid), calls(stack)
                s.slices.append(r)
                s.cpu_s.append(cpu1 - cpu0)
                for d in s.calls:
                    s.calls[d] += after[d] - before[d]
                print(f"  round {rnd + 1} {s.key:17s} {(cpu1 - cpu0) / r.requests * 1e6:6.1f} µs/req "
                      f"{r.rps:9,.0f} req/s  p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms", flush=True)
        run_s = time.monotonic() - t0
        load_after = load_average()
        run_calls = {d: n - before_run[d] for d, n in calls(stack).items()}
        stats = stack.envoy.stats("wasmcustom")
        problems = [p for s in scenarios for p in s.problems()]
        if any("stale" in k or "upstream_error" in k for k, v in stats.items() if v):
            problems.append("the filter answered stale or upstream_error during the run: "
                            + str({k: v for k, v in stats.items() if v and ("stale" in k or "error" in k)}))
    finally:
        stack.stop()

    tbl, verdicts = table(scenarios, run_s, run_calls, args.refresh, prefetch)
    memory = []
    if args.memory:
        concurrencies = tuple(int(c) for c in args.memory.split(","))
        print(f"\nEnvoy RSS with and without the filter at --concurrency {args.memory} ...", flush=True)
        memory = ["", f"Envoy's memory after the same {WARM_ROUNDS * len(KINDS)} requests ({len(KINDS)} kinds), envoy/pod.yaml with and without "
                      "the Wasm filter:", "", *rss_rows(wasm, WORKDIR / "rss", concurrencies)]
    total_s = time.monotonic() - t_start
    head = [
        "# kube-oidc-discovery benchmark",
        "",
        f"Machine: {info['nproc']} CPUs, {info['cpu']}, Linux {info['kernel']}; load average {load_before} "
        f"before the measured run, {load_after} after it (1, 5, 15 min). Envoy {info['envoy']} "
        f"(V8), --concurrency {args.concurrency}; {info['wrk']}: -t{args.threads} -c{args.connections}, "
        f"{len(BROWSER_HEADERS)} browser-like request headers, {args.rounds} interleaved rounds of {args.slice:g} s "
        f"per scenario after {args.warmup:g} s warm-up; client and Envoy share the machine, over 127.0.0.1. "
        "Envoy CPU: utime+stime of its process over each slice / requests completed.",
        "",
    ]
    foot = ["", *[f"- {v}" for v in verdicts], *[f"- {n}" for n in notes],
            f"- CPU: over all slices (lowest-highest slice); p50/p99: mean of the {args.rounds} slices' wrk "
            f"percentiles; requests/s over all slices. Whole bench {total_s:.0f} s."]
    if problems:
        foot += ["", "Problems:", *[f"- {p}" for p in problems]]
    foot += memory
    text = "\n".join(head + [tbl] + foot) + "\n"
    print()
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"(written to {out})")
    bound_broken = any("NOT met for" in v for v in verdicts)
    return 1 if problems or bound_broken else 0


if __name__ == "__main__":
    sys.exit(main())
