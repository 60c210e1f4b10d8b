"""The chart installed with apiServer.caCertificates naming a CA that is not the API server's (the
DestinationRule's caCertificates), in classic and in Gateway API mode: the gateway's Envoy
refuses the API server's certificate (the API server counts the failed handshakes), no request
reaches the API server, and the filter answers the generic 503 on both documents."""

from __future__ import annotations

import re

import pytest

from harness import audit
from harness.checks import assert_generic_error
from harness.constants import DOCS
from istioreal import install


@pytest.fixture(scope="module", params=install.MODES)
def mode(request):
    return request.param


def _handshake_errors(kube) -> float:
    """The API server's count of failed TLS handshakes (Go's "http: TLS handshake error", which
    it logs at -v=5 only)."""
    status, _, body = kube.request("GET", "/metrics", admin=True)
    assert status == 200, status
    return float(re.search(r"^apiserver_tls_handshake_errors_total (\S+)$", body.decode(), re.M).group(1))


@pytest.fixture(scope="module")
def gateway(mode, cluster, tmp_path_factory, image, backend):
    kube, _ = cluster
    before = _handshake_errors(kube)
    pod, get = install.gateway(
        mode, kube, tmp_path_factory.mktemp(f"wrong-ca-{mode}"), image, backend,
        {"apiServer": {"caCertificates": str(kube.pki.other_ca_cert)}, "plugin": {"timeoutMs": 1000}},
        ready=lambda status: status != 0)
    yield pod, get, before
    pod.stop()


def test_a_ca_that_is_not_the_api_servers_fails_closed_with_the_filters_503(gateway, cluster):
    pod, get, handshake_errors_before = gateway
    kube, _ = cluster
    token = pod.env(pod.container())["KUBE_OIDC_TOKEN"]
    port = kube.url.rsplit(":", 1)[1]
    for path in DOCS:
        assert_generic_error(get(path), 503, [token, port, "kubernetes.default.svc", "TLS", "SSL", "ssl", "certificate",
                                              "CERTIFICATE_VERIFY_FAILED", "verify", "upstream connect", "reset reason"],
                             server="istio-envoy")
    assert audit.document_requests(kube.dir) == []
    assert _handshake_errors(kube) > handshake_errors_before  # the gateway reached it: its TLS failed
