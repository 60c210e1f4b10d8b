"""The chart's `issuers` form in the Envoy that Envoy Gateway drives: one HTTPRoute per issuer,
each with one backend, its API server, a Backend of the release's own. This cluster's (by the
`kubernetes` Service's DNS name, the Envoy pods' projected token) and another cluster's (its own
CA ConfigMap and token Secret) are both served, each from its own API server with its own token
under its issuer's path; an API server whose certificate has
the wrong CA or the wrong SAN is never sent a request (fail closed: 503)."""

from __future__ import annotations

import pytest

import xds
from names import NAMESPACE, ROUTE, TOKEN
from harness.checks import ERROR_BODIES, UPSTREAM_ONLY
from harness.constants import DISCOVERY, JWKS
from harness import pki as _pki
from harness.fake_apiserver import FakeApiServer
from test_serving import condition

EG_ENV = "issuers"
HOST = "oidc.example.com"
ISSUER = {n: f"https://{HOST}/clusters/{n}" for n in ("local", "prod", "rogue", "wrongsan")}


@pytest.fixture(scope="module")
def fakes(pki, tmp_path_factory):
    other = _pki.generate(tmp_path_factory.mktemp("prod-pki"))
    certs = {"local": (pki, "server"), "prod": (other, "server"), "rogue": (pki, "rogue"), "wrongsan": (pki, "wrong-san")}
    out = {}
    try:
        for name, (p, variant) in certs.items():
            token = TOKEN if name == "local" else f"token-{name}"  # local: the projected token
            out[name] = FakeApiServer(*p.pair(variant), token=token, issuer=ISSUER[name]).start()
        out["prod"].pki = other
        yield out
    finally:
        for f in out.values():
            f.stop()


@pytest.fixture
def env(envs, start_eg, fakes, pki):
    def remote(name):
        return {"name": name, "issuer": ISSUER[name],
                "apiServer": {"host": f"api.{name}.example.internal", "port": fakes[name].port,
                              "addresses": ["127.0.0.1"], "hostname": "kubernetes.default.svc"}}
    values = {"issuers": [{"name": "local", "issuer": ISSUER["local"]}] + [remote(n) for n in ("prod", "rogue", "wrongsan")]}
    secrets = {}
    configmaps = {}
    for n in ("prod", "rogue", "wrongsan"):
        secrets[(NAMESPACE, f"{ROUTE}-{n}-credential")] = {"credential": f"Bearer token-{n}"}
        ca = fakes["prod"].pki.ca_cert if n == "prod" else pki.ca_cert
        configmaps[(NAMESPACE, f"{ROUTE}-{n}-ca")] = {"ca.crt": ca.read_text()}
    return envs.get(EG_ENV, lambda: start_eg(
        values, api_server=fakes["local"].port,
        secrets=secrets, configmaps=configmaps, fakes=fakes, wait=(HOST, "/clusters/prod" + JWKS)))


def test_every_route_is_accepted_with_resolved_refs(env):
    st = env.eg.statuses()
    for name in ISSUER:
        (parent,) = st[("HTTPRoute", f"{NAMESPACE}/{ROUTE}-{name}")]["parents"]
        for ctype in ("Accepted", "ResolvedRefs"):
            assert condition(parent, ctype)["status"] == "True", (name, ctype, parent)
    for name in ISSUER:
        for anc in st[("BackendTLSPolicy", f"{NAMESPACE}/{ROUTE}-{name}")]["ancestors"]:
            assert condition(anc, "Accepted")["status"] == "True", (name, anc)
        assert condition(st[("Backend", f"{NAMESPACE}/{ROUTE}-{name}")], "Accepted")["status"] == "True"
    ancestors = st[("EnvoyExtensionPolicy", f"{NAMESPACE}/{ROUTE}")]["ancestors"]
    assert ancestors and all(condition(a, "Accepted")["status"] == "True" for a in ancestors), ancestors


def test_each_issuers_cluster_is_named_as_the_chart_says(env):
    (policy,) = env.chart("EnvoyExtensionPolicy")
    clusters = xds.clusters(env.eg.config_dump())
    for entry in policy["spec"]["wasm"][0]["config"]["issuers"]:
        # a filter on the backendRef (inject) makes a cluster per backend; the projected token's
        # patch is on the rule's
        suffix = "" if entry["name"] == "local" else "/backend/0"
        assert entry["cluster"] == f"httproute/{NAMESPACE}/{ROUTE}-{entry['name']}/rule/0{suffix}"
        assert entry["cluster"] in clusters, (entry["cluster"], sorted(clusters))


@pytest.mark.parametrize("name", ["local", "prod"])
def test_two_api_servers_each_serve_their_issuer(env, fakes, name):
    fake = fakes[name]
    d = env.get(f"/clusters/{name}{DISCOVERY}", HOST)
    assert d.status == 200, d.body[:300]
    doc = d.text
    assert f'"issuer":"{ISSUER[name]}"' in doc
    assert f'"jwks_uri":"{ISSUER[name]}/openid/v1/jwks"' in doc
    k = env.get(f"/clusters/{name}{JWKS}", HOST)
    assert k.status == 200 and k.body == fake.jwks_body()
    for rec in [r for r in fake.history if r.path in (DISCOVERY, JWKS)]:
            assert rec.header_all("authorization") == [f"Bearer {fake.token}"], rec.headers


@pytest.mark.parametrize("name", ["rogue", "wrongsan"])
def test_a_wrong_ca_or_san_fails_closed(env, fakes, name):
    r = env.get(f"/clusters/{name}{JWKS}", HOST)
    # the filter's generic 503 (Envoy Gateway's listener sends no `server` header, so not
    # harness.checks.assert_generic_error's check of it)
    assert (r.status, r.body) == (503, ERROR_BODIES[503]), r
    assert not set(UPSTREAM_ONLY) & r.header_names(), r.headers
    assert fakes[name].count() == 0 and fakes[name].handshake_failures > 0
