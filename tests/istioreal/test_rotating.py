"""Token mode rotating as a user installs it, in classic and in Gateway API mode: the NOTES'
patch mounts the token Secret and the SDS ConfigMap on the gateway; Envoy's credential_injector
adds the token to the filter's calls, and a token re-issued with the steps NOTES.txt prints, run
as printed (its Secret and account deleted, `helm upgrade` re-creating them; the kubelet swaps
the volume's ..data), reaches Envoy without a restart. The cluster's default binding of the
discovery role to every service account is removed first, so the chart's ClusterRoleBinding is
what lets the old and the new account read the documents."""

from __future__ import annotations

import pytest

import helm  # tools/helm.py
from harness import audit
from harness.checks import poll
from harness.constants import JWKS
from istioreal import install

TOKEN_SECRET = "kod-kube-oidc-discovery-token"
TOKEN_VOLUME = "kod-token"


@pytest.fixture(scope="module", params=install.MODES)
def mode(request):
    return request.param


@pytest.fixture(scope="module")
def gateway(mode, cluster, tmp_path_factory, image, backend):
    kube, _ = cluster
    r = kube.kubectl("delete", "clusterrolebinding", "system:service-account-issuer-discovery")
    assert r.returncode == 0, r.stderr
    d = tmp_path_factory.mktemp(f"rotating-{mode}")
    # the mounts at paths of this machine (Envoy reads them as the container would)
    values = {"token": {"mode": "rotating", "mountPath": str(d / "kod-token"), "sdsMountPath": str(d / "kod-token-sds")},
              "plugin": {"refreshIntervalS": 5}}
    printed = []
    pod, get = install.gateway(mode, kube, d, image, backend, values, before_pod=printed.append)
    yield pod, get, values, printed[0]
    pod.stop()


def _secret_token(kube) -> str | None:
    s = kube.get(f"/api/v1/namespaces/{install.GATEWAY_NS}/secrets/{TOKEN_SECRET}")
    return s.get("data", {}).get("token")


def test_both_documents_are_served_with_the_mounted_token_and_none_in_the_environment(gateway, cluster):
    pod, get, _, _ = gateway
    kube, _ = cluster
    assert all("KUBE_OIDC_TOKEN" not in e["name"] for e in pod.container().get("env", []))
    audit.assert_served_from(kube, get, install.TOKEN_USER)


def test_the_notes_steps_reissue_the_token_and_it_reaches_envoy_without_a_restart(gateway, cluster, image, mode):
    pod, get, values, notes = gateway
    kube, _ = cluster
    processes = pod.processes()
    old = _secret_token(kube)
    deletes, (namespace, release) = install.reissue_steps(notes)
    for args in deletes:
        r = kube.kubectl(*args)
        assert r.returncode == 0, (args, r.stderr)
    # the next refresh carries the old token, which the API server now refuses
    poll(lambda: ("", JWKS, 401) in audit.document_requests(kube.dir), 15, what="the old token refused")
    # the printed `<chart> --reuse-values`: the chart and values of the install
    helm.upgrade(kube.kubeconfig, values=install.chart_values(kube, image, install.mode_values(mode, values)),
                 release=release, namespace=namespace)
    new = poll(lambda: _secret_token(kube), 30, what="the token controller's new token")
    if new == old:  # a legacy token is the same string for the same account (name, UID) and Secret name
        pytest.fail("the NOTES' steps gave the old token back")
    pod.sync_volume(TOKEN_VOLUME)  # the kubelet's ..data swap

    def served_after_refusal() -> bool:
        reqs = audit.document_requests(kube.dir)
        last_refused = max(i for i, r in enumerate(reqs) if r[2] == 401)
        return (install.TOKEN_USER, JWKS, 200) in reqs[last_refused + 1:]
    poll(served_after_refusal, 15, what="a document fetched with the new token")
    assert get(JWKS).status == 200
    assert pod.processes() == processes and pod.proc.poll() is None
