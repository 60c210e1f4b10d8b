"""Token mode projected, the chart's default, on Envoy Gateway's Kubernetes provider: `helm
install`, the NOTES' Gateway patch naming the chart's EnvoyProxy, and Envoy Gateway re-rendering
the Envoy Deployment with the pods' account and its projected token; the EnvoyPatchPolicy
programmed, the documents served with that account's token, and a token the kubelet renews
(the volume's ..data swapped to a new TokenRequest's token) carried by the next fetch with no
restart. Statuses read back from the API server."""

from __future__ import annotations

import base64
import json
import re

import helm  # tools/helm.py
from envoygatewayreal import install
from envoygatewayreal.install import ancestor_conditions
from harness import audit
from harness.checks import poll
from harness.constants import DOCS, JWKS

VALUES = {"plugin": {"refreshIntervalS": 5}}  # the renewal's next fetch comes soon
ACCEPTED = ("True", "Accepted")


def test_the_envoy_pods_run_as_the_named_account_with_the_projected_token(gateway, cluster):
    pod, _ = gateway
    spec = pod.deployment["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == install.ENVOY_ACCOUNT
    (vol,) = [v for v in spec["volumes"] if v["name"] == install.TOKEN_VOLUME]
    (src,) = vol["projected"]["sources"]
    assert "audience" not in src["serviceAccountToken"]  # the API server's own
    (envoy,) = [c for c in spec["containers"] if c["name"] == "envoy"]
    assert {"name": install.TOKEN_VOLUME, "mountPath": "/var/run/secrets/kube-oidc-discovery", "readOnly": True} in envoy["volumeMounts"]
    # Envoy Gateway created the account; it has no rights but the chart's binding
    kube, _ = cluster
    kube.get(f"/api/v1/namespaces/{install.GATEWAY_NS}/serviceaccounts/{install.ENVOY_ACCOUNT}")


def test_the_patch_policy_is_accepted_and_programmed(gateway, cluster):
    kube, _ = cluster
    pol = kube.get(f"/apis/gateway.envoyproxy.io/v1alpha1/namespaces/{install.GATEWAY_NS}/envoypatchpolicies/{install.FULLNAME}")
    conds = ancestor_conditions(pol)
    assert conds["Accepted"] == ACCEPTED and conds["Programmed"] == ("True", "Programmed"), conds


def test_both_documents_are_served_with_the_envoy_pods_token(gateway, cluster):
    _, get = gateway
    audit.assert_served_from(cluster[0], get, install.TOKEN_USER)


def _jti(token: bytes) -> str:
    payload = token.split(b".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))["jti"]


def test_a_token_the_kubelet_renews_is_used_by_the_next_fetch_without_a_restart(gateway, cluster):
    pod, get = gateway
    kube, _ = cluster
    token_file = pod.pod.host_path("/var/run/secrets/kube-oidc-discovery") / "token"
    old = _jti(token_file.read_bytes())
    processes = pod.pod.processes()
    pod.pod.sync_volume(install.TOKEN_VOLUME)  # the kubelet's renewal: a new TokenRequest, ..data swapped
    new = _jti(token_file.read_bytes())
    assert new != old
    # the next refresh carries the new token's id (the API server's audit log names it)
    poll(lambda: f"JTI={new}" in audit.document_credentials(kube.dir), 30, interval=0.5,
         what="a document fetched with the renewed token")
    assert f"JTI={old}" in audit.document_credentials(kube.dir)
    assert all(get(p).status == 200 for p in DOCS) and get(JWKS).body == kube.request("GET", JWKS, admin=True)[2]
    assert pod.pod.processes() == processes and pod.pod.proc.poll() is None


def test_the_envoy_pods_token_reads_the_two_documents_and_nothing_else(gateway, cluster):
    """The chart's only grant to the Envoy pods' account is the discovery role: with the token
    the kubelet wrote, the documents are readable, and the Secrets of the release's and the
    Gateway's namespaces, pods, and token requests are refused."""
    pod, _ = gateway
    kube, _ = cluster
    token = (pod.pod.host_path("/var/run/secrets/kube-oidc-discovery") / "token").read_text()
    for path in DOCS:
        assert kube.request("GET", path, token=token)[0] == 200, path
    for method, path in [("GET", f"/api/v1/namespaces/{install.NAMESPACE}/secrets"),
                         ("GET", f"/api/v1/namespaces/{install.GATEWAY_NS}/secrets"),
                         ("GET", "/api/v1/pods"),
                         ("GET", f"/api/v1/namespaces/{install.GATEWAY_NS}/configmaps"),
                         ("POST", f"/api/v1/namespaces/{install.GATEWAY_NS}/serviceaccounts/{install.ENVOY_ACCOUNT}/token")]:
        code = kube.request(method, path, token=token, headers={"Content-Type": "application/json"},
                            body=b"{}" if method == "POST" else None)[0]
        assert code == 403, (method, path, code)


def test_the_docs_gateway_patch_is_the_one_the_notes_print(gateway, cluster):
    """docs/envoy-gateway.md's step 3 shows, for the docs' release, the command the install
    here ran from NOTES.txt."""
    kube, _ = cluster
    text = install.DOCS_FILE.read_text()
    step = text[text.index("3. Let the Gateway name"):text.index("4. Check the statuses")]
    documented = " ".join(re.search(r"```sh\n(.*?)```", step, re.S).group(1).replace("\\\n", " ").split())
    notes = helm.notes(install.CHART, install.chart_values(kube, {"url": "r/i:t", "sha256": ""}, VALUES),
                       release=install.RELEASE, namespace=install.NAMESPACE)
    printed = re.search(r"^ *(kubectl -n \S+ patch gateway .*)$", notes, re.M).group(1)
    assert documented == " ".join(printed.split())
