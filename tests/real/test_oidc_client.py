"""A real OIDC client (PyJWT) verifies a real service-account token, from the TokenRequest API,
with what the filter serves: the issuer of the served discovery document and the key set at its
`jwks_uri` (fetched through Envoy, the public host given as Host)."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import jwt
import pytest

from harness.constants import AUDIENCE, DISCOVERY


def test_token_verifies_against_the_served_issuer_and_keys(kube, account, make_stack):
    ns, name = account(kube)
    s = make_stack("pod-static-token.yaml", fake=kube, token=kube.token(ns, name))
    token = kube.token(ns, name, audiences=[AUDIENCE], seconds=600)

    discovery = json.loads(s.get(DISCOVERY).body)
    jwks_uri = urlsplit(discovery["jwks_uri"])
    keys = jwt.PyJWKClient(f"http://127.0.0.1:{s.port}{jwks_uri.path}",
                           headers={"Host": jwks_uri.netloc}, cache_jwk_set=False)
    key = keys.get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key, algorithms=discovery["id_token_signing_alg_values_supported"],
                        audience=AUDIENCE, issuer=discovery["issuer"])
    assert claims["sub"] == f"system:serviceaccount:{ns}:{name}"
    assert claims["iss"] == kube.issuer

    # and the same client refuses what it must
    with pytest.raises(jwt.InvalidIssuerError):
        jwt.decode(token, key, algorithms=["RS256"], audience=AUDIENCE,
                   issuer=discovery["issuer"] + "/")
    head, payload, sig = token.split(".")
    forged = json.loads(jwt.utils.base64url_decode(payload))
    forged["sub"] = f"system:serviceaccount:{ns}:admin"
    forged_token = ".".join([head, jwt.utils.base64url_encode(json.dumps(forged).encode()).decode(), sig])
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(forged_token, key, algorithms=["RS256"], audience=AUDIENCE,
                   issuer=discovery["issuer"])
