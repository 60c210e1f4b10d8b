"""failOpen: when Envoy Gateway cannot fetch the image (here: a tag the registry does not have),
the chart's HTTPRoute runs without the filter. What remains is the hardened proxy the chart
builds: exactly the two document paths, GET only, to the API server with the route's token
(Authorization overwritten), no client credential, cookie or impersonation header upstream, and
none of the API server's identifying headers back. Envoy Gateway reports the policy not Accepted."""

from __future__ import annotations

import pytest

import xds
from names import NAMESPACE, ROUTE, TOKEN
from harness.checks import UPSTREAM_ONLY
from harness.constants import DOCS, HOST, JWKS
from test_serving import condition

EG_ENV = "fail-open"
HOSTILE = [("Authorization", "Bearer client-token"), ("Cookie", "session=client"),
           ("Impersonate-User", "system:admin"), ("Impersonate-Group", "system:masters"),
           ("Impersonate-Uid", "0")]


@pytest.fixture
def env(envs, start_eg, fake, tls_image):
    missing = tls_image["url"].rsplit(":", 1)[0] + ":missing"
    return envs.get(EG_ENV, lambda: start_eg(
        {"hosts": [HOST], "image": {"url": missing, "sha256": ""}},
        api_server=fake.port,
        secrets={(NAMESPACE, f"{ROUTE}-credential"): {"credential": f"Bearer {TOKEN}"}},
        fakes={"local": fake}, wait=(HOST, JWKS)))


def test_envoy_gateway_reports_the_policy_and_keeps_the_route(env):
    st = env.eg.statuses()
    (anc,) = st[("EnvoyExtensionPolicy", f"{NAMESPACE}/{ROUTE}")]["ancestors"]
    c = condition(anc, "Accepted")
    assert c["status"] == "False" and "missing" in c["message"], c
    (parent,) = st[("HTTPRoute", f"{NAMESPACE}/{ROUTE}")]["parents"]
    for ctype in ("Accepted", "ResolvedRefs"):
        assert condition(parent, ctype)["status"] == "True", parent
    assert xds.wasm_filters(env.eg.config_dump()) == [], "the filter is in the listener after all"


def test_the_documents_are_proxied_hardened(env, fake):
    for path in DOCS:
        fake.reset()
        r = env.get(path, HOST, headers=HOSTILE)
        assert r.status == 200, (path, r.status, r.body[:200])
        assert r.body == fake.document(path)[0]
        names = r.header_names()
        for h in UPSTREAM_ONLY + ("warning",):
            assert h not in names, (h, r.headers)
        (rec,) = fake.requests
        assert rec.path == path and rec.method == "GET"
        assert rec.header_all("authorization") == [f"Bearer {TOKEN}"], rec.headers
        for name, _ in HOSTILE[1:]:
            assert rec.header(name) is None, (name, rec.headers)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
def test_other_methods_are_not_routed(env, fake, method):
    fake.reset()
    r = env.get(JWKS, HOST, method=method, body=b"{}" if method in ("POST", "PUT", "PATCH") else None)
    assert r.status == 404, (method, r.status)
    assert fake.count() == 0


def test_other_paths_are_not_routed(env, fake):
    fake.reset()
    for path in ["/api/v1/secrets", "/apis", "/openid/v1/jwks/", "/version"]:
        assert env.get(path, HOST).status == 404, path
    assert fake.count() == 0
