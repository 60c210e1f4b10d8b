"""istiod's validating webhook as a cluster runs it: the API server calls it through Service
istiod's endpoints on every Istio object, so `helm install` of a chart istiod refuses fails at
install. Shown with the chart before issue 19 (tests/istio/testdata/chart-before-19.yaml, its
objects as Helm rendered them), whose scope EnvoyFilter istiod refuses."""

from __future__ import annotations

import pytest

import helm  # tools/helm.py
from helm_python import HelmError
from harness import REPO_ROOT
from istioreal import install

BEFORE_19 = REPO_ROOT / "tests" / "istio" / "testdata" / "chart-before-19.yaml"
SCOPE_FILTER = "kod-kube-oidc-discovery-scope"  # the EnvoyFilter istiod refuses


def test_helm_install_of_the_chart_before_issue_19_is_refused_by_istiods_webhook(cluster, tmp_path):
    kube, _ = cluster
    chart = tmp_path / "kube-oidc-discovery"  # that chart as it was, its objects rendered already
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: kube-oidc-discovery\nversion: 0.1.0\nappVersion: \"0.1.0\"\n")
    (chart / "templates" / "objects.yaml").write_text(BEFORE_19.read_text())
    with pytest.raises(HelmError) as e:
        helm.install(kube.kubeconfig, chart_dir=chart)
    message = str(e.value)
    assert f"{install.GATEWAY_NS}/{SCOPE_FILTER}" in message and "Kind=EnvoyFilter" in message, message
    assert 'admission webhook "validation.istio.io" denied the request' in message, message
    assert "Any JSON doesn't have 'value'" in message, message
    status, _ = kube.api("GET", f"/apis/networking.istio.io/v1alpha3/namespaces/{install.GATEWAY_NS}/envoyfilters/{SCOPE_FILTER}")
    assert status == 404
