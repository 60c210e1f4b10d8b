"""`make run`: the filter in a local Envoy against a kube-apiserver on 127.0.0.1:6443, in the
foreground: the fake one, or with `--kube real` (`make run KUBE=real`) a real one (the pinned release, with
etcd and the token controller, harness.kube) and a TokenRequest token of a service account.

Generates under .run/ a test PKI (.run/pki) and a kubelet-style token directory (.run/token),
starts the API server and Envoy with envoy/local.yaml (listener 127.0.0.1:8080, admin
127.0.0.1:9901), prints curl lines to try, and stops everything on Ctrl-C or SIGTERM. Run from
anywhere; paths are relative to the repository root.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import signal
import socket
import sys
import threading
from pathlib import Path

# The test harness (PKI, fake and real API server, Envoy launcher) is what `make run` runs. This
# file runs as a script (`make run`), outside pytest and its pythonpath, so it finds tests/ itself.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness import REPO_ROOT, pki  # noqa: E402
from harness.constants import DISCOVERY, HOST, JWKS, METRIC_PREFIX, NOT_FOUND_PATH, OTHER_HOST, WASM  # noqa: E402
from harness.envoy import Envoy, EnvoyError  # noqa: E402
from harness.fake_apiserver import FakeApiServer  # noqa: E402
from harness.kube import VERSION, Kube, KubeError  # noqa: E402
from harness.tokendir import TokenDir  # noqa: E402

RUN_DIR = REPO_ROOT / ".run"
CONFIG = REPO_ROOT / "envoy" / "local.yaml"
PORTS = {"Envoy listener": 8080, "Envoy admin": 9901, "API server": 6443}
# The service account whose token the real API server's Envoy uses.
NAMESPACE, ACCOUNT = "kube-oidc-discovery", "reader"


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
        f"curl -s -H 'host: {HOST}' {base}{DISCOVERY}",
        f"curl -s -H 'host: {HOST}' {base}{JWKS}",
        f"curl -si -H 'host: {HOST}' {base}{JWKS}          # headers: etag, age, cache-control",
        f"curl -si -H 'host: {HOST}' {base}{NOT_FOUND_PATH}          # 404, never sent upstream",
        f"curl -si -X POST -H 'host: {HOST}' {base}{JWKS}  # 405",
        f"curl -s -H 'host: {OTHER_HOST}' {base}/                # other host: passes through",
        f"curl -s http://127.0.0.1:9901/stats?filter={METRIC_PREFIX}",
    ]


def token_curl(kube_dir: str) -> str:
    """How to get a new token of the account from the real API server, as its admin."""
    return (f"curl -s --cacert .run/pki/ca.crt --cert {kube_dir}/admin.crt --key {kube_dir}/admin.key "
            "-H 'content-type: application/json' -d '{\"spec\":{\"expirationSeconds\":3600}}' "
            f"https://127.0.0.1:{PORTS['API server']}/api/v1/namespaces/{NAMESPACE}/serviceaccounts/"
            f"{ACCOUNT}/token | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"status\"][\"token\"])'")


class FakeKube:
    """The fake API server behind the same start/stop as the real one."""

    def __init__(self, p: pki.Pki, tokens: TokenDir):
        self.fake = FakeApiServer(p.server_cert, p.server_key, token_file=tokens.token_file,
                                  port=PORTS["API server"])
        tokens.write_token("local-" + secrets.token_urlsafe(24), ca=p.ca_cert.read_bytes())

    def start(self) -> list[str]:
        self.fake.start()
        return [f"fake kube-apiserver  https://{self.fake.address} (CA .run/pki/ca.crt, token .run/token/token)"]

    def stop(self) -> None:
        self.fake.stop()


class RealKube:
    """A real kube-apiserver (etcd and the token controller with it) and a service account."""

    def __init__(self, p: pki.Pki, tokens: TokenDir):
        self.dir = RUN_DIR / "kube"
        shutil.rmtree(self.dir, ignore_errors=True)  # a new control plane, keys and etcd each run
        self.kube = Kube(self.dir, p, port=PORTS["API server"])
        self.tokens, self.ca = tokens, p.ca_cert.read_bytes()

    def start(self) -> list[str]:
        self.kube.start()
        self.kube.create_service_account(NAMESPACE, ACCOUNT)
        self.tokens.write_token(self.kube.token(NAMESPACE, ACCOUNT, seconds=86400), ca=self.ca)
        rel = self.dir.relative_to(REPO_ROOT)
        return [
            f"kube-apiserver       {self.kube.url} (real, {VERSION}; "
            f"--anonymous-auth=false, RBAC; log {rel}/kube-apiserver.log)",
            f"token                .run/token/token: service account {NAMESPACE}/{ACCOUNT}, 24 h; a new one:",
            f"  {token_curl(str(rel))}",
            f"kubectl              {self.kube.bin / 'kubectl'} --kubeconfig {rel}/kubeconfig get sa -A",
        ]

    def stop(self) -> None:
        self.kube.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, default=2, help="Envoy worker threads")
    ap.add_argument("--trace", action="store_true", help="log the Wasm VM at trace level")
    ap.add_argument("--kube", choices=["fake", "real"], default="fake",
                    help="the API server: the fake, or a real kube-apiserver (make kube-tools)")
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

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    try:
        api = (RealKube if args.kube == "real" else FakeKube)(p, tokens)
    except KubeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    envoy = Envoy(CONFIG, RUN_DIR / "envoy", name="envoy", concurrency=args.concurrency,
                  wasm_trace=args.trace, cwd=REPO_ROOT)
    try:
        try:
            print("\n".join(api.start()), flush=True)
        except KubeError as e:
            print(f"error: the API server did not start:\n{e}", file=sys.stderr)
            return 1
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
        print("\nCtrl-C stops everything.", flush=True)
        while not stop.wait(0.5):
            if not envoy.running:
                print(f"error: Envoy exited ({envoy.proc.returncode}):\n{envoy.tail()}", file=sys.stderr)
                return 1
        print("\nstopping", flush=True)
        return 0
    finally:
        envoy.stop()
        api.stop()


if __name__ == "__main__":
    sys.exit(main())
