"""`make run` (tools/run_local.py) driven as a subprocess, for its tests in tests/shipped and
tests/real: start it, wait for its ready line, stop it and check that it freed every port."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time

import pytest

from run_local import PORTS, port_busy  # tools/run_local.py

from . import REPO_ROOT

RUN_LOCAL = REPO_ROOT / "tools" / "run_local.py"


def busy_ports() -> list[int]:
    return [p for p in PORTS.values() if port_busy(p)]


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
