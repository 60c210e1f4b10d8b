"""Envoy's memory with the filter: what `make bench` reports, and `make bench-memory`.

- ``rss_rows``: Envoy's RSS with the filter (envoy/pod.yaml) and without it (the same config, no
  Wasm filter) at a given --concurrency, after the same warm-up requests.
- ``wasm_memories``: the Wasm VMs' linear memories of an Envoy process. V8 reserves each one as
  a read-write mapping (the memory's current size, which only memory.grow changes) directly
  followed by an inaccessible guard reservation of about 8 GiB; that pattern is how they are
  found in /proc/<pid>/smaps. Their size never shrinks, so a leak in the filter shows as growth.
- ``main`` (`make bench-memory DURATION=600`): one Envoy (--concurrency 2, refresh every 5 s)
  under short bursts of every kind of request, sampled every ``--interval`` seconds for
  ``--duration`` seconds; exits 1 if the linear memories grow after the warm-up. Table to
  dist/bench-memory.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# A script (`make bench-memory`), run outside pytest and its pythonpath (pytest.ini): it finds
# tests/ (the harness) itself.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import REPO_ROOT, client, config, pki  # noqa: E402
from harness.child import rss_kib  # noqa: E402
from harness.constants import DISCOVERY, HOST, JWKS, NOT_FOUND_PATH, OTHER_HOST, WASM  # noqa: E402
from harness.load import wrk, wrk_bin  # noqa: E402
from harness.stack import Stack  # noqa: E402

WORKDIR = REPO_ROOT / ".run" / "bench-memory"
OUT = REPO_ROOT / "dist" / "bench-memory.md"
# Each kind of request the filter sees (and another host), for warm-ups and bursts.
KINDS = [(JWKS, HOST), (DISCOVERY, HOST), (NOT_FOUND_PATH, HOST), ("/", OTHER_HOST)]
WARM_ROUNDS = 200
GUARD_MIN = 4 << 30  # a V8 Wasm memory reservation is ~8 GiB; nothing else in Envoy is near that
_MAPPING = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ")


@dataclass
class WasmMemory:
    size_kb: int  # the linear memory's current size
    rss_kb: int   # of which resident


def wasm_memories(pid: int) -> list[WasmMemory]:
    """The linear memories of the process's Wasm VMs (see the module docstring)."""
    maps: list[dict] = []
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        m = _MAPPING.match(line)
        if m:
            maps.append({"start": int(m.group(1), 16), "end": int(m.group(2), 16), "perm": m.group(3), "rss": 0})
        elif line.startswith("Rss:") and maps:
            maps[-1]["rss"] = int(line.split()[1])
    out = []
    for prev, cur in zip(maps, maps[1:]):
        if (cur["perm"] == "---p" and cur["end"] - cur["start"] >= GUARD_MIN
                and prev["perm"] == "rw-p" and prev["end"] == cur["start"]):
            out.append(WasmMemory((prev["end"] - prev["start"]) // 1024, prev["rss"]))
    return out


def without_filter(cfg: dict, listener: int = 0) -> None:
    """The listener with no Wasm filter (and no per-host entry for it)."""
    hcm = config.hcm(cfg, listener)
    hcm["http_filters"] = [f for f in hcm["http_filters"] if not config.is_wasm(f)]
    for vh in hcm["route_config"]["virtual_hosts"]:
        vh.pop("typed_per_filter_config", None)


def rss_rows(wasm: Path, workdir: Path, concurrencies: tuple[int, ...] = (2, 8)) -> list[str]:
    """Markdown rows: Envoy's RSS with and without the filter at each concurrency."""
    p = pki.generate(workdir / "pki")
    rows = ["| --concurrency | RSS without the filter (MiB) | RSS with the filter (MiB) | difference (MiB) | "
            "Wasm VMs | their linear memory (KiB, resident) |", "|---:|---:|---:|---:|---:|---:|"]
    for c in concurrencies:
        rss = {}
        for with_filter in (False, True):
            s = Stack(workdir / f"rss-{c}-{with_filter}", p, wasm, "pod.yaml", concurrency=c)
            if not with_filter:
                without_filter(s.cfg)
                config.dump(s.cfg, s.envoy.config_path)
            try:
                s.start()
                deadline = time.monotonic() + 10
                while with_filter and client.get(s.port, JWKS, host=KINDS[0][1]).status != 200:
                    if time.monotonic() > deadline:
                        raise SystemExit("the filter never served the JWKS:\n" + s.envoy.tail())
                    time.sleep(0.1)
                for _ in range(WARM_ROUNDS):
                    for path, host in KINDS:
                        client.get(s.port, path, host=host)
                time.sleep(0.5)
                rss[with_filter] = rss_kib(s.envoy.proc.pid)
                mems = wasm_memories(s.envoy.proc.pid)
            finally:
                s.stop()
        rows.append(f"| {c} | {rss[False] / 1024:.1f} | {rss[True] / 1024:.1f} | "
                    f"{(rss[True] - rss[False]) / 1024:+.1f} | {len(mems)} | "
                    f"{sum(m.size_kb for m in mems)} ({sum(m.rss_kb for m in mems)}) |")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="growth of the filter's Wasm VM memory over a long run")
    ap.add_argument("--duration", type=float, default=600, help="seconds (default 10 minutes)")
    ap.add_argument("--interval", type=float, default=30, help="seconds between samples")
    ap.add_argument("--warmup", type=float, default=60, help="seconds before the baseline sample")
    ap.add_argument("--refresh", type=int, default=5, help="refresh_interval_s of the filter")
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--burst", type=float, default=1, help="seconds of wrk per kind of request per sample")
    ap.add_argument("--wasm", default=str(WASM))
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    if args.warmup >= args.duration:
        ap.error("--warmup must be shorter than --duration")
    wasm = Path(args.wasm)
    if not wasm.exists():
        print(f"{wasm} is missing: run `make build` (make bench-memory does)", file=sys.stderr)
        return 2
    wrk_bin()
    shutil.rmtree(WORKDIR, ignore_errors=True)
    WORKDIR.mkdir(parents=True)
    s = Stack(WORKDIR / "stack", pki.generate(WORKDIR / "pki"), wasm, "pod.yaml",
              plugin_changes={"refresh_interval_s": args.refresh}, concurrency=args.concurrency)
    samples: list[tuple[float, int, list[WasmMemory], int]] = []
    try:
        s.start()
        pid = s.envoy.proc.pid
        t0 = time.monotonic()
        while True:
            started = time.monotonic()
            for path, host in KINDS:
                wrk(f"http://127.0.0.1:{s.port}{path}", WORKDIR, duration_s=args.burst, host=host,
                    connections=8, threads=1)
            t = time.monotonic() - t0
            samples.append((t, rss_kib(pid), wasm_memories(pid), s.fake.count()))
            size = sum(m.size_kb for m in samples[-1][2])
            print(f"  {t:6.0f} s  RSS {samples[-1][1] / 1024:7.1f} MiB  Wasm linear memory {size} KiB "
                  f"(resident {sum(m.rss_kb for m in samples[-1][2])} KiB)  API calls {samples[-1][3]}", flush=True)
            if t >= args.duration:
                break
            time.sleep(max(0.0, min(started + args.interval - time.monotonic(), t0 + args.duration - time.monotonic())))
    finally:
        s.stop()

    base = next(x for x in samples if x[0] >= args.warmup)
    last = samples[-1]
    size = lambda x: sum(m.size_kb for m in x[2])  # noqa: E731
    resident = lambda x: sum(m.rss_kb for m in x[2])  # noqa: E731
    grew = size(last) - size(base)
    rows = ["| t (s) | Envoy RSS (MiB) | Wasm linear memory (KiB) | of which resident (KiB) | API server calls |",
            "|---:|---:|---:|---:|---:|"]
    rows += [f"| {x[0]:.0f} | {x[1] / 1024:.1f} | {size(x)} | {resident(x)} | {x[3]} |" for x in samples]
    verdict = (f"Wasm linear memory after warm-up ({base[0]:.0f} s -> {last[0]:.0f} s): {grew:+d} KiB "
               f"({len(last[2])} VMs); resident {resident(last) - resident(base):+d} KiB; Envoy RSS "
               f"{(last[1] - base[1]) / 1024:+.1f} MiB: " + ("flat" if grew == 0 else "GREW"))
    text = "\n".join([
        "# kube-oidc-discovery: memory over a long run", "",
        f"Envoy --concurrency {args.concurrency}, refresh every {args.refresh} s, {args.duration:.0f} s; every "
        f"{args.interval:g} s a {args.burst:g} s wrk burst (-c8) of each of JWKS, discovery, 404 and another "
        f"host, then a sample. Load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}.", "",
        *rows, "", f"- {verdict}", ""])
    print("\n" + text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return 0 if grew == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
