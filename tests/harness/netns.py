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


class PodNamespaces:
    """A pod's own namespaces, held by a process that only sleeps (what a pod's pause container
    is): a private mount namespace (the container's paths bind-mounted from where the kubelet
    wrote them), and with ``ip`` a network namespace of its own too, joined to this one by a veth
    pair: the pod at ``ip``, this side at ``gateway`` (both in a /24), its default route through
    it. Programs run in it through ``prefix`` (nsenter, which execs them in place: their PID is
    the one spawned). Create it after ``enter``; ``stop`` ends the holder (the namespaces go with
    the last process in them)."""

    def __init__(self, workdir: Path, ip: str | None = None, gateway: str | None = None, link: str = "kod-pod0"):
        from . import child  # netns is imported before anything else by the tiers that enter
        workdir.mkdir(parents=True, exist_ok=True)
        self.ip = ip
        self.proc = child.spawn(["unshare", "--mount", "--propagation", "private", *(["--net"] if ip else []),
                                 "sleep", "infinity"], workdir / "pause.log")
        self.pid = self.proc.pid
        _wait_for_namespace(self.pid)
        if ip:
            assert gateway, "a pod network needs this side's address"
            run("ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", str(self.pid))
            run("ip", "addr", "add", f"{gateway}/24", "dev", link)
            run("ip", "link", "set", link, "up")
            for cmd in (["ip", "link", "set", "lo", "up"], ["ip", "addr", "add", f"{ip}/24", "dev", "eth0"],
                        ["ip", "link", "set", "eth0", "up"], ["ip", "route", "add", "default", "via", gateway]):
                run("nsenter", "-t", str(self.pid), "-n", *cmd)

    @property
    def prefix(self) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "-m", *(["-n"] if self.ip else []), "--"]

    def bind(self, source: Path, target: str) -> None:
        """``source`` at ``target`` in the pod's mount namespace. A missing ``target`` is created,
        an empty directory of this machine's (a mount point needs one); a file's must exist."""
        if not Path(target).exists():
            Path(target).mkdir(parents=True)
        run("nsenter", "-t", str(self.pid), "-m", "mount", "--bind", str(source), target)

    def stop(self) -> None:
        from . import child
        child.stop(self.proc, 2)


def _wait_for_namespace(pid: int, timeout: float = 5) -> None:
    """Until ``pid`` (unshare) has exec'd its command: then its namespaces are the new ones."""
    import time
    deadline = time.monotonic() + timeout
    mine = os.readlink("/proc/self/ns/mnt")
    while time.monotonic() < deadline:
        try:
            if os.readlink(f"/proc/{pid}/ns/mnt") != mine and Path(f"/proc/{pid}/comm").read_text().strip() == "sleep":
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"pid {pid}: no namespaces of its own after {timeout} s")
