"""Fixtures of the Istio install tier (tests/istio/README.md, "The install tier"): a real kube-apiserver with Istio's CRDs and istiod's chart, a real istiod, the
chart installed with Helm, and the gateway as pilot-agent runs it with upstream Envoy.

istiod and pilot-agent listen on fixed ports and the gateway's listeners on every interface, so
the session runs in private network and mount namespaces (harness.netns), entered here before
anything else loads: Helm's Go library (tools/helm.py) starts its threads when it loads, and they
must start inside. `make istio-real-test` runs this folder as a pytest session of its own."""

from __future__ import annotations

from harness import netns

netns.enter("the Istio install tests")  # before `import helm` anywhere in this session

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from harness.backend import Backend  # noqa: E402
from harness.constants import DEFAULT_ISSUER  # noqa: E402
from harness.kube import Kube  # noqa: E402
from harness import audit, kubelet  # noqa: E402
from istioreal import control  # noqa: E402

ISTIO_DATA = Path("/var/lib/istio")


@pytest.fixture(scope="session", autouse=True)
def pilot_binaries():
    try:
        return control.binary("pilot-discovery"), control.binary("pilot-agent")
    except FileNotFoundError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="session", autouse=True)
def node(tmp_path_factory):
    """The node's address (the pods' too, as with hostNetwork): the API server refuses loopback
    endpoints. istiod's Service name resolves to it, as cluster DNS resolves it for a pod. And
    pilot-agent's data directory, a constant (/var/lib/istio/data, where pkg/wasm caches the
    module): a tmpfs of this mount namespace (outside, an empty /var/lib/istio is left if it was
    missing)."""
    netns.add_address(kubelet.POD_IP)
    netns.add_hosts(tmp_path_factory.mktemp("hosts"), {control.ISTIOD_HOST: kubelet.POD_IP})
    ISTIO_DATA.mkdir(parents=True, exist_ok=True)
    netns.run("mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "kod-istio-data", str(ISTIO_DATA))
    (ISTIO_DATA / "data").mkdir()


@pytest.fixture(scope="module")
def mode():
    """The gateway's mode of a module's install (install.gateway): classic, unless the module
    parametrizes a `mode` of its own over install.MODES, and then each mode gets a cluster of its
    own (cluster depends on it)."""
    return "classic"


@pytest.fixture(scope="module")
def cluster(request, mode, tmp_path_factory, pki):
    """A fresh cluster per test module and mode: the real API server (admission webhooks reached through
    their Service's endpoints, --enable-aggregator-routing), the Gateway API CRDs, Istio's base
    chart, istiod's chart and istiod itself behind its Service, its validation fail-closed; Service default/kubernetes's endpoints (this API server on
    127.0.0.1; the harness runs no endpoint reconciler); every request for a document audited
    (audit.document_requests(kube.dir)). The API server's --service-account-issuer is the test
    module's ISSUER if it has one."""
    d = tmp_path_factory.mktemp("cluster")
    # listening on the node's address too (this namespace has no other), for its endpoint
    issuer = getattr(request.module, "ISSUER", DEFAULT_ISSUER)
    with Kube(d / "kube", pki, issuer=issuer, apiserver_args=["--enable-aggregator-routing=true", "--bind-address", "0.0.0.0",
                                               *audit.audit_args(d / "kube")]) as kube:
        control.install_base(kube)
        istiod = control.Istiod(kube, d / "istiod")
        istiod.install()
        kubelet.publish_endpoints(kube, control.NAMESPACE, "istiod")
        kubelet.publish_endpoints(kube, "default", "kubernetes")
        try:
            istiod.start()
            yield kube, istiod
        finally:
            istiod.stop()


@pytest.fixture(scope="session")
def backend():
    """The user's application (tests/conftest.py's), at the node's address: the API server
    refuses 127.0.0.1 in its endpoints."""
    b = Backend(host=kubelet.POD_IP).start()
    yield b
    b.stop()
