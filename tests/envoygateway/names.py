"""The names the Envoy Gateway tests share: the chart and its release, the namespace it is
installed in, the HTTPRoute Envoy Gateway names its cluster after, the fake API server's token.
(In a module of their own, not conftest.py: a test imports names, pytest provides fixtures.)"""

from __future__ import annotations

from pathlib import Path

from harness.constants import OTHER_HOST

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

CHART = REPO / "charts" / "kube-oidc-discovery-envoy-gateway"
NAMESPACE = "oidc"
RELEASE = "kod"
GATEWAY = "eg"
APP_HOST = OTHER_HOST
TOKEN = "eg-test-token-0123456789"
# the chart's Backend for this cluster's API server (apiServer.host)
API_SERVER_FQDN = "kubernetes.default.svc.cluster.local"
# the chart's HTTPRoute (release + chart name): Envoy Gateway's cluster is httproute/<ns>/<ROUTE>/...
ROUTE = f"{RELEASE}-kube-oidc-discovery-envoy-gateway"
