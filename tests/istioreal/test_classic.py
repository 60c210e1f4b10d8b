"""Classic mode as a user installs it: Istio's gateway chart, then `helm install` of the chart
with publicGateway.create into the real API server, the NOTES' token patch on the gateway's
Deployment, istiod's injection of the gateway pod, and pilot-agent + Envoy serving the documents
from the real API server (static token)."""

from __future__ import annotations

import pytest

from harness import audit
from harness.checks import assert_generic_error
from harness.constants import NOT_FOUND_PATH
from istioreal import install


@pytest.fixture(scope="module")
def gateway(cluster, tmp_path_factory, image, backend):
    kube, _ = cluster
    pod, get = install.classic_gateway(kube, tmp_path_factory.mktemp("classic"), image, backend, {})
    yield pod, get
    pod.stop()


def test_both_documents_are_served_from_the_real_api_server(gateway, cluster):
    _, get = gateway
    audit.assert_served_from(cluster[0], get, install.TOKEN_USER)


def test_other_paths_of_the_oidc_host_are_404(gateway):
    _, get = gateway
    assert_generic_error(get(NOT_FOUND_PATH), 404, server="istio-envoy")


def test_another_host_reaches_its_backend_and_never_enters_the_filter(gateway, backend):
    pod, get = gateway
    install.assert_other_host_never_enters_the_filter(pod, get, backend)
