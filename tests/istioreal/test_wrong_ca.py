"""Classic mode installed with apiServer.caCertificates naming a CA that is not the API server's
(the DestinationRule's caCertificates): the gateway's Envoy refuses the API server's certificate,
no request reaches the API server, and the filter answers the generic 503 on both documents."""

from __future__ import annotations

import pytest

from harness import audit
from harness.checks import assert_generic_error
from harness.constants import DOCS
from istioreal import install


@pytest.fixture(scope="module")
def gateway(cluster, tmp_path_factory, image, backend):
    kube, _ = cluster
    pod, get = install.classic_gateway(
        kube, tmp_path_factory.mktemp("wrong-ca"), image, backend,
        {"apiServer": {"caCertificates": str(kube.pki.other_ca_cert)}, "plugin": {"timeoutMs": 1000}},
        ready=lambda status: status != 0)
    yield pod, get
    pod.stop()


def test_a_ca_that_is_not_the_api_servers_fails_closed_with_the_filters_503(gateway, cluster):
    pod, get = gateway
    kube, _ = cluster
    token = pod.env(pod.container())["KUBE_OIDC_TOKEN"]
    port = kube.url.rsplit(":", 1)[1]
    for path in DOCS:
        assert_generic_error(get(path), 503, [token, port, "kubernetes.default.svc", "TLS", "SSL", "ssl", "certificate",
                                              "CERTIFICATE_VERIFY_FAILED", "verify", "upstream connect", "reset reason"],
                             server="istio-envoy")
    assert audit.document_requests(kube.dir) == []
