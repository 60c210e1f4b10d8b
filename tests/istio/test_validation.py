"""Every object the chart renders, in every case of the matrix, through istiod's validating
webhook (its own handler, pkg/webhooks/validation/server, strict EnvoyFilter decoding): no error,
no warning but the generic EnvoyFilter one. And the chart as it was before issue 19 refused, as
a real install refused it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from istio import istiod, matrix
from istio.gateway import Gateway, issuer_servers

BEFORE_19 = Path(__file__).parent / "testdata" / "chart-before-19.yaml"


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    made = issuer_servers(tmp_path_factory.mktemp("servers"))
    yield made
    for s in made.values():
        s.stop()


@pytest.mark.parametrize("case", matrix.CASES, ids=[c.id for c in matrix.CASES])
def test_every_object_passes_istiods_validation(case, servers, tmp_path):
    gw = Gateway(tmp_path, case, servers=servers)
    r = gw.generate()
    assert r.problems() == []
    chart_kinds = {o["kind"] for o in gw.objects if istiod.is_istio_kind(o)}
    assert chart_kinds <= {v["kind"] for v in r.validation}  # every Istio object was validated
    assert {v["kind"] for v in r.validation} >= {"WasmPlugin", "EnvoyFilter"} or case.values.get("plugin", {}).get("scope") == "all"


def test_the_chart_before_issue_19_is_refused():
    """The default install of the chart before issue 19: istiod's webhook refuses its scope
    EnvoyFilter (jsonpb wants `value` in an Any of google.protobuf.Empty), so `helm install`
    failed; without the webhook istiod drops the patch and the filter is never enabled."""
    objs = [o for o in yaml.safe_load_all(BEFORE_19.read_text()) if o]
    config, _ = istiod.split(objs)
    r = istiod.generate(config, [])
    refused = [p for p in r.problems()]
    assert len(refused) == 1, refused
    assert "EnvoyFilter istio-ingress/kod-kube-oidc-discovery-scope" in refused[0]
    assert "Any JSON doesn't have 'value'" in refused[0]
    # at runtime (no webhook) istiod drops that patch: the filter stays disabled everywhere
    enabled = [vh["name"] for rc in r.xds["routes"] for vh in rc.get("virtual_hosts", [])
               if vh.get("typed_per_filter_config")]
    assert enabled == []
