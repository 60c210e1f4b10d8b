"""Classic mode as a user installs it: Istio's gateway chart, then `helm install` of the chart
with publicGateway.create into the real API server, the NOTES' token patch on the gateway's
Deployment, istiod's injection of the gateway pod, and pilot-agent + Envoy serving the documents
from the real API server (static token)."""

from __future__ import annotations

import pytest

from harness import client
from harness.checks import assert_generic_error, poll
from harness.constants import DISCOVERY, DOCS, HOST, JWKS, NOT_FOUND_PATH, OTHER_HOST
from e2e.test_other_hosts import STREAM_CALLBACK
from istioreal import install

HTTPS = 443


@pytest.fixture(scope="module")
def gateway(cluster, tmp_path_factory, image, backend):
    kube, _ = cluster
    d = tmp_path_factory.mktemp("classic")
    ca = install.tls_secret(kube, d)
    install.install_classic_gateway(kube)
    install.user_app(kube, backend.port)
    notes = install.install_chart(kube, {
        "publicGateway": {"create": True}, "apiServer": {"caCertificates": str(kube.pki.ca_cert)},
        "image": {"url": image.url, "sha256": image.sha256}})
    name = install.apply_notes_patch(kube, notes)
    pod = install.start_gateway(kube, name, d)
    get = lambda path, host=HOST, **kw: client.get(HTTPS, path, host=host, tls_ca=str(ca), **kw)
    try:
        poll(lambda: _status(get, DISCOVERY) == 200, 60, interval=0.5, what="the gateway serving the documents")
    except AssertionError:
        pod.stop()
        raise AssertionError(pod.log_tail(60))
    yield pod, get
    pod.stop()


def _status(get, path) -> int:
    try:
        return get(path).status
    except OSError:
        return 0


def test_both_documents_are_served_from_the_real_api_server(gateway, cluster):
    _, get = gateway
    kube, _ = cluster
    for path in DOCS:
        r = get(path)
        assert r.status == 200, (path, r.status, r.body[:300])
    assert get(JWKS).body == kube.request("GET", JWKS, admin=True)[2]


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
