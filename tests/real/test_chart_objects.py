"""The chart's own account objects on a real API server: its ServiceAccount, token Secret and
ClusterRoleBinding, rendered by Helm and applied with kubectl (the pinned release's, which
validates them against the server's OpenAPI). The token controller fills the Secret; that token fetches both documents
through Envoy, and can do nothing else. The cluster's default binding of the discovery role to
every service account is removed first, as hardened clusters do, so the chart's binding is what
grants the access."""

from __future__ import annotations

import base64
import json

import yaml

import helm  # tools/helm.py
from harness.checks import poll
from harness.constants import DISCOVERY, JWKS

NAMESPACE = "istio-ingress"
ACCOUNT_KINDS = ("ServiceAccount", "Secret", "ClusterRoleBinding")


def test_chart_account_objects_work_on_a_real_api_server(own_kube, make_stack):
    kube = own_kube()
    objs = {o["kind"]: o for o in helm.render(namespace=NAMESPACE) if o["kind"] in ACCOUNT_KINDS}
    assert sorted(objs) == sorted(ACCOUNT_KINDS)
    removed = kube.kubectl("delete", "clusterrolebinding", "system:service-account-issuer-discovery")
    assert removed.returncode == 0, removed.stderr
    kube.create_namespace(NAMESPACE)

    def apply(*kinds: str) -> None:
        r = kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([objs[k] for k in kinds]))
        assert r.returncode == 0, r.stderr
        assert r.stdout.count(" created") == len(kinds), r.stdout

    apply("ServiceAccount", "Secret")
    secret = objs["Secret"]["metadata"]["name"]

    def filled() -> str | None:
        r = kube.kubectl("get", "secret", "-n", NAMESPACE, secret, "-o", "json")
        data = json.loads(r.stdout).get("data", {}) if r.returncode == 0 else {}
        return data.get("token")

    token = base64.b64decode(poll(filled, 20, what="the token controller")).decode()
    assert kube.request("GET", JWKS, token=token, headers={"Accept": "*/*"})[0] == 403

    apply("ClusterRoleBinding")
    poll(lambda: kube.request("GET", JWKS, token=token, headers={"Accept": "*/*"})[0] == 200, 10,
         what="RBAC to see the binding")
    s = make_stack("pod-static-token.yaml", fake=kube, token=token)
    for path in (DISCOVERY, JWKS):
        r = s.get(path)
        assert r.status == 200, r.raw()
        assert json.loads(r.body)
    # bound only to the discovery role: nothing else
    status, _, _ = kube.request("GET", f"/api/v1/namespaces/{NAMESPACE}/secrets", token=token)
    assert status == 403
