"""What `make build` does after cargo: keeps only the proxy-wasm callbacks a filter implements
among a module's exports, then `wasm-opt -Oz`.

The proxy-wasm Rust SDK exports every callback of the ABI, and Envoy calls each exported one:
for every request `proxy_on_response_headers`, `proxy_on_response_body`, `proxy_on_log` and
`proxy_on_done`, each a call from Envoy into the VM, even when the SDK's default does nothing. A
callback the module does not export is skipped by the host (proxy-wasm-cpp-host checks each one
before calling it), which is the same as the SDK's default. Removing them saves about 2 µs of
Envoy CPU per request (README, Benchmark).

`make build` runs this on the filter, `make bench` also on tools/floor.rs (`finish`), so the
benchmark's second floor is built exactly as the filter is:

    python3 tools/wasm_exports.py IN.wasm OUT.wasm [--keep filter|floor]

It writes a `wasm-metadce` graph whose roots are the kept exports (which also removes the code
only the dropped ones reached), checks the result exports exactly those, and optimises it. Exports that are no
callback (`memory`, `_initialize`, the ABI version marker) are always kept. Standard library only:
it runs before the Python environment exists.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

# The callbacks src/host/proxy_wasm.rs implements (tests/e2e/test_exports.py holds the two to
# each other): the plugin's start, the tick and the upstream calls of the root context, and a
# request's context creation, its headers and its deletion (which drops the context the SDK
# keeps). Every other callback's SDK default does what the host does without it (nothing, or
# `true` for `proxy_on_vm_start` and `proxy_on_done`).
FILTER = (
    "proxy_on_configure",
    "proxy_on_tick",
    "proxy_on_http_call_response",
    "proxy_on_context_create",
    "proxy_on_request_headers",
    "proxy_on_delete",
    "proxy_on_memory_allocate",  # how the host hands the VM what a host call returns
)
# tools/floor.rs: no tick, no upstream call.
FLOOR = tuple(c for c in FILTER if c not in ("proxy_on_tick", "proxy_on_http_call_response"))
KEEP = {"filter": FILTER, "floor": FLOOR}

# binaryen 108 rejects a module stripped of its target-features section (cargo's `strip`) unless
# the features are named.
FEATURES = ["--enable-bulk-memory", "--enable-sign-ext", "--enable-nontrapping-float-to-int",
            "--enable-mutable-globals", "--enable-reference-types", "--enable-multivalue"]

CALLBACK_PREFIX = "proxy_on_"


def _leb(data: bytes, pos: int) -> tuple[int, int]:
    """An unsigned LEB128 at ``pos``: (value, position after it)."""
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def exports(wasm: bytes) -> list[str]:
    """The names in a module's export section, in order."""
    if wasm[:4] != b"\0asm":
        raise ValueError("not a WebAssembly module")
    pos = 8
    while pos < len(wasm):
        section, pos = wasm[pos], pos + 1
        size, pos = _leb(wasm, pos)
        if section == 7:
            count, p = _leb(wasm, pos)
            names = []
            for _ in range(count):
                length, p = _leb(wasm, p)
                names.append(wasm[p:p + length].decode())
                p += length + 1  # the name, then the kind byte
                _, p = _leb(wasm, p)  # the index
            return names
        pos += size
    return []


def kept(names: list[str], callbacks: tuple[str, ...]) -> list[str]:
    """Of ``names``, what stays: every export that is no callback, and the given callbacks."""
    return [n for n in names if not n.startswith(CALLBACK_PREFIX) or n in callbacks]


def strip(src: Path, dst: Path, callbacks: tuple[str, ...]) -> list[str]:
    """Writes ``src`` without the callbacks not in ``callbacks``; returns the exports kept."""
    names = exports(src.read_bytes())
    missing = [c for c in callbacks if c not in names]
    if missing:
        raise SystemExit(f"{src} does not export {', '.join(missing)}: has the proxy-wasm SDK changed?")
    keep = kept(names, callbacks)
    graph = [{"name": f"export{i}", "root": True, "export": n} for i, n in enumerate(keep)]
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(graph, f)
        f.flush()
        subprocess.run(["wasm-metadce", str(src), "--graph-file", f.name, "-o", str(dst), *FEATURES],
                       check=True, stdout=subprocess.DEVNULL)
    got = exports(dst.read_bytes())
    if sorted(got) != sorted(keep):
        raise SystemExit(f"{dst} exports {got}, not {keep}")
    return got


def finish(src: Path, dst: Path, callbacks: tuple[str, ...]) -> list[str]:
    """``strip``, then ``wasm-opt -Oz`` into ``dst``; returns the exports kept."""
    with tempfile.TemporaryDirectory() as tmp:
        kept_wasm = Path(tmp) / "kept.wasm"
        got = strip(src, kept_wasm, callbacks)
        subprocess.run(["wasm-opt", "-Oz", *FEATURES, str(kept_wasm), "-o", str(dst)], check=True)
    return got


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--keep", choices=sorted(KEEP), default="filter")
    args = ap.parse_args(argv)
    before = len(exports(args.src.read_bytes()))
    after = finish(args.src, args.dst, KEEP[args.keep])
    print(f"{args.dst}: {len(after)} of {before} exports kept")
    return 0


if __name__ == "__main__":
    sys.exit(main())
