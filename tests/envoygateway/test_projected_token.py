"""Token mode projected (the chart's default) when the kubelet renews the token: the Envoy pod's
projected token file swapped as the kubelet swaps the volume (`..data` renamed to a new
directory), and the next fetch of the filter carries the new token, with no restart of Envoy or
Envoy Gateway. The same, with the real API server and the kubelet's own token: the Kubernetes
tier (tests/envoygatewayreal)."""

from __future__ import annotations

import pytest

import sandbox
from names import TOKEN
from harness.checks import assert_exact_upstream_request, poll
from harness.constants import DOCS, HOST, JWKS
from harness.tokendir import TokenDir

EG_ENV = "projected-rotation"
RENEWED = "eg-test-token-renewed-9876543210"


@pytest.fixture
def env(envs, start_eg, fake):
    return envs.get(EG_ENV, lambda: start_eg(
        {"hosts": [HOST], "plugin": {"refreshIntervalS": 5}}, api_server=fake.port, secrets={},
        fakes={"local": fake}, wait=(HOST, JWKS)))


def test_a_renewed_token_file_is_used_by_the_next_fetch_without_a_restart(env, fake):
    envoy = env.eg.envoy_pids()
    fake.set_token(RENEWED)  # the old token is refused from now on
    fake.reset()
    try:
        TokenDir(sandbox.PROJECTED).write({"token": RENEWED})
        recs = poll(lambda: [h for h in fake.history
                             if h.path in DOCS and h.header("authorization") == f"Bearer {RENEWED}"],
                    30, what="a fetch with the renewed token")
        assert_exact_upstream_request(recs[0], RENEWED)
        assert env.get(JWKS, HOST).status == 200
        assert env.eg.running and env.eg.envoy_pids() == envoy
    finally:
        fake.set_token(TOKEN)
        TokenDir(sandbox.PROJECTED).write({"token": TOKEN})

