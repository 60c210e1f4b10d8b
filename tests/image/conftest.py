"""Fixtures of the image tests: the built filter's bytes, the tools, and Debian's docker-registry
on 127.0.0.1 (plain HTTP, no auth, storage in a temp dir), started for the session and always
stopped. ``wasm`` (its path) is tests/conftest.py's."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from harness import child  # free ports, stopping by PID

INSTALL_HINT = "run `make tools-apt` (apt-get install -y docker-registry skopeo)"


@pytest.fixture(scope="session")
def wasm_bytes(wasm: Path) -> bytes:
    data = wasm.read_bytes()
    if data[:4] != b"\0asm":
        pytest.fail(f"{wasm} is not a Wasm module: run `make build`")
    return data


def _tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)
    if not path:
        pytest.fail(f"{name} is not installed: {INSTALL_HINT}")
    return path


@pytest.fixture(scope="session")
def skopeo_bin() -> str:
    return _tool("skopeo")


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the test process dies, even if pytest is killed
    before its finalizers run (Linux prctl PR_SET_PDEATHSIG; elsewhere a no-op)."""
    try:
        import ctypes
        import signal
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)
    except Exception:
        pass


def _start_registry(binary: str, work: Path) -> tuple[subprocess.Popen, str]:
    """One attempt on a fresh port; the caller stops the process whatever happens."""
    port = child.free_port()
    data = work / f"data-{port}"
    cfg = work / f"config-{port}.yml"
    cfg.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: '{data}'}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
    )
    # the registry would read REGISTRY_* variables over its config file
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    log = open(work / f"registry-{port}.log", "wb")
    try:
        proc = subprocess.Popen([binary, "serve", str(cfg)], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                preexec_fn=_die_with_parent)
    finally:
        log.close()
    return proc, f"127.0.0.1:{port}"


def _wait_up(proc: subprocess.Popen, addr: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://{addr}/v2/", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """``host:port`` of a plain-HTTP registry on 127.0.0.1."""
    binary = _tool("docker-registry")
    work = tmp_path_factory.mktemp("registry")
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(3):  # another process may take the free port before the registry binds it
            proc, addr = _start_registry(binary, work)
            procs.append(proc)
            if _wait_up(proc, addr, 20):
                break
            child.stop(proc)
        else:
            logs = "\n".join(p.read_text(errors="replace") for p in sorted(work.glob("registry-*.log")))
            pytest.fail(f"docker-registry did not answer on /v2/:\n{logs}")
        yield addr
    finally:
        for proc in procs:
            child.stop(proc)
