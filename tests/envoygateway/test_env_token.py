"""token.mode=env: the token from the Envoy container's environment, given to the VM with Wasm
env.hostKeys (read when the VM starts). The backendRef then has no filter, so Envoy Gateway makes
one cluster for the rule and names it without /backend/<j>: the name the chart writes, held here
to Envoy Gateway's output. Envoy inherits Envoy Gateway's environment in standalone mode (func-e
sets none of its own)."""

from __future__ import annotations

import pytest

import xds
from names import NAMESPACE, ROUTE, TOKEN
from harness.constants import DOCS, HOST, JWKS

EG_ENV = "env-token"
CLUSTER = f"httproute/{NAMESPACE}/{ROUTE}/rule/0"


# where this env's requests start in the session fake's history (the first fetches come before
# any test runs, and the documents are then served from the filter's copy)
SINCE: dict[str, int] = {}


@pytest.fixture
def env(envs, start_eg, fake):
    def start():
        SINCE["history"] = len(fake.history)
        return start_eg({"hosts": [HOST], "token": {"mode": "env"}}, api_server=fake.port, secrets={},
                        eg_env={"KUBE_OIDC_TOKEN": TOKEN}, wait=(HOST, JWKS))
    return envs.get(EG_ENV, start)


def test_the_rule_cluster_without_an_injector(env):
    (policy,) = env.chart("EnvoyExtensionPolicy")
    assert policy["spec"]["wasm"][0]["config"]["cluster"] == CLUSTER
    clusters = xds.clusters(env.eg.config_dump())
    assert [c for c in clusters if c.startswith(f"httproute/{NAMESPACE}/{ROUTE}/")] == [CLUSTER]
    assert not [f for f in xds.upstream_filters(clusters[CLUSTER]) if f.get("typed_config", {}).get("@type") == xds.CRED_TYPE]


def test_documents_served_with_the_host_key_token(env, fake):
    for path in DOCS:
        r = env.get(path, HOST)
        assert r.status == 200, (path, r.status, r.body[:200])
    recs = [h for h in fake.history[SINCE["history"]:] if h.path in DOCS]
    assert recs and all(h.header_all("authorization") == [f"Bearer {TOKEN}"] for h in recs)
