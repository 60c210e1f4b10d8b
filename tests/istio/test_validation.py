"""Every object the chart renders, in every case of the matrix, through istiod's validating
webhook (its own handler, pkg/webhooks/validation/server, strict EnvoyFilter decoding): no error,
no warning but the generic EnvoyFilter one. And the chart as it was before issue 19 refused, as
a real install refused it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness import pki as pkimod
from istio import cluster, istiod, matrix
from istio.gateway import Gateway

BEFORE_19 = Path(__file__).parent / "testdata" / "chart-before-19.yaml"



@pytest.mark.parametrize("case", matrix.CASES, ids=[c.id for c in matrix.CASES])
def test_every_object_passes_istiods_validation(case, servers, tmp_path):
    gw = Gateway(tmp_path, case, servers=servers)
    r = gw.generate()
    assert r.problems() == []
    # every Istio object of the chart was validated
    validated = {(v["kind"], v["name"]) for v in r.validation}
    assert {(o["kind"], o["metadata"]["name"]) for o in gw.objects if istiod.is_istio_kind(o)} <= validated


def test_the_chart_before_issue_19_is_refused():
    """The default install of the chart before issue 19: istiod's webhook refuses its scope
    EnvoyFilter (jsonpb wants `value` in an Any of google.protobuf.Empty), so `helm install`
    failed; without the webhook istiod drops the patch and the filter is never enabled."""
    objs = [o for o in yaml.safe_load_all(BEFORE_19.read_text()) if o]
    config, kube = istiod.split(objs)
    ca = pkimod.make_ca("gateway CA")
    cert, key = pkimod.make_leaf(ca, "gateway", ["oidc.example.com"])
    r = istiod.generate(config, kube + cluster.api_server(6443) +
                        [cluster.tls_secret("kube-oidc-discovery-tls", cert, key)])
    refused = [p for p in r.problems()]
    assert len(refused) == 1, refused
    assert "EnvoyFilter istio-ingress/kod-kube-oidc-discovery-scope" in refused[0]
    assert "Any JSON doesn't have 'value'" in refused[0]
    # at runtime (no webhook) istiod drops that patch: the filter stays disabled everywhere
    enabled = [vh["name"] for rc in r.xds["routes"] for vh in rc.get("virtual_hosts", [])
               if vh.get("typed_per_filter_config")]
    assert enabled == []
