"""`jwks_uri` as relying parties see it, with the API server's `--service-account-jwks-uri` set
and unset, and the filter's `jwks_uri` rewrite on and off. Unset, the API server advertises its
own address (`https://<advertise-address>:<port>/openid/v1/jwks`), private in a real cluster:
then the rewrite is what makes the document usable."""

from __future__ import annotations

import json

import pytest

from harness.constants import DISCOVERY

PUBLIC = "https://oidc.example.com/openid/v1/jwks"
REWRITTEN = "https://keys.example.net/cluster-a/jwks"


def served(make_stack, kube, account, rewrite: str | None) -> dict:
    ns, name = account(kube)
    s = make_stack("pod-static-token.yaml", fake=kube, token=kube.token(ns, name),
                   plugin_changes={"jwks_uri": rewrite})
    r = s.get(DISCOVERY)
    assert r.status == 200, r.raw()
    return json.loads(r.body)


@pytest.mark.parametrize("rewrite", [None, REWRITTEN], ids=["no-rewrite", "rewrite"])
def test_flag_unset(kube, account, make_stack, rewrite):
    doc = served(make_stack, kube, account, rewrite)
    assert doc["jwks_uri"] == (rewrite or f"https://127.0.0.1:{kube.port}/openid/v1/jwks")
    assert doc["issuer"] == kube.issuer


def test_flag_set(own_kube, account, make_stack):
    kube = own_kube(jwks_uri=PUBLIC)
    assert served(make_stack, kube, account, None)["jwks_uri"] == PUBLIC
    assert served(make_stack, kube, account, REWRITTEN)["jwks_uri"] == REWRITTEN
