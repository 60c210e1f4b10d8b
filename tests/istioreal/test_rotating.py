"""Token mode rotating as a user installs it, in classic and in Gateway API mode: the NOTES'
patch mounts the token Secret and the SDS ConfigMap on the gateway; Envoy's credential_injector
adds the token to the filter's calls, and a re-issued token (its Secret and account deleted,
`helm upgrade` re-creating them; the kubelet swaps the volume's ..data) reaches Envoy without a
restart."""

from __future__ import annotations

import pytest

import helm  # tools/helm.py
from harness.checks import poll
from harness.constants import JWKS
from istioreal import control, install

TOKEN_SECRET = "kod-kube-oidc-discovery-token"
TOKEN_VOLUME = "kod-token"
TOKEN_ACCOUNT = "kod-kube-oidc-discovery"


@pytest.fixture(scope="module", params=install.MODES)
def mode(request):
    return request.param


@pytest.fixture(scope="module")
def gateway(mode, cluster, tmp_path_factory, image, backend):
    kube, _ = cluster
    d = tmp_path_factory.mktemp(f"rotating-{mode}")
    # the mounts at paths of this machine (Envoy reads them as the container would)
    values = {"token": {"mode": "rotating", "mountPath": str(d / "kod-token"), "sdsMountPath": str(d / "kod-token-sds")},
              "plugin": {"refreshIntervalS": 5}}
    pod, get = install.gateway(mode, kube, d, image, backend, values)
    yield pod, get, values
    pod.stop()


def _secret_token(kube) -> str | None:
    s = kube.get(f"/api/v1/namespaces/{install.GATEWAY_NS}/secrets/{TOKEN_SECRET}")
    return s.get("data", {}).get("token")


def test_both_documents_are_served_with_the_mounted_token_and_none_in_the_environment(gateway, cluster):
    pod, get, _ = gateway
    kube, _ = cluster
    assert all("KUBE_OIDC_TOKEN" not in e["name"] for e in pod.container().get("env", []))
    install.assert_served_from(kube, get)


def test_a_reissued_token_reaches_envoy_without_a_restart(gateway, cluster, image, mode):
    pod, get, values = gateway
    kube, _ = cluster
    processes = pod.processes()
    old = _secret_token(kube)
    # A legacy token's claims are the account's name and UID and the Secret's name only, and its
    # RS256 signature is deterministic: a Secret re-created alone (the NOTES' steps) gets the
    # very same token back. A new token needs a new account too.
    r = kube.kubectl("-n", install.GATEWAY_NS, "delete", "secret", TOKEN_SECRET)
    assert r.returncode == 0, r.stderr
    r = kube.kubectl("-n", install.GATEWAY_NS, "delete", "serviceaccount", TOKEN_ACCOUNT)
    assert r.returncode == 0, r.stderr
    # the next refresh carries the old token, which the API server now refuses
    poll(lambda: ("", JWKS, 401) in control.document_requests(kube.dir), 15, what="the old token refused")
    helm.upgrade(kube.kubeconfig, values=install.chart_values(kube, image, install.mode_values(mode, values)))
    new = poll(lambda: _secret_token(kube), 30, what="the token controller's new token")
    assert new != old
    pod.sync_volume(TOKEN_VOLUME)  # the kubelet's ..data swap

    def served_after_refusal() -> bool:
        reqs = control.document_requests(kube.dir)
        last_refused = max(i for i, r in enumerate(reqs) if r[2] == 401)
        return (install.TOKEN_USER, JWKS, 200) in reqs[last_refused + 1:]
    poll(served_after_refusal, 15, what="a document fetched with the new token")
    assert get(JWKS).status == 200
    assert pod.processes() == processes and pod.proc.poll() is None
