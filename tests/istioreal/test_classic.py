"""Classic mode as a user installs it: Istio's gateway chart, then `helm install` of the chart
with publicGateway.create into the real API server, the NOTES' token patch on the gateway's
Deployment, istiod's injection of the gateway pod, and pilot-agent + Envoy serving the documents
from the real API server (static token)."""

from __future__ import annotations

import pytest

from harness.checks import assert_generic_error, poll
from harness.constants import JWKS, NOT_FOUND_PATH, OTHER_HOST
from e2e.test_other_hosts import STREAM_CALLBACK
from istioreal import install


@pytest.fixture(scope="module")
def gateway(cluster, tmp_path_factory, image, backend):
    kube, _ = cluster
    pod, get = install.classic_gateway(kube, tmp_path_factory.mktemp("classic"), image, backend, {})
    yield pod, get
    pod.stop()


def test_both_documents_are_served_from_the_real_api_server(gateway, cluster):
    _, get = gateway
    install.assert_served_from(cluster[0], get)


def test_other_paths_of_the_oidc_host_are_404(gateway):
    _, get = gateway
    assert_generic_error(get(NOT_FOUND_PATH), 404, server="istio-envoy")


def test_another_host_reaches_its_backend_and_never_enters_the_filter(gateway, backend):
    pod, get = gateway
    install.set_envoy_log_level("trace")
    callbacks = lambda: len(STREAM_CALLBACK.findall(pod.log_text()))
    try:
        before = callbacks()
        r = get(JWKS + "?q=1", host=OTHER_HOST)
        assert r.status == 200 and r.header("x-backend") == "app", (r.status, r.body[:200])
        assert backend.last().path == JWKS + "?q=1"
        assert callbacks() == before
        get(JWKS)  # the OIDC host's request enters it: the count would see one
        poll(lambda: callbacks() > before, 5, what="the filter's callback on the OIDC host")
    finally:
        install.set_envoy_log_level("warning")
