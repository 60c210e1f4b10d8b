"""The `issuers` form in real Envoy: two path-prefixed issuers on one host and a host-based one,
each served from its own API server (its own CA, certificate name, token and keys), at exactly
its two document paths; everything else on those hosts 404/405, other hosts untouched; metrics
per issuer."""

from __future__ import annotations

import json

from harness.checks import ERROR_BODIES, assert_no_upstream_headers, plugin_log_lines, poll
from harness.issuers import CLUSTERS, EDGE_HOST, host_of, public_path
from harness.backend import BODY as BACKEND_BODY
from harness.constants import DISCOVERY, DOCS, HOST, JWKS, OTHER_HOST
from harness.constants import METRIC_PREFIX as P

NOT_FOUND = [
    (HOST, JWKS),  # no issuer at the root of this host
    (HOST, DISCOVERY),
    (HOST, "/clusters/prod"),
    (HOST, "/clusters/prod/"),
    (HOST, "/clusters/prod/openid/v1/jwks/"),
    (HOST, "/clusters/prod//openid/v1/jwks"),
    (HOST, "/clusters/Prod/openid/v1/jwks"),
    (HOST, "/clusters/prod/../dev/openid/v1/jwks"),
    (HOST, "/clusters/prod/openid/v1/jwk%73"),
    (HOST, "/clusters/staging/openid/v1/jwks"),
    (HOST, "/clusters/prod/api/v1/secrets"),
    (EDGE_HOST, "/clusters/prod/openid/v1/jwks"),  # another issuer's path on this host
    (EDGE_HOST, "/api/v1/secrets"),
]


def warm(f, clusters) -> None:
    for name in clusters:
        for doc in (DISCOVERY, JWKS):
            poll(lambda: f.get(public_path(name, doc), host=host_of(name)).status == 200, 10,
                 what=f"{name} {doc}")


def test_each_client_gets_its_own_clusters_documents(fleet):
    f, clusters = fleet()
    warm(f, clusters)
    kids = set()
    for name, c in clusters.items():
        host = host_of(name)
        r = f.get(public_path(name, DISCOVERY), host=host.upper() + ":443")
        assert r.status == 200, (name, r.status, r.text)
        assert_no_upstream_headers(r)
        served = json.loads(r.body)
        upstream = json.loads(c.fake.discovery_body())
        assert served["issuer"] == c.issuer
        assert served["jwks_uri"] == f"{c.issuer}/openid/v1/jwks", "the filter's own key set URL"
        assert {k: v for k, v in served.items() if k != "jwks_uri"} == \
            {k: v for k, v in upstream.items() if k != "jwks_uri"}
        r = f.get(public_path(name, JWKS), host=host)
        assert r.status == 200 and r.body == c.fake.jwks_body(), (name, r.text[:200])
        assert r.header("content-type") == "application/jwk-set+json"
        kids |= {k["kid"] for k in json.loads(r.body)["keys"]}
        # the API server saw only its root paths, with its own credential
        for rec in c.fake.requests:
            assert rec.method == "GET" and rec.path in DOCS, rec
            assert rec.header_all("authorization") == [f"Bearer {c.token}"], (name, rec.headers)
            assert rec.header("host") == CLUSTERS[name][2], rec.headers
    assert len(kids) == 3, "three clusters, three different keys"
    # one start line naming each issuer, never a token
    log = f.envoy.log_text()
    started = [ln for ln in plugin_log_lines(log) if " started: issuers " in ln]
    assert len(started) == 1, started
    for name, c in clusters.items():
        assert f"{name} {c.issuer} (cluster \"{CLUSTERS[name][1]}\"" in started[0], started
        assert c.token not in log


def test_other_paths_methods_and_hosts(fleet, backend):
    f, clusters = fleet(backend_port=backend.port)
    warm(f, clusters)
    before = {name: c.fake.count() for name, c in clusters.items()}
    for host, path in NOT_FOUND:
        r = f.get(path, host=host)
        assert (r.status, r.body) == (404, ERROR_BODIES[404]), (host, path, r.status, r.text)
        assert r.header("server") == "envoy"
    for method in ("POST", "DELETE", "PUT"):
        r = f.request(public_path("dev", JWKS), method=method, body=b"{}")
        assert (r.status, r.header("allow")) == (405, "GET, HEAD"), (method, r.status)
    r = f.request(public_path("prod", DISCOVERY), method="HEAD")
    assert r.status == 200 and r.body == b""
    # another host: through the filter untouched, to the application
    backend.reset()
    r = f.get(public_path("prod", JWKS), host=OTHER_HOST)
    assert (r.status, r.body) == (200, BACKEND_BODY)
    assert [rec.path for rec in backend.requests] == [public_path("prod", JWKS)]
    assert {name: c.fake.count() for name, c in clusters.items()} == before, \
        "no client request reached an API server"
    assert f.metric(f"{P}.requests.not_found") == len(NOT_FOUND)
    assert f.metric(f"{P}.requests.method_not_allowed") == 3


def test_metrics_carry_the_issuers_name(fleet):
    f, clusters = fleet()
    warm(f, clusters)
    for _ in range(3):
        assert f.get(public_path("prod", JWKS)).status == 200
    assert f.get(public_path("dev", DISCOVERY)).status == 200
    stats = {k[len("wasmcustom."):]: v for k, v in f.envoy.stats("wasmcustom").items()}
    # warm() counted one 200 per document and issuer
    assert stats[f"{P}.prod.requests.jwks.fresh"] == 4
    assert stats[f"{P}.dev.requests.discovery.fresh"] == 2
    assert stats[f"{P}.edge.requests.jwks.fresh"] == 1
    for name in clusters:
        for doc in ("discovery", "jwks"):
            assert stats[f"{P}.{name}.upstream.{doc}.ok"] == 1, (name, doc)
            assert stats[f"{P}.{name}.upstream.{doc}.issuer_mismatch"] == 0
            assert f"{P}.{name}.copy.{doc}.age_s" in stats
    unnamed = [k for k in stats if k.startswith(f"{P}.requests.") and k.count(".") == 3]
    assert unnamed == [], "no per-document metric without an issuer's name in this form"
    prometheus = f.envoy.prometheus()
    assert f"{P}_dev_upstream_jwks_ok" in prometheus
    assert f"{P}_requests_not_found" in prometheus
