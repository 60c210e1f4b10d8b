"""Child processes of the test process (Envoy, etcd, kube-apiserver, ...): started without a
shell, killed by the kernel if the test process dies first (PR_SET_PDEATHSIG), stopped by PID."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def spawn(args: list[str], log: Path, env: dict[str, str] | None = None,
          cwd: Path | str | None = None) -> subprocess.Popen:
    """Starts ``args`` with stdout and stderr appended to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [str(a) for a in args], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=dict(os.environ if env is None else env), cwd=str(cwd) if cwd else None,
            preexec_fn=_die_with_parent, close_fds=True,
        )


def free_port() -> int:
    """A port free on 127.0.0.1 now, for a child to listen on (another process may still take it
    first; callers that cannot retry keep that window short)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen | None, timeout: float = 10) -> int | None:
    """SIGTERM, wait, then SIGKILL; returns the exit code (None if there was no process)."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            proc.terminate()
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
        except ProcessLookupError:
            pass
    return proc.returncode


def rss_kib(pid: int) -> int:
    """The process's resident set size (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def wait_http_ok(proc: subprocess.Popen, url: str, timeout: float, what: str, tail) -> None:
    """Until ``url`` answers 200, while ``proc`` runs; else RuntimeError with ``tail()`` (its
    log), if it exits or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready in {timeout} s:\n{tail()}")
