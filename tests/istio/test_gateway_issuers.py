"""The chart's `issuers` form on what istiod produced, in real Envoy 1.40, against three fake API
servers, each with its own CA, token and issuer: this cluster's (static token, file-root: CA),
another's at a fixed address (ServiceEntry STATIC, rotating token through credential_injector,
CA Secret by credentialName) and another's reached by DNS (localhost; static token; SNI and SAN
kubernetes.default.svc). Each issuer's clients get their own cluster's documents; an API server
not signed by its cluster's CA is never served while the others are."""

from __future__ import annotations

import json

import pytest

from harness.checks import assert_generic_error, poll
from harness.constants import DISCOVERY, DOCS, JWKS
from harness.stack import new_token
from istio import matrix
from istio.gateway import ISTIOD_SERVER, Gateway, issuer_servers

URLS = {"local": ("oidc.example.com", "/clusters/local"), "prod": ("oidc.example.com", "/clusters/prod"),
        "edge": ("edge-oidc.example.com", "")}


@pytest.fixture
def servers(tmp_path):
    """Fresh per test (conftest's are per module): these tests count each server's requests."""
    with issuer_servers(tmp_path) as made:
        yield made



def start(make_gateway, case_id, servers, **kw) -> Gateway:
    return make_gateway(matrix.BY_ID[case_id], servers, **kw).start()


@pytest.mark.needs_header_value_prefix  # prod's rotating token
@pytest.mark.parametrize("case_id", ["issuers", "issuers-filtered-clusters", "issuers-gateway-api"])
def test_each_issuer_gets_its_own_clusters_documents(case_id, make_gateway, servers):
    g = start(make_gateway, case_id, servers, values={"plugin": {"refreshIntervalS": 5}})
    (wp,) = [o for o in g.objects if o["kind"] == "WasmPlugin"]
    entries = {e["name"]: e for e in wp["spec"]["pluginConfig"]["issuers"]}
    for name, (host, prefix) in URLS.items():
        c = servers[name]
        r = g.get(prefix + DISCOVERY, host=host)
        assert r.status == 200, (name, r.status, r.body[:200])
        doc = json.loads(r.body)
        assert (doc["issuer"], doc["jwks_uri"]) == (c.issuer, f"https://{host}{prefix}{JWKS}")
        r = g.get(prefix + JWKS, host=host)
        assert r.status == 200 and r.body == c.fake.jwks_body(), name
        # its own API server, with its own token and the entry's authority
        assert {rec.path for rec in c.fake.history} == set(DOCS), name
        for rec in c.fake.history:
            assert rec.header_all("authorization") == [f"Bearer {c.token}"], name
            assert rec.header("host") == entries[name]["authority"], name
    # the issuers' hosts answer nothing else
    assert_generic_error(g.get("/clusters/dev" + JWKS, host="oidc.example.com"), 404, server=ISTIOD_SERVER)
    assert_generic_error(g.get(JWKS, host="oidc.example.com"), 404, server=ISTIOD_SERVER)
    # prod's rotating token: a re-issued one is used without a restart
    prod = servers["prod"]
    new = new_token()
    g.token_dirs["prod"].write_token(new)  # the kubelet's ..data swap
    prod.fake.set_token(new)
    seen = len(prod.fake.history)
    poll(lambda: len(prod.fake.history) > seen, 12, what="prod's next refresh")
    for rec in prod.fake.history[seen:]:
        assert rec.header_all("authorization") == [f"Bearer {new}"]


@pytest.mark.needs_header_value_prefix  # prod's rotating token: without it, no prod cluster to refuse
def test_an_api_server_not_signed_by_its_clusters_ca_is_never_served_and_the_others_are(
        make_gateway, servers):
    # prod's CA Secret holds edge's CA
    g = start(make_gateway, "issuers", servers, ca_of={"prod": "edge"},
              values={"plugin": {"timeoutMs": 1000}})
    assert_generic_error(g.get("/clusters/prod" + JWKS, host="oidc.example.com"), 503, server=ISTIOD_SERVER)
    assert poll(lambda: servers["prod"].fake.handshake_failures, 5, what="a refused handshake")
    assert servers["prod"].fake.count() == 0
    assert g.get("/clusters/local" + JWKS, host="oidc.example.com").status == 200
    assert g.get(JWKS, host="edge-oidc.example.com").status == 200
