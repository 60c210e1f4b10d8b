"""`make run`: the filter in a local Envoy against a fake kube-apiserver, in the foreground.

Generates under .run/ a test PKI (.run/pki) and a kubelet-style token directory (.run/token),
starts the fake API server on 127.0.0.1:6443 and Envoy with envoy/local.yaml (listener
127.0.0.1:8080, admin 127.0.0.1:9901), prints curl lines to try, and stops both on Ctrl-C or
SIGTERM. Run from anywhere; paths are relative to the repository root.
"""

from __future__ import annotations

import argparse
import secrets
import signal
import socket
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import REPO_ROOT, pki  # noqa: E402
from harness.envoy import Envoy, EnvoyError  # noqa: E402
from harness.fake_apiserver import FakeApiServer  # noqa: E402
from harness.tokendir import TokenDir  # noqa: E402

RUN_DIR = REPO_ROOT / ".run"
WASM = REPO_ROOT / "dist" / "kube_oidc_discovery.wasm"
CONFIG = REPO_ROOT / "envoy" / "local.yaml"
PORTS = {"Envoy listener": 8080, "Envoy admin": 9901, "fake API server": 6443}
HOST = "oidc.example.com"


def port_busy(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def curl_lines() -> list[str]:
    base = "http://127.0.0.1:8080"
    return [
        f"curl -s -H 'host: {HOST}' {base}/.well-known/openid-configuration",
        f"curl -s -H 'host: {HOST}' {base}/openid/v1/jwks",
        f"curl -si -H 'host: {HOST}' {base}/openid/v1/jwks          # headers: etag, age, cache-control",
        f"curl -si -H 'host: {HOST}' {base}/api/v1/secrets          # 404, never sent upstream",
        f"curl -si -X POST -H 'host: {HOST}' {base}/openid/v1/jwks  # 405",
        f"curl -s -H 'host: app.example.com' {base}/                # other host: passes through",
        "curl -s http://127.0.0.1:9901/stats?filter=kube_oidc_discovery",
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, default=2, help="Envoy worker threads")
    ap.add_argument("--trace", action="store_true", help="log the Wasm VM at trace level")
    args = ap.parse_args(argv)

    if not WASM.exists():
        print(f"error: {WASM.relative_to(REPO_ROOT)} is missing: run `make build` first", file=sys.stderr)
        return 1
    busy = [f"{what} port {port}" for what, port in PORTS.items() if port_busy(port)]
    if busy:
        print("error: 127.0.0.1 " + ", ".join(busy) + " already in use; stop whatever listens there "
              "(another `make run`?) and retry", file=sys.stderr)
        return 1

    p = pki.generate(RUN_DIR / "pki")
    tokens = TokenDir(RUN_DIR / "token")
    tokens.write_token("local-" + secrets.token_urlsafe(24), ca=p.ca_cert.read_bytes())

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    fake = FakeApiServer(p.server_cert, p.server_key, token_file=tokens.token_file,
                         port=PORTS["fake API server"])
    envoy = Envoy(CONFIG, RUN_DIR / "envoy", name="envoy", concurrency=args.concurrency,
                  wasm_trace=args.trace, cwd=REPO_ROOT)
    try:
        fake.start()
        print(f"fake kube-apiserver  https://{fake.address} (CA .run/pki/ca.crt, token .run/token/token)")
        try:
            envoy.start(timeout=30)
        except EnvoyError as e:
            print(f"error: Envoy did not start:\n{e}", file=sys.stderr)
            return 1
        print(f"envoy                http://127.0.0.1:{PORTS['Envoy listener']} "
              f"(admin http://127.0.0.1:{envoy.admin_port}, log {envoy.log_path.relative_to(REPO_ROOT)})")
        print("\ntry:")
        for line in curl_lines():
            print("  " + line)
        print("\nCtrl-C stops both.", flush=True)
        while not stop.wait(0.5):
            if not envoy.running:
                print(f"error: Envoy exited ({envoy.proc.returncode}):\n{envoy.tail()}", file=sys.stderr)
                return 1
        print("\nstopping", flush=True)
        return 0
    finally:
        envoy.stop()
        fake.stop()


if __name__ == "__main__":
    sys.exit(main())
