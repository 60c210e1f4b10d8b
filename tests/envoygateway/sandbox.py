"""The test process in private network and mount namespaces, for Envoy Gateway in standalone mode.

Envoy Gateway v1.9.1 listens on fixed ports of every interface (xDS 0.0.0.0:18000,
internal/xds/runner/runner.go; Wasm HTTP server :18002, internal/wasm/httpserver.go; health
probe :8081, internal/provider/file/file.go; admin 19000 and metrics 19001), and its Gateway
listeners bind 0.0.0.0. In a network namespace of its own, with only loopback, none of that is
reachable from outside or collides with anything else on the machine; everything the tests start
(fake API server, registry, Envoy Gateway and the Envoy it starts) lives there on 127.0.0.1.

Two paths the Kubernetes pod has and a host does not, provided in the private mount namespace
only (nothing outside changes but an empty directory /certs, if it was missing):
- /certs/ca.crt: the CA file the `wasm_cluster` (Envoy to Envoy Gateway's Wasm HTTP server)
  validates with, a constant of internal/xds/translator/globalresources.go (the Envoy pod mounts
  the `envoy` Secret there); here a tmpfs with the CA of `envoy-gateway certgen --local`.
- a hosts entry for envoy-gateway.<namespace>.svc.cluster.local, the address Envoy fetches the
  module from (wasmHTTPServiceFQDN, same file): 127.0.0.1.

Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN), as the rest of `make test` (apt-get) does."""

from __future__ import annotations

import ctypes
import os
import subprocess
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
CERTS = Path("/certs")
_done = False


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


def enter(workdir: Path, hosts: dict[str, str]) -> None:
    """Moves this process into fresh network and mount namespaces (once), brings loopback up,
    mounts a private tmpfs on /certs and a hosts file with ``hosts`` (name -> address) over
    /etc/hosts. Idempotent per process."""
    global _done
    if _done:
        return
    if os.geteuid() != 0:
        raise RuntimeError("the Envoy Gateway tests need root (private network and mount namespaces)")
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.unshare(CLONE_NEWNET | CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET|CLONE_NEWNS)")
    _done = True
    _run("mount", "--make-rprivate", "/")
    _run("ip", "link", "set", "lo", "up")
    CERTS.mkdir(exist_ok=True)
    _run("mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "kod-certs", str(CERTS))
    workdir.mkdir(parents=True, exist_ok=True)
    etc_hosts = workdir / "hosts"
    lines = Path("/etc/hosts").read_text().splitlines() + [f"{a} {n}" for n, a in hosts.items()]
    etc_hosts.write_text("\n".join(lines) + "\n")
    _run("mount", "--bind", str(etc_hosts), "/etc/hosts")


def install_ca(ca_pem: bytes) -> None:
    """/certs/ca.crt, in this process's private mount namespace."""
    (CERTS / "ca.crt").write_bytes(ca_pem)
