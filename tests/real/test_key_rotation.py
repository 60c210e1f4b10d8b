"""A service-account key added to the API server (restarted with a second
`--service-account-key-file`, as a key rotation starts) reaches clients within one refresh
interval of the API server being back."""

from __future__ import annotations

import base64
import hashlib
import json
import time

from cryptography.hazmat.primitives import serialization

from harness.checks import poll
from harness.constants import FASTEST_REFRESH_S, JWKS



def kid(public_pem: bytes) -> str:
    # the API server's key id: base64url(SHA-256(PKIX DER of the public key))
    der = serialization.load_pem_public_key(public_pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def served_kids(s) -> list[str]:
    r = s.get(JWKS)
    assert r.status == 200, r.raw()
    return sorted(k["kid"] for k in json.loads(r.body)["keys"])


def test_added_key_reaches_clients_within_one_refresh_interval(own_kube, account, make_stack):
    kube = own_kube()
    ns, name = account(kube)
    s = make_stack("pod-static-token.yaml", fake=kube, token=kube.token(ns, name),
                   plugin_changes={"refresh_interval_s": FASTEST_REFRESH_S})
    first = kid(kube.verification_keys[0].read_bytes())
    assert served_kids(s) == [first]

    added = kid(kube.add_verification_key().read_bytes())
    kube.restart_apiserver()
    back = time.monotonic()
    poll(lambda: served_kids(s) == sorted([first, added]), FASTEST_REFRESH_S + 1.5,
         what="the added key in the served JWKS")
    assert time.monotonic() - back <= FASTEST_REFRESH_S + 1.5
