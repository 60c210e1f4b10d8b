"""The test process in private network and mount namespaces: for a tier whose programs listen on
fixed ports or on every interface (Envoy Gateway in standalone mode, istiod and pilot-agent).
Inside, with only loopback up, nothing is reachable from outside or collides with anything else
on the machine. Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN), as the rest of `make test` (apt-get)
does; a tier that enters runs as a pytest session of its own."""

from __future__ import annotations

import ctypes
import os
import subprocess
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
_entered = False


def run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


def enter(what: str) -> bool:
    """Moves this process into fresh network and mount namespaces with loopback up, mounts made
    private (so a later mount changes nothing outside). Idempotent per process: False if it had
    already entered. ``what`` names the tier in the error without root."""
    global _entered
    if _entered:
        return False
    if os.geteuid() != 0:
        raise RuntimeError(f"{what} need root (private network and mount namespaces)")
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.unshare(CLONE_NEWNET | CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET|CLONE_NEWNS)")
    _entered = True
    run("mount", "--make-rprivate", "/")
    run("ip", "link", "set", "lo", "up")
    return True


def add_hosts(workdir: Path, hosts: dict[str, str]) -> None:
    """/etc/hosts with ``hosts`` (name -> address) added, bind-mounted over it in this process's
    private mount namespace (after ``enter``): names a pod resolves by cluster DNS."""
    workdir.mkdir(parents=True, exist_ok=True)
    etc_hosts = workdir / "hosts"
    lines = Path("/etc/hosts").read_text().splitlines() + [f"{a} {n}" for n, a in hosts.items()]
    etc_hosts.write_text("\n".join(lines) + "\n")
    run("mount", "--bind", str(etc_hosts), "/etc/hosts")


def add_address(ip: str) -> None:
    """``ip`` on loopback (after ``enter``): an address that is not in 127.0.0.0/8, for what the
    API server refuses there (an EndpointSlice's addresses), reachable only inside."""
    run("ip", "addr", "add", f"{ip}/32", "dev", "lo")
