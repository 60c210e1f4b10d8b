"""The test process in private network and mount namespaces, for Envoy Gateway in standalone mode.

Envoy Gateway v1.9.1 listens on fixed ports of every interface (xDS 0.0.0.0:18000,
internal/xds/runner/runner.go; Wasm HTTP server :18002, internal/wasm/httpserver.go; health
probe :8081, internal/provider/file/file.go; admin 19000 and metrics 19001), and its Gateway
listeners bind 0.0.0.0. In a network namespace of its own, with only loopback, none of that is
reachable from outside or collides with anything else on the machine; everything the tests start
(fake API server, registry, Envoy Gateway and the Envoy it starts) lives there on 127.0.0.1.

Three paths the Kubernetes pod has and a host does not, provided in the private mount namespace
only (nothing outside changes but empty directories /certs and /var/run/secrets/kube-oidc-discovery,
if they were missing):
- /certs/ca.crt: the CA file the `wasm_cluster` (Envoy to Envoy Gateway's Wasm HTTP server)
  validates with, a constant of internal/xds/translator/globalresources.go (the Envoy pod mounts
  the `envoy` Secret there); here a tmpfs with the CA of `envoy-gateway certgen --local`.
- a hosts entry for envoy-gateway.<namespace>.svc.cluster.local, the address Envoy fetches the
  module from (wasmHTTPServiceFQDN, same file): 127.0.0.1; and those the caller gives (the API
  server's cluster DNS name, which the chart's Backend names).
- PROJECTED: where the chart's EnvoyProxy mounts the pod's projected token (token mode projected);
  here a tmpfs the tests write as the kubelet writes the volume (harness.tokendir).

The namespaces themselves: harness/netns.py."""

from __future__ import annotations

from pathlib import Path

from harness import netns

CERTS = Path("/certs")
PROJECTED = Path("/var/run/secrets/kube-oidc-discovery")  # the chart's kodeg.projectedDir


def enter(workdir: Path, hosts: dict[str, str]) -> None:
    """Moves this process into fresh network and mount namespaces (once), brings loopback up,
    mounts a private tmpfs on /certs and a hosts file with ``hosts`` (name -> address) over
    /etc/hosts. Idempotent per process."""
    if not netns.enter("the Envoy Gateway tests"):
        return
    CERTS.mkdir(exist_ok=True)
    netns.run("mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "kod-certs", str(CERTS))
    PROJECTED.mkdir(parents=True, exist_ok=True)
    netns.run("mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "kod-projected", str(PROJECTED))
    netns.add_hosts(workdir, hosts)


def install_ca(ca_pem: bytes) -> None:
    """/certs/ca.crt, in this process's private mount namespace."""
    (CERTS / "ca.crt").write_bytes(ca_pem)
