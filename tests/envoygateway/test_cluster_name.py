"""The cluster-name contract: the chart writes Envoy Gateway's name for the API server's cluster
into the filter's configuration (`cluster`), a convention of Envoy Gateway
(internal/gatewayapi/helpers.go, v1.9.1), not an API. Held here to Envoy Gateway's own output: the
cluster exists under exactly that name (so the chart's EnvoyPatchPolicy finds it), carries the
credential_injector that policy adds (the filter's own dispatch_http_call goes through it), and
the filter is in the listener disabled and enabled only on the chart's route. Token mode inject's
name, with /backend/<j>: test_issuers.py."""

from __future__ import annotations

import json

import pytest

import xds
from names import NAMESPACE, ROUTE

EG_ENV = "single"

CLUSTER = f"httproute/{NAMESPACE}/{ROUTE}/rule/0"


@pytest.fixture
def dump(single):
    return single.eg.config_dump()


def test_the_chart_names_envoy_gateways_cluster(single, dump):
    (policy,) = single.chart("EnvoyExtensionPolicy")
    assert policy["spec"]["wasm"][0]["config"]["cluster"] == CLUSTER
    (f,) = xds.wasm_filters(dump)
    assert xds.wasm_plugin_config(f) == policy["spec"]["wasm"][0]["config"], "the config reaches the filter unchanged"
    clusters = xds.clusters(dump)
    assert CLUSTER in clusters, sorted(clusters)
    # and no other cluster for the same route's rule that the filter could mean
    assert [c for c in clusters if c.startswith(f"httproute/{NAMESPACE}/{ROUTE}/")] == [CLUSTER]


def test_the_token_is_injected_on_that_cluster(dump):
    cluster = xds.clusters(dump)[CLUSTER]
    (inj,) = [f for f in xds.upstream_filters(cluster) if f.get("typed_config", {}).get("@type") == xds.CRED_TYPE]
    assert inj["typed_config"]["overwrite"] is True
    assert inj["typed_config"]["credential"]["typed_config"]["header_value_prefix"] == "Bearer "
    # Envoy Gateway's own filters of the cluster stay: the patch adds to its protocol options
    assert [f["name"] for f in xds.upstream_filters(cluster)][-1] == "envoy.filters.http.upstream_codec"
    # the BackendTLSPolicy: a transport socket match per backend, SNI and SAN from its hostname
    (match,) = cluster["transport_socket_matches"]
    tls = match["transport_socket"]["typed_config"]
    assert tls.get("sni") == "kubernetes.default.svc", json.dumps(match, indent=1)
    validation = json.dumps(tls["common_tls_context"])
    assert "kubernetes.default.svc" in validation and "validation_context" in validation, validation


def test_the_filter_runs_only_on_the_charts_route(dump):
    (f,) = xds.wasm_filters(dump)
    assert f.get("disabled") is True, f
    enabled = [r["name"] for r in xds.routes(dump) if f["name"] in r.get("typed_per_filter_config", {})]
    assert enabled and all(n.startswith(f"httproute/{NAMESPACE}/{ROUTE}/") for n in enabled), enabled
    others = [r["name"] for r in xds.routes(dump) if r["name"].startswith(f"httproute/{NAMESPACE}/app/")]
    assert others and not set(others) & set(enabled)
