"""`make run` (tools/run_local.py): starts, serves what its curl lines promise, and stops
both processes on SIGINT (Ctrl-C) and on SIGTERM. It uses fixed ports (8080, 9901, 6443) and
the repository's .run/ directory."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time

import pytest

from harness import REPO_ROOT, client
from run_local import PORTS, port_busy

RUN_LOCAL = REPO_ROOT / "tools" / "run_local.py"


@pytest.fixture
def ports_free():
    busy = [p for p in PORTS.values() if port_busy(p)]
    if busy:
        pytest.fail(f"127.0.0.1 ports {busy} are in use (another `make run`?)")


@contextlib.contextmanager
def run_local(*args: str, timeout: float = 40):
    """Runs run_local.py; yields the process and what it printed up to its ready line, and
    kills it on the way out if it still runs."""
    proc = subprocess.Popen([sys.executable, str(RUN_LOCAL), *args], cwd=REPO_ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        lines, ready = [], False
        deadline = time.monotonic() + timeout
        while not ready and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            ready = "Ctrl-C stops everything" in line
        if not ready:
            pytest.fail("run_local.py did not come up:\n" + "".join(lines))
        yield proc, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def stop_cleanly(proc, sig: int = signal.SIGINT, timeout: float = 20) -> str:
    """Signals run_local.py; it must exit 0 and free every port. Returns what it printed."""
    proc.send_signal(sig)
    rest, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, rest
    for port in PORTS.values():
        assert not port_busy(port), f"port {port} still in use after stop"
    return rest


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_make_run_serves_and_stops_cleanly(ports_free, wasm, sig):
    with run_local() as (proc, out):
        assert "curl -s -H 'host: oidc.example.com' http://127.0.0.1:8080/openid/v1/jwks" in out
        assert "curl -s -H 'host: oidc.example.com' http://127.0.0.1:8080/.well-known/openid-configuration" in out
        r = client.get(8080, "/openid/v1/jwks")
        assert r.status == 200 and json.loads(r.body)["keys"]
        r = client.get(8080, "/.well-known/openid-configuration")
        assert r.status == 200
        assert json.loads(r.body)["jwks_uri"] == "https://oidc.example.com/openid/v1/jwks"
        r = client.get(8080, "/", host="app.example.com")
        assert r.status == 200 and r.body == b"passed through to the default route\n"
        assert (REPO_ROOT / ".run" / "token" / "..data").is_symlink()
        token = (REPO_ROOT / ".run" / "token" / "token").read_text()
        rest = stop_cleanly(proc, sig)
        assert token not in out + rest


def test_make_run_refuses_busy_ports(ports_free, wasm):
    import socket
    with socket.socket() as s:
        # REUSEADDR: the previous test's connections may still sit in TIME_WAIT on this port
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", PORTS["API server"]))
        s.listen()
        r = subprocess.run([sys.executable, str(RUN_LOCAL)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)
    assert r.returncode == 1
    assert "6443" in r.stdout and "already in use" in r.stdout
