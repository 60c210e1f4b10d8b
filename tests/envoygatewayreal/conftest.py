"""Fixtures of the Envoy Gateway install tier: a real kube-apiserver, Envoy Gateway's own chart
installed with Helm and `envoy-gateway server` run with its Kubernetes provider (control.py), the
chart charts/kube-oidc-discovery-envoy-gateway installed as docs/envoy-gateway.md says, and the
Envoy that Envoy Gateway deploys run as its pod (install.py), pulling the filter's image from a
local HTTPS registry.

Envoy Gateway and the Envoys listen on fixed ports of every interface, so the session runs in
private network and mount namespaces (harness.netns), entered here before anything else loads:
Helm's Go library (tools/helm.py) starts its threads when it loads, and they must start inside.
`make eg-real-test` runs this folder as a pytest session of its own."""

from __future__ import annotations

import os

from harness import netns

netns.enter("the Envoy Gateway install tests")  # before `import helm` anywhere in this session


import pytest  # noqa: E402

from envoygatewayreal import control, install  # noqa: E402
from harness import audit, kubelet, releases  # noqa: E402
from harness.backend import Backend  # noqa: E402
from harness.checks import poll  # noqa: E402
from harness.constants import DEFAULT_ISSUER  # noqa: E402
from harness.kube import Kube  # noqa: E402

# Every Envoy of this session is the one Envoy Gateway v1.9 deploys by default (harness.releases).
os.environ.setdefault("KOD_ENVOY_VERSION", releases.envoy_gateway_envoy().wheel)


@pytest.fixture(scope="session", autouse=True)
def node(tmp_path_factory):
    """The node's address (Envoy Gateway's pod's too, as with hostNetwork: the API server refuses
    loopback endpoints), and the Service names a pod resolves by cluster DNS, here by the hosts
    file: Envoy Gateway's (xDS and the Wasm HTTP server; the bootstrap's name is fully qualified,
    with its trailing dot) and the API server's."""
    netns.add_address(kubelet.POD_IP)
    netns.add_hosts(tmp_path_factory.mktemp("hosts"), {
        control.SERVICE_HOST: kubelet.POD_IP, control.SERVICE_HOST + ".": kubelet.POD_IP,
        "kubernetes.default.svc.cluster.local": kubelet.POD_IP})


@pytest.fixture(scope="session")
def backend():
    """The user's application, at the node's address (the API server refuses 127.0.0.1 in its
    endpoints, and the Envoy pod reaches the node there)."""
    b = Backend(host=kubelet.POD_IP).start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def cluster(request, tmp_path_factory, pki):
    """A fresh cluster per test module: the real API server (listening on the node's address
    too, for the Envoy pod; every request for a document audited: harness.audit), Envoy
    Gateway's chart and Envoy Gateway itself; the EndpointSlices of default/kubernetes (this API
    server on the node's address: the harness runs no endpoint reconciler) and its
    kube-root-ca.crt. The API server's --service-account-issuer is the test module's ISSUER if
    it has one."""
    d = tmp_path_factory.mktemp("cluster")
    issuer = getattr(request.module, "ISSUER", DEFAULT_ISSUER)
    with Kube(d / "kube", pki, issuer=issuer, apiserver_args=["--bind-address", "0.0.0.0",
                                                               *audit.audit_args(d / "kube")]) as kube:
        # the API server creates its Service a moment after it is ready
        poll(lambda: kube.api("GET", "/api/v1/namespaces/default/services/kubernetes")[0] == 200, 30,
             interval=0.2, what="Service default/kubernetes")
        kubelet.publish_endpoints(kube, "default", "kubernetes")
        # the controller-manager's root-ca-cert-publisher (the BackendTLSPolicy's CA)
        kubelet.publish_root_ca(kube, "default")
        control.install(kube, d / "eg-chart")
        eg = control.EnvoyGateway(kube, d / "envoy-gateway")
        try:
            eg.start()
            yield kube, eg
        finally:
            eg.stop()


@pytest.fixture(scope="module")
def gateway(request, cluster, tmp_path_factory, tls_image, tls_registry, backend):
    """The user's install (install.install) with the test module's VALUES (chart values over the
    docs' install; default none), and the Envoy pod serving it: (pod, get)."""
    kube, eg = cluster
    pod, get = install.install(kube, tmp_path_factory.mktemp("gateway"), eg, tls_image, tls_registry.ca, backend,
                               getattr(request.module, "VALUES", {}))
    yield pod, get
    pod.stop()
