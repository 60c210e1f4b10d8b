"""Two real API servers with different `--service-account-issuer` values (path-prefixed, on one
public host) behind one Envoy running envoy/multi-cluster.yaml as shipped: each its own CA and
serving certificate, reached with its own credential (prod: the filter's token from the VM
environment; dev: the cluster's credential_injector). A real OIDC client (PyJWT) verifies a
TokenRequest token of each cluster with what the filter serves for that cluster's issuer, and
not with the other's."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import jwt
import pytest

from harness import pki as pkimod
from harness.constants import AUDIENCE, DEV_ISSUER, DISCOVERY, PROD_ISSUER
from harness.fleet import Fleet, Upstream

# cluster -> (issuer, the name in its API server's certificate, as the shipped config checks)
CLUSTERS = {"prod-api": (PROD_ISSUER, "api.prod.example.internal"),
            "dev-api": (DEV_ISSUER, "api.dev.example.internal")}


def served(fleet: Fleet, issuer: str) -> tuple[dict, jwt.PyJWKClient]:
    """The discovery document the filter serves for an issuer, and a client of its key set."""
    path = urlsplit(issuer).path + DISCOVERY
    discovery = json.loads(fleet.get(path).body)
    jwks_uri = urlsplit(discovery["jwks_uri"])
    keys = jwt.PyJWKClient(f"http://127.0.0.1:{fleet.port}{jwks_uri.path}",
                           headers={"Host": jwks_uri.netloc}, cache_jwk_set=False)
    return discovery, keys


def verify(token: str, discovery: dict, keys: jwt.PyJWKClient) -> dict:
    return jwt.decode(token, keys.get_signing_key_from_jwt(token), audience=AUDIENCE,
                      algorithms=discovery["id_token_signing_alg_values_supported"],
                      issuer=discovery["issuer"])


def test_each_clusters_token_verifies_against_its_own_issuer_only(own_kube, account, wasm, tmp_path):
    kubes, upstreams, tokens = {}, {}, {}
    for cluster, (issuer, cert_name) in CLUSTERS.items():
        pki = pkimod.generate(tmp_path / f"pki-{cluster}", [cert_name])
        kube = own_kube(pki=pki, issuer=issuer)
        ns, name = account(kube)
        kubes[cluster] = kube
        upstreams[cluster] = Upstream(kube, pki.ca_cert, kube.token(ns, name))
        tokens[cluster] = (kube.token(ns, name, audiences=[AUDIENCE], seconds=600), ns, name)
    with Fleet(tmp_path / "fleet", wasm, upstreams) as fleet:
        clients = {c: served(fleet, issuer) for c, (issuer, _) in CLUSTERS.items()}
        for cluster, (issuer, _) in CLUSTERS.items():
            discovery, keys = clients[cluster]
            assert discovery["issuer"] == issuer == kubes[cluster].issuer
            assert discovery["jwks_uri"] == f"{issuer}/openid/v1/jwks"
            token, ns, name = tokens[cluster]
            claims = verify(token, discovery, keys)
            assert claims["iss"] == issuer
            assert claims["sub"] == f"system:serviceaccount:{ns}:{name}"

        # and never with the other cluster's issuer and keys
        for cluster, other in (("prod-api", "dev-api"), ("dev-api", "prod-api")):
            token = tokens[cluster][0]
            discovery, keys = clients[other]
            with pytest.raises(jwt.PyJWKClientError):  # no key of the other set signed it
                keys.get_signing_key_from_jwt(token)
            other_key = keys.get_signing_keys()[0]
            with pytest.raises(jwt.InvalidSignatureError):
                jwt.decode(token, other_key, algorithms=["RS256"], audience=AUDIENCE,
                           issuer=discovery["issuer"])
            own_key = clients[cluster][1].get_signing_key_from_jwt(token)
            with pytest.raises(jwt.InvalidIssuerError):
                jwt.decode(token, own_key, algorithms=["RS256"], audience=AUDIENCE,
                           issuer=discovery["issuer"])
        for cluster in CLUSTERS:
            name = cluster.removesuffix("-api")
            assert fleet.metric(f"kube_oidc_discovery.{name}.upstream.jwks.ok") >= 1
            assert fleet.metric(f"kube_oidc_discovery.{name}.upstream.discovery.issuer_mismatch") == 0
