"""The values matrix of the Istio tests: each case is chart values, the mode the gateway runs in,
what the cluster adds (a user's routes) and istiod's feature flags. The chart's values for Gateway
API mode and the route-collapse cases are the ones the chart posts in /work/wt/istio-notes.md."""

from __future__ import annotations

from dataclasses import dataclass, field

GATEWAY_API_REFS = [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "public"}]
FILTER_CLUSTERS = {"PILOT_FILTER_GATEWAY_CLUSTER_CONFIG": "true"}
NO_COLLAPSE = {"PILOT_ENABLE_ROUTE_COLLAPSE_OPTIMIZATION": "false"}


@dataclass(frozen=True)
class Case:
    id: str
    values: dict = field(default_factory=dict)
    # Gateway API mode: the chart's HTTPRoute on the cluster's Gateway `public` (gateway.targetRefs)
    gateway_api: bool = False
    # classic mode on the cluster's own Gateway `public` (publicGateway.gateways) instead of the chart's
    own_gateway: bool = False
    # hosts of a user's VirtualService (HTTPRoute) to an application, on the OIDC hosts' Gateway
    # when own_gateway or gateway_api, else on a Gateway of their own
    app_hosts: tuple[str, ...] = ("app.example.com",)
    env: dict = field(default_factory=dict)
    issuers: bool = False  # the `issuers` form (values from tests/istio/gateway.py issuers_values)

    def __hash__(self):
        return hash(self.id)


def _ids(cases):
    return [c.id for c in cases]


ROTATING = {"token": {"mode": "rotating"}}
NO_TOKEN = {"token": {"mode": "none"}}
SCOPE_ALL = {"plugin": {"scope": "all"}}
COLLAPSE_VALUES = {"publicGateway": {"gateways": ["istio-ingress/public"]}}

CASES = [
    Case("classic"),
    Case("classic-rotating", ROTATING),
    Case("classic-scope-all", SCOPE_ALL),
    # no token: an API server that serves the documents anonymously (served against the real
    # kube-apiserver: test_gateway_anonymous.py)
    Case("classic-no-token", NO_TOKEN),
    Case("classic-filtered-clusters", env=FILTER_CLUSTERS),
    Case("classic-no-route-collapse", env=NO_COLLAPSE),
    # a user's VirtualService lists an OIDC host beside its own: istiod merges the routes of both
    # VirtualServices into that host's virtual host, and collapses virtual hosts with equal routes
    Case("collapse-shared-host", COLLAPSE_VALUES, own_gateway=True, app_hosts=("app.example.com", "oidc.example.com")),
    Case("collapse-two-oidc-hosts",
         {**COLLAPSE_VALUES, "hosts": ["oidc.example.com", "oidc2.example.com"]},
         own_gateway=True, app_hosts=("a-app.example.com", "oidc.example.com")),
    Case("gateway-api", {"gateway": {"targetRefs": GATEWAY_API_REFS}}, gateway_api=True),
    Case("gateway-api-rotating", {"gateway": {"targetRefs": GATEWAY_API_REFS}, **ROTATING}, gateway_api=True),
    Case("gateway-api-filtered-clusters", {"gateway": {"targetRefs": GATEWAY_API_REFS}}, gateway_api=True,
         env=FILTER_CLUSTERS),
    Case("issuers", issuers=True),
    Case("issuers-filtered-clusters", issuers=True, env=FILTER_CLUSTERS),
    Case("issuers-gateway-api", {"gateway": {"targetRefs": GATEWAY_API_REFS}}, gateway_api=True, issuers=True),
]
BY_ID = {c.id: c for c in CASES}
