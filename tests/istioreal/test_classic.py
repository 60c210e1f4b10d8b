"""Classic mode as a user installs it: Istio's gateway chart, then `helm install` of the chart
with publicGateway.create into the real API server, the NOTES' token patch on the gateway's
Deployment, istiod's injection of the gateway pod, and pilot-agent + Envoy serving the documents
from the real API server (static token)."""

from __future__ import annotations

import pytest

from harness.checks import assert_generic_error, poll
from harness.constants import DOCS, JWKS, NOT_FOUND_PATH, OTHER_HOST
from e2e.test_other_hosts import STREAM_CALLBACK
from istioreal import control, install


@pytest.fixture(scope="module")
def gateway(cluster, tmp_path_factory, image, backend):
    kube, _ = cluster
    pod, get = install.classic_gateway(kube, tmp_path_factory.mktemp("classic"), image, backend, {})
    yield pod, get
    pod.stop()


def test_both_documents_are_served_from_the_real_api_server(gateway, cluster):
    _, get = gateway
    kube, _ = cluster
    for path in DOCS:
        r = get(path)
        assert r.status == 200, (path, r.status, r.body[:300])
    assert get(JWKS).body == kube.request("GET", JWKS, admin=True)[2]
    # the API server's audit log: the gateway asked with the chart's service account's token
    gateway_asked = {r for r in control.document_requests(kube.dir) if r[0] == install.TOKEN_USER}
    assert gateway_asked == {(install.TOKEN_USER, path, 200) for path in DOCS}


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
