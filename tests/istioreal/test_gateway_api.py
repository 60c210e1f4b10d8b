"""Gateway API mode as a user installs it: Gateway `public` of class istio, whose Deployment
istiod's own Gateway API controller creates; `helm install` of the chart with gateway.targetRefs
into the real API server; the NOTES' token patch applied to istiod's Deployment, and pilot-agent
+ Envoy run from the patched spec, serving the documents from the real API server (static
token)."""

from __future__ import annotations

import pytest

from harness import audit
from harness.checks import assert_generic_error
from harness.constants import NOT_FOUND_PATH
from istioreal import install


@pytest.fixture(scope="module")
def gateway(cluster, tmp_path_factory, image, backend):
    kube, _ = cluster
    pod, get = install.gateway_api_gateway(kube, tmp_path_factory.mktemp("gateway-api"), image, backend, {})
    yield pod, get
    pod.stop()


def test_the_token_patch_lands_on_the_deployment_istiods_controller_created(gateway, cluster):
    pod, _ = gateway
    kube, _ = cluster
    dep = kube.get(f"/apis/apps/v1/namespaces/{install.GATEWAY_NS}/deployments/{install.GATEWAY_API_DEPLOYMENT}")
    assert [(o["kind"], o["name"]) for o in dep["metadata"]["ownerReferences"]] == [("Gateway", install.GATEWAY_API_NAME)]
    # the pod run is the patched Deployment's: its istio-proxy has the token from the Secret
    assert pod.pod["metadata"]["labels"]["gateway.networking.k8s.io/gateway-name"] == install.GATEWAY_API_NAME
    env = {e["name"]: e for e in pod.container()["env"]}
    assert env["KUBE_OIDC_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "kod-kube-oidc-discovery-token", "key": "token"}


def test_both_documents_are_served_from_the_real_api_server(gateway, cluster):
    _, get = gateway
    audit.assert_served_from(cluster[0], get, install.TOKEN_USER)


def test_other_paths_of_the_oidc_host_are_404(gateway):
    _, get = gateway
    assert_generic_error(get(NOT_FOUND_PATH), 404, server="istio-envoy")


def test_another_host_reaches_its_backend_and_never_enters_the_filter(gateway, backend):
    pod, get = gateway
    install.assert_other_host_never_enters_the_filter(pod, get, backend)
