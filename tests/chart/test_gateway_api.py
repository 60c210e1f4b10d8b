"""The chart's Gateway API mode (gateway.targetRefs): an HTTPRoute instead of the Istio Gateway and
VirtualService, every Istio object bound to the Gateway as istiod matches a Gateway API gateway,
and what the mode refuses. What every variant gets (lint, CRD validity, the filter's parser, the
scope patches by route name) is in test_chart.py, whose VARIANTS include these."""

from __future__ import annotations

import helm_python
import pytest

import helm
from test_chart import GATEWAY_REF, VARIANTS, by_kind, one

GATEWAY_API = VARIANTS["gateway-api"]
DOCUMENTS = ["/.well-known/openid-configuration", "/openid/v1/jwks"]


def test_the_http_route_puts_the_hosts_on_the_gateway_with_no_backend():
    route = one(helm.render(values=GATEWAY_API), "HTTPRoute")
    assert route["metadata"]["namespace"] == helm.NAMESPACE  # the Gateway's, as targetRefs require
    spec = route["spec"]
    assert spec["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public"}]
    assert spec["hostnames"] == ["oidc.example.com"]
    documents, rest = spec["rules"]
    # Exact: Gateway API ranks it before any other HTTPRoute's PathPrefix for these hosts
    assert documents["matches"] == [{"path": {"type": "Exact", "value": p}} for p in DOCUMENTS]
    assert rest["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    # no backend: istiod answers 500 (conversion.go), nothing behind the gateway is reachable
    for rule in spec["rules"]:
        assert set(rule) == {"matches"}


def test_many_issuer_paths_are_split_into_rules_of_at_most_64_matches():
    issuers = [{"name": f"i{i}", "issuer": f"https://oidc.example.com/c/{i}",
                **({"apiServer": {"host": f"api{i}.example.internal"}} if i else {})} for i in range(40)]
    objs = helm.render(values=GATEWAY_API | {"issuers": issuers})
    rules = one(objs, "HTTPRoute")["spec"]["rules"]
    assert [len(r["matches"]) for r in rules] == [64, 16, 1]
    paths = [m["path"]["value"] for r in rules[:-1] for m in r["matches"]]
    assert paths == [f"/c/{i}{d}" for i in range(40) for d in DOCUMENTS]
    routes = [p["match"]["routeConfiguration"]["vhost"]["route"]["name"]
              for p in one(objs, "EnvoyFilter", "-scope")["spec"]["configPatches"] if p["applyTo"] == "HTTP_ROUTE"]
    assert routes == [f"{helm.NAMESPACE}.kod-kube-oidc-discovery.{i}" for i in range(3)]


def test_too_many_issuer_paths_for_one_http_route_fail_the_render():
    issuers = [{"name": f"i{i}", "issuer": f"https://oidc.example.com/c/{i}",
                **({"apiServer": {"host": f"api{i}.example.internal"}} if i else {})} for i in range(64)]
    with pytest.raises(helm_python.HelmError) as e:
        helm.render(values=GATEWAY_API | {"issuers": issuers})
    assert "128 document paths" in str(e.value)


def test_more_hosts_than_an_http_route_holds_fail_the_render():
    issuers = [{"name": f"i{i}", "issuer": f"https://h{i}.example.com",
                **({"apiServer": {"host": f"api{i}.example.internal"}} if i else {})} for i in range(17)]
    with pytest.raises(helm_python.HelmError) as e:
        helm.render(values=GATEWAY_API | {"issuers": issuers})
    assert "17 public hosts do not fit one HTTPRoute" in str(e.value)
    route = one(helm.render(values=GATEWAY_API | {"issuers": issuers[:16]}), "HTTPRoute")
    assert len(route["spec"]["hostnames"]) == 16


@pytest.mark.parametrize("variant", ["gateway-api", "gateway-api-issuers"])
def test_destination_rules_select_the_gateways_pods_by_its_gateway_name_label(variant):
    """A DestinationRule has no targetRefs; Istio's deployment controller labels a Gateway's pods
    gateway.networking.k8s.io/gateway-name, the label istiod matches targetRefs by
    (policyattachment.go)."""
    drs = by_kind(helm.render(values=VARIANTS[variant]))["DestinationRule"]
    assert drs
    for dr in drs:
        assert dr["spec"]["workloadSelector"] == {"matchLabels": {"gateway.networking.k8s.io/gateway-name": "public"}}


def test_no_istio_gateway_or_virtual_service():
    kinds = by_kind(helm.render(values=GATEWAY_API | {"publicGateway": {"certificate": {"create": True, "issuerRef": {"name": "le"}}}}))
    assert not {"Gateway", "VirtualService", "Certificate"} & set(kinds)
    assert "HTTPRoute" not in by_kind(helm.render(values=GATEWAY_API | {"publicGateway": {"httpRoute": False}}))


@pytest.mark.parametrize("public_gateway", [{"create": True}, {"gateways": ["istio-ingress/public"]}])
def test_classic_routing_values_are_refused(public_gateway):
    with pytest.raises(helm_python.HelmError) as e:
        helm.render(values=GATEWAY_API | {"publicGateway": public_gateway})
    assert "gateway.targetRefs (Gateway API mode) takes the chart's HTTPRoute" in str(e.value)


@pytest.mark.parametrize("refs, where", [
    ([GATEWAY_REF, GATEWAY_REF | {"name": "other"}], "/gateway/targetRefs"),
    ([GATEWAY_REF | {"kind": "Service"}], "/gateway/targetRefs/0/kind"),
    ([GATEWAY_REF | {"group": "networking.istio.io"}], "/gateway/targetRefs/0/group"),
    ([GATEWAY_REF | {"namespace": "elsewhere"}], "/gateway/targetRefs/0"),
    ([{"kind": "Gateway", "name": "public"}], "/gateway/targetRefs/0"),
])
def test_schema_takes_one_gateway_api_gateway_of_the_namespace(refs, where):
    with pytest.raises(helm_python.HelmError) as e:
        helm.render(values={"gateway": {"targetRefs": refs}})
    assert where in str(e.value), str(e.value)
