"""token.mode=none (docs/envoy-gateway.md, "No token: anonymous discovery") in the Envoy that
Envoy Gateway drives, against a real kube-apiserver v1.37.2 whose AuthenticationConfiguration
makes the two document paths anonymous (KEP-4633; harness.kube's anonymous_discovery), reached as
the `kubernetes` Service with TLS checked against the CA of `kube-root-ca.crt`: the rule's cluster
carries no credential and the filter none either; without the binding of the discovery role to
system:unauthenticated the API server's 403 is the filter's 502, the 403 in its warn line; with the
binding (the chart's, as tests/real/test_anonymous_discovery.py applies it) both documents are
served."""

from __future__ import annotations


import pytest

import xds
from names import NAMESPACE, ROUTE
from harness.checks import assert_generic_error, assert_served_as_the_api_server_serves, leak_words, poll
from harness.constants import DISCOVERY, DOC_NAMES, DOCS, HOST, JWKS

EG_ENV = "no-token"
CLUSTER = f"httproute/{NAMESPACE}/{ROUTE}/rule/0"
# Envoy Gateway's listeners send no `server` header (docs/envoy-gateway.md)
NO_SERVER = None


@pytest.fixture
def env(envs, start_eg, anonymous_kube):
    def start():
        # the filter starts with no binding: its first fetches get the 403
        anonymous_kube.unbind_discovery_from_unauthenticated()
        poll(lambda: anonymous_kube.anonymous_get(JWKS)[0] == 403, 10, what="RBAC to see no binding")
        return start_eg({"hosts": [HOST], "token": {"mode": "none"}, "plugin": {"refreshIntervalS": 5}},
                        api_server=anonymous_kube.port,
                        secrets={}, wait=(HOST, JWKS))
    return envs.get(EG_ENV, start)


def test_no_credential_on_the_cluster_or_in_the_filter(env):
    (policy,) = env.chart("EnvoyExtensionPolicy")
    wasm = policy["spec"]["wasm"][0]
    assert wasm["config"]["cluster"] == CLUSTER and "token_env" not in wasm["config"] and "env" not in wasm
    dump = env.eg.config_dump()
    clusters = xds.clusters(dump)
    assert [c for c in clusters if c.startswith(f"httproute/{NAMESPACE}/{ROUTE}/")] == [CLUSTER]
    assert not [f for f in xds.upstream_filters(clusters[CLUSTER])
                if f.get("typed_config", {}).get("@type") == xds.CRED_TYPE]
    (f,) = xds.wasm_filters(dump)
    assert xds.wasm_plugin_config(f) == wasm["config"]  # what the filter gets: no token_env
    assert "environment_variables" not in f["typed_config"]["config"]["vm_config"]


def test_the_binding_decides_403_relayed_as_502_then_both_documents_served(env, anonymous_kube):
    kube = anonymous_kube
    forbidden = [w for w in leak_words(kube, token="") if w]  # no token to leak
    for path in DOCS:
        assert_generic_error(env.get(path, HOST), 502, forbidden, server=NO_SERVER)
    for doc in DOC_NAMES.values():
        poll(lambda: [ln for ln in env.eg.log_text().splitlines() if "wasm log" in ln and "[warning]" in ln
                      and doc in ln and "the API server answered 403" in ln],
             10, what=f"the warn line quoting the 403 for {doc}")
    kube.bind_discovery_to_unauthenticated()
    poll(lambda: env.get(JWKS, HOST).status == 200 and env.get(DISCOVERY, HOST).status == 200, 30,
         what="the documents after the binding")
    for path in DOCS:
        status, real = kube.anonymous_get(path)
        assert status == 200
        assert_served_as_the_api_server_serves(env.get(path, HOST), path, real, f"https://{HOST}{JWKS}")
