"""Every API server of the chart is an Envoy Gateway `Backend`, which Envoy Gateway ignores
unless its configuration has `extensionApis.enableBackend: true` (off by default; the chart's
NOTES say so, test_chart.py). Here Envoy Gateway runs with it off,
as installed by default: the remote issuer's HTTPRoute is ResolvedRefs False, Envoy gets no
cluster for it, and the filter answers its 503 without that API server ever being asked. (Every
other test of this directory switches it on.)"""

from __future__ import annotations

import pytest

import xds
from names import NAMESPACE, ROUTE
from harness.checks import ERROR_BODIES
from harness.constants import DISCOVERY, JWKS
from harness import pki as _pki
from harness.fake_apiserver import FakeApiServer
from test_serving import condition

EG_ENV = "backend-disabled"
HOST = "oidc.example.com"
ISSUER = f"https://{HOST}/clusters/prod"
PROD_ROUTE = f"{ROUTE}-prod"


@pytest.fixture(scope="module")
def prod(tmp_path_factory):
    p = _pki.generate(tmp_path_factory.mktemp("prod-pki"))
    f = FakeApiServer(p.server_cert, p.server_key, token="token-prod", issuer=ISSUER).start()
    f.pki = p
    yield f
    f.stop()


@pytest.fixture
def env(envs, start_eg, prod):
    # one issuer, another cluster's API server alone: the render's one Backend is the chart's
    values = {"issuers": [{"name": "prod", "issuer": ISSUER,
                           "apiServer": {"host": "api.prod.example.internal", "port": prod.port,
                                         "addresses": ["127.0.0.1"], "hostname": "kubernetes.default.svc"}}]}
    return envs.get(EG_ENV, lambda: start_eg(
        values,
        secrets={(NAMESPACE, f"{PROD_ROUTE}-credential"): {"credential": "Bearer token-prod"}},
        configmaps={(NAMESPACE, f"{PROD_ROUTE}-ca"): {"ca.crt": prod.pki.ca_cert.read_text()}},
        fakes={"prod": prod}, wait=(HOST, "/clusters/prod" + JWKS), enable_backend=False))


def test_without_enable_backend_the_remote_issuers_route_is_resolved_refs_false(env):
    assert [b["metadata"]["name"] for b in env.chart("Backend")] == [PROD_ROUTE]
    st = env.eg.statuses()
    (parent,) = st[("HTTPRoute", f"{NAMESPACE}/{PROD_ROUTE}")]["parents"]
    refs = condition(parent, "ResolvedRefs")
    assert refs["status"] == "False", parent
    assert refs["reason"] == "UnsupportedValue", refs
    # the words the chart's NOTES quote
    assert "Backend is disabled in Envoy Gateway configuration" in refs["message"], refs
    assert condition(parent, "Accepted")["status"] == "True", parent
    # Envoy Gateway logs no status for the Backend it ignores (on Kubernetes it does not even
    # watch the kind: internal/provider/kubernetes/controller.go)
    assert ("Backend", f"{NAMESPACE}/{PROD_ROUTE}") not in st


@pytest.mark.parametrize("path", [DISCOVERY, JWKS])
def test_without_enable_backend_the_remote_issuer_answers_503_and_its_api_server_gets_nothing(env, prod, path):
    # the route's own answer would be Envoy Gateway's 500 direct response; the filter, which runs
    # first, finds no cluster to call (the one the chart names is not there) and answers its 503
    (policy,) = env.chart("EnvoyExtensionPolicy")
    (entry,) = policy["spec"]["wasm"][0]["config"]["issuers"]
    assert entry["cluster"] not in xds.clusters(env.eg.config_dump())
    prod.reset()
    r = env.get("/clusters/prod" + path, HOST)
    assert (r.status, r.body) == (503, ERROR_BODIES[503]), r
    assert prod.count() == 0 and prod.handshake_failures == 0
