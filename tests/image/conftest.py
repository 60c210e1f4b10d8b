"""Fixtures of the image tests: the built filter, and Debian's docker-registry on 127.0.0.1,
started for the session and always stopped."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "charts" / "image"))

WASM = REPO_ROOT / "dist" / "kube_oidc_discovery.wasm"


@pytest.fixture(scope="session")
def wasm() -> bytes:
    if not WASM.exists():
        pytest.fail(f"{WASM} is missing: run `make build` (make test and make oci-test do)")
    return WASM.read_bytes()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """``host:port`` of a plain-HTTP registry on loopback with storage in a temp dir."""
    work = tmp_path_factory.mktemp("registry")
    port = _free_port()
    cfg = work / "config.yml"
    cfg.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {work / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
    )
    log = open(work / "registry.log", "wb")
    proc = subprocess.Popen(["docker-registry", "serve", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    addr = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://{addr}/v2/", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("docker-registry did not come up:\n" + (work / "registry.log").read_text())
            time.sleep(0.1)
        yield addr
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
