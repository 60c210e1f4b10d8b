"""Gateway API mode with a module pilot-agent cannot pull (a sha256 that is not the image's):
as failStrategy FAIL_OPEN says, pilot-agent hands Envoy an allow-all filter in the plugin's
place, and the chart's HTTPRoute, whose rules have no backend, answers Istio's 500 on every path
of the OIDC host; nothing reaches the API server."""

from __future__ import annotations

import pytest

from harness import audit
from harness.constants import DOCS
from istioreal import install


@pytest.fixture(scope="module")
def gateway(cluster, tmp_path_factory, image, backend):
    kube, _ = cluster
    pod, get = install.gateway_api_gateway(kube, tmp_path_factory.mktemp("gateway-api-fail-open"), install.unpullable(image), backend, {},
                                           ready=lambda status: status != 0)
    yield pod, get
    pod.stop()


def test_a_module_that_cannot_be_pulled_fails_open_to_istios_500(gateway, cluster):
    pod, get = gateway
    kube, _ = cluster
    # pilot-agent's reason: the module refused, the allow-all filter in its place
    assert "does not match: " + "0" * 64 + ". applying allow RBAC filter" in pod.log_text()
    for path in (*DOCS, "/"):
        r = get(path)
        assert (r.status, r.body) == (500, b""), (path, r.status, r.body[:200])
    assert audit.document_requests(kube.dir) == []
