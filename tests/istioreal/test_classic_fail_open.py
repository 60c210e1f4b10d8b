"""Classic mode with a module pilot-agent cannot pull (a sha256 that is not the image's): as
failStrategy FAIL_OPEN says, pilot-agent hands Envoy an allow-all filter in the plugin's place;
the chart's VirtualService answers its own 404 on every path of the OIDC host, nothing reaches
the API server, and the user's application host is served as before."""

from __future__ import annotations

import pytest

from harness import audit
from harness.constants import DOCS, JWKS, OTHER_HOST
from istioreal import install


@pytest.fixture(scope="module")
def gateway(cluster, tmp_path_factory, image, backend):
    kube, _ = cluster
    pod, get = install.classic_gateway(kube, tmp_path_factory.mktemp("classic-fail-open"), install.unpullable(image), backend, {},
                                       ready=lambda status: status != 0)
    yield pod, get
    pod.stop()


def test_a_module_that_cannot_be_pulled_fails_open_to_the_charts_404(gateway, cluster, backend):
    pod, get = gateway
    kube, _ = cluster
    # pilot-agent's reason: the module refused, the allow-all filter in its place
    assert "does not match: " + "0" * 64 + ". applying allow RBAC filter" in pod.log_text()
    backend.reset()
    for path in (*DOCS, "/"):
        r = get(path)
        assert (r.status, r.body) == (404, b'{"error":"not found"}'), (path, r.status, r.body[:200])
    assert backend.last() is None
    assert audit.document_requests(kube.dir) == []
    r = get(JWKS + "?q=1", host=OTHER_HOST)
    assert r.status == 200 and r.header("x-backend") == "app", (r.status, r.body[:200])
