"""`make bench`: throughput and latency of the filter in a real Envoy (2 workers) with wrk.

One Envoy runs the shipped envoy/pod.yaml (the filter on the ``public`` listener, the fake
kube-apiserver behind the ``kubernetes`` cluster, refresh every 5 s) plus a second listener,
``direct``, built from a copy of the public one: same HTTP connection manager settings, but no
Wasm filter, and a route answering ``/openid/v1/jwks`` with Envoy's own ``direct_response`` of
exactly the bytes (and the same response headers) the filter serves. The scenarios run
interleaved (ABC then CBA) in rounds, each slice a wrk run of a few seconds; the table gives
requests/s over all slices, the mean p50/p99 of the slices, the ratio to direct_response, and
the calls the API server saw. It is printed and written to dist/bench.md.

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

WASM = REPO_ROOT / "dist" / "kube_oidc_discovery.wasm"
# examples/floor.rs: a Wasm filter that only answers a constant (make bench builds it)
FLOOR_WASM = REPO_ROOT / "target" / "wasm32-wasip1" / "release" / "examples" / "floor.wasm"
WORKDIR = REPO_ROOT / ".run" / "bench"
OUT = REPO_ROOT / "dist" / "bench.md"
HOST = "oidc.example.com"
NOT_FOUND_PATH = "/api/v1/secrets"
APP_HOST, APP_PATH, APP_BODY = "app.example.com", "/home", "hello from the application\n"
# What a browser sends to an application behind the same gateway: the filter reads past all of it.
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
# Response headers the filter sets on a 200 besides content-length (src/answer.rs).
RELAYED = ("cache-control", "etag", "age", "x-content-type-options", "content-type")


# ---------------------------------------------------------------------- Envoy configuration
def filter_etag(body: bytes) -> str:
    """The entity tag the filter computes (src/cache.rs: FNV-1a 64 of the body, then its length)."""
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
    hcm["http_filters"] = [f for f in hcm["http_filters"] if not config.is_wasm(f)]
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


def add_floor_listener(cfg: dict, wasm: Path, body: bytes, headers: dict[str, str]) -> None:
    """Appends listener ``floor``: a copy of listener 0 whose Wasm filter is examples/floor.rs,
    answering every request with ``body`` and ``headers``: the least any Wasm filter costs."""
    add_twin_listener(cfg, "floor")
    plugin = config.wasm_plugin(cfg, -1)
    plugin["name"] = plugin["vm_config"]["vm_id"] = "floor"
    plugin["vm_config"].pop("environment_variables", None)
    config.set_wasm_file(cfg, wasm, -1)
    head = "".join(f"{k}: {v}\n" for k, v in headers.items())
    config.set_plugin_config(cfg, head + "\n" + body.decode(), -1)


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


# ---------------------------------------------------------------------- run
class Scenario:
    def __init__(self, key: str, label: str, listener: str, path: str, status: int,
                 host: str = HOST, headers: dict[str, str] | None = None):
        self.key, self.label, self.listener, self.path, self.status = key, label, listener, path, status
        self.host, self.headers = host, headers
        self.slices: list[WrkResult] = []
        self.calls = {"discovery": 0, "jwks": 0}

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.slices)

    @property
    def rps(self) -> float:
        return self.requests / sum(r.duration_s for r in self.slices)

    def mean(self, attr: str) -> float:
        return sum(getattr(r, attr) for r in self.slices) / len(self.slices)

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
    for listener in ("public", "direct"):
        app = client.get(ports[listener], APP_PATH, host=APP_HOST)
        if app.status != 200 or app.body != APP_BODY.encode():
            raise SystemExit(f"{APP_HOST} on listener {listener} did not reach its route: {app.status}")
    fl = client.get(ports["floor"], JWKS_PATH, host=HOST)
    if fl.status != 200 or fl.body != f.body or fl.header_names() != f.header_names():
        raise SystemExit(f"the floor filter's answer differs from the filter's: {fl.status} {fl.headers}")
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
    rows = ["| scenario | requests/s | p50 (ms) | p99 (ms) | vs direct_response | API server calls (discovery / jwks) |",
            "|---|---:|---:|---:|---:|---:|"]
    verdicts = []
    for s in scenarios:
        ratio = s.rps / direct.rps
        rows.append(f"| {s.label} | {s.rps:,.0f} | {s.mean('p50_ms'):.2f} | {s.mean('p99_ms'):.2f} | "
                    f"{ratio:.2f}x | {s.calls['discovery']} / {s.calls['jwks']} |")
        if s.key == "filter_jwks":
            ok = "met" if ratio >= TARGET_RATIO else "NOT met"
            verdicts.append(f"cached JWKS / direct_response = {ratio:.2f} (target >= {TARGET_RATIO}, "
                            f"aim {AIM_RATIO}): {ok}")
            floor = next((f for f in scenarios if f.key == "floor"), None)
            if floor is not None:
                verdicts.append(f"cached JWKS / do-nothing Wasm filter = {s.rps / floor.rps:.2f}; "
                                f"do-nothing Wasm filter / direct_response = {floor.rps / direct.rps:.2f}")
    through = {s.key: s for s in scenarios if s.key in ("filter_other_host", "direct_other_host")}
    if len(through) == 2:
        verdicts.append("another host through the filter / without it = "
                        f"{through['filter_other_host'].rps / through['direct_other_host'].rps:.2f} "
                        f"({len(BROWSER_HEADERS) + 1} request headers, browser-like)")
    bound = math.ceil(run_s / refresh_s) + 1
    rows.append(f"| whole measured run ({run_s:.0f} s, refresh every {refresh_s} s; prefetch "
                f"{prefetch_calls['discovery']} / {prefetch_calls['jwks']} before it) | | | | | "
                f"{run_calls['discovery']} / {run_calls['jwks']} (bound {bound} each) |")
    over = [d for d, n in run_calls.items() if n > bound]
    verdicts.append(f"API server calls <= ceil({run_s:.0f}/{refresh_s})+1 = {bound} per document: "
                    + ("met" if not over else f"NOT met for {', '.join(over)}"))
    return "\n".join(rows), verdicts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slice", type=float, default=5, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=2, help="rounds over all scenarios (ABC, CBA, ...)")
    ap.add_argument("--warmup", type=float, default=2, help="seconds of warm-up per scenario")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=2, help="Envoy worker threads")
    ap.add_argument("--refresh", type=int, default=5, help="refresh_interval_s of the filter")
    ap.add_argument("--wasm", default=str(WASM), help="filter to measure (default: dist/)")
    ap.add_argument("--floor-wasm", default=str(FLOOR_WASM), help="the do-nothing filter (examples/floor.rs)")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--only", default="", help="comma-separated scenario keys (profiling runs); "
                    "besides the default ones: direct_404")
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
        add_direct_listener(stack.cfg, jwks, headers)
        add_floor_listener(stack.cfg, Path(args.floor_wasm), jwks, headers)
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

        scenarios = [
            Scenario("filter_jwks", "JWKS through the filter (cached copy)", "public", JWKS_PATH, 200),
            Scenario("direct", "JWKS by Envoy direct_response (same bytes, no filter)", "direct", JWKS_PATH, 200),
            Scenario("floor", "JWKS by a do-nothing Wasm filter (examples/floor.rs, constant answer)",
                     "floor", JWKS_PATH, 200),
            Scenario("filter_404", f"404 through the filter ({NOT_FOUND_PATH})", "public", NOT_FOUND_PATH, 404),
            Scenario("filter_discovery", "discovery through the filter (cached copy)", "public", DISCOVERY_PATH, 200),
            Scenario("filter_other_host", "another host through the filter (passes to a direct_response route)",
                     "public", APP_PATH, 200, host=APP_HOST, headers=BROWSER_HEADERS),
            Scenario("direct_other_host", "another host, no filter (same route)", "direct", APP_PATH, 200,
                     host=APP_HOST, headers=BROWSER_HEADERS),
        ]
        extra = [Scenario("direct_404", "404 by direct_response (no filter)", "direct", NOT_FOUND_PATH, 404)]
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
        t0 = time.monotonic()
        before_run = calls(stack)
        for rnd in range(args.rounds):
            order = scenarios if rnd % 2 == 0 else list(reversed(scenarios))
            for s in order:
                before = calls(stack)
                r = wrk(url(s), WORKDIR, duration_s=args.slice, host=s.host, headers=s.headers, **common)
                after = calls(stack)
                s.slices.append(r)
                for d in s.calls:
                    s.calls[d] += after[d] - before[d]
                print(f"  round {rnd + 1} {s.key:17s} {r.rps:9,.0f} req/s  p50 {r.p50_ms:6.2f} ms  "
                      f"p99 {r.p99_ms:6.2f} ms", flush=True)
        run_s = time.monotonic() - t0
        run_calls = {d: n - before_run[d] for d, n in calls(stack).items()}
        stats = stack.envoy.stats("wasmcustom")
        problems = [p for s in scenarios for p in s.problems()]
        if any("stale" in k or "upstream_error" in k for k, v in stats.items() if v):
            problems.append("the filter answered stale or upstream_error during the run: "
                            + str({k: v for k, v in stats.items() if v and ("stale" in k or "error" in k)}))
    finally:
        stack.stop()

    tbl, verdicts = table(scenarios, run_s, run_calls, args.refresh, prefetch)
    total_s = time.monotonic() - t_start
    head = [
        "# kube-oidc-discovery benchmark",
        "",
        f"Machine: {info['nproc']} CPUs, {info['cpu']}, Linux {info['kernel']}. Envoy {info['envoy']} "
        f"(V8), --concurrency {args.concurrency}; {info['wrk']}: -t{args.threads} -c{args.connections}, "
        f"{args.rounds} interleaved rounds of {args.slice:g} s per scenario after {args.warmup:g} s warm-up; "
        "client and Envoy share the machine, over 127.0.0.1.",
        "",
    ]
    foot = ["", *[f"- {v}" for v in verdicts], *[f"- {n}" for n in notes],
            f"- p50/p99: mean of the {args.rounds} slices' wrk percentiles; requests/s over all slices. "
            f"Whole bench {total_s:.0f} s."]
    if problems:
        foot += ["", "Problems:", *[f"- {p}" for p in problems]]
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
