"""envoy/istio-gateway.yaml is what istiod produces now for the chart's defaults (tests/istio/snapshot.py;
`make istio-snapshot` rewrites it)."""

from istio import snapshot


def test_the_istio_gateway_snapshot_is_istiods_output():
    assert snapshot.SNAPSHOT.read_text() == snapshot.render(), "envoy/istio-gateway.yaml drifted: run `make istio-snapshot`"
