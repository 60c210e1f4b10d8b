"""Token mode projected (the chart's default) is an EnvoyPatchPolicy, which Envoy Gateway ignores
unless its configuration has `extensionApis.enableEnvoyPatchPolicy: true` (off by default; the
chart's NOTES say so, test_chart.py). Here Envoy Gateway runs with it off: the API server's
cluster has no credential_injector, the API server gets the filter's calls without a token and
answers 401, and the filter answers its generic 502; no client ever sees the API server's
answer."""

from __future__ import annotations

import pytest

import xds
from names import NAMESPACE, ROUTE
from harness.checks import ERROR_BODIES, poll
from harness.constants import DOCS, HOST, JWKS

EG_ENV = "patch-policy-disabled"
CLUSTER = f"httproute/{NAMESPACE}/{ROUTE}/rule/0"


@pytest.fixture
def env(envs, start_eg, fake):
    return envs.get(EG_ENV, lambda: start_eg(
        {"hosts": [HOST]}, api_server=fake.port, secrets={}, fakes={"local": fake}, wait=(HOST, JWKS),
        enable_envoy_patch_policy=False))


def test_without_enable_envoy_patch_policy_no_token_is_sent_and_the_filter_answers_502(env, fake):
    cluster = xds.clusters(env.eg.config_dump())[CLUSTER]
    assert not [f for f in xds.upstream_filters(cluster) if f.get("typed_config", {}).get("@type") == xds.CRED_TYPE]
    fake.reset()
    for path in DOCS:
        r = env.get(path, HOST)
        assert (r.status, r.body) == (502, ERROR_BODIES[502]), (path, r.status, r.body[:200])
    recs = poll(lambda: [h for h in fake.requests if h.path in DOCS], 30, what="the filter's calls")
    assert all(rec.header_all("authorization") == [] for rec in recs)
