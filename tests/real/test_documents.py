"""Both documents served from a real kube-apiserver through real Envoy, in both token modes:
a TokenRequest token in the VM environment (envoy/pod-static-token.yaml), and the token file
read by credential_injector (envoy/pod.yaml), swapped kubelet-style to another account's token.
Client HEAD and If-None-Match are answered by the filter: the API server itself refuses HEAD
(RBAC sees the verb `head`) and has no ETag."""

from __future__ import annotations

import json

from harness.checks import assert_served_as_the_api_server_serves, poll
from harness.constants import DISCOVERY, DOCS, JWKS, MEDIA_TYPES

PUBLIC_JWKS_URI = "https://oidc.example.com/openid/v1/jwks"


def upstream(kube, path: str, token: str | None) -> bytes:
    """The API server's own answer, with ``token`` or (None) with no credential at all."""
    if token is None:
        status, body = kube.anonymous_get(path)
    else:
        status, _, body = kube.request("GET", path, token=token, headers={"Accept": MEDIA_TYPES[path]})
    assert status == 200, body
    return body


def assert_serves_the_api_servers_documents(s, kube, token: str | None) -> None:
    for path in DOCS:
        r = s.get(path)
        assert r.header("cache-control") == "public, max-age=3600"
        # the shipped configs publish the public jwks_uri; every other member is the API server's
        assert_served_as_the_api_server_serves(r, path, upstream(kube, path, token), PUBLIC_JWKS_URI)
        if path == DISCOVERY:
            assert json.loads(r.body)["issuer"] == kube.issuer
    for doc in ("discovery", "jwks"):
        assert s.metric(f"kube_oidc_discovery.upstream.{doc}.ok") >= 1
        assert s.metric(f"kube_oidc_discovery.upstream.{doc}.http_error") == 0


def test_env_token_from_the_token_request_api(kube, account, make_stack):
    ns, name = account(kube)
    token = kube.token(ns, name)
    s = make_stack("pod-static-token.yaml", fake=kube, token=token)
    assert_serves_the_api_servers_documents(s, kube, token)


def test_injected_token_follows_a_kubelet_style_swap(kube, account, make_stack):
    ns, first = account(kube, "first")
    _, second = account(kube, "second")
    s = make_stack("pod.yaml", fake=kube, token=kube.token(ns, first),
                   plugin_changes={"refresh_interval_s": 5})
    assert_serves_the_api_servers_documents(s, kube, s.token)
    # swap to the second account's token, then make the first one worthless: only the new
    # token can make the next refreshes succeed
    s.tokens.write_token(kube.token(ns, second))
    kube.delete_service_account(ns, first)
    oks = s.metric("kube_oidc_discovery.upstream.jwks.ok")
    poll(lambda: s.metric("kube_oidc_discovery.upstream.jwks.ok") > oks, 15,
         what="a refresh with the swapped token")
    assert s.metric("kube_oidc_discovery.upstream.jwks.http_error") == 0
    assert s.metric("kube_oidc_discovery.upstream.discovery.http_error") == 0


def test_head_and_if_none_match_are_answered_by_the_filter(kube, account, make_stack):
    ns, name = account(kube)
    token = kube.token(ns, name)
    assert kube.request("HEAD", JWKS, token=token)[0] == 403  # what a relayed HEAD would get
    s = make_stack("pod-static-token.yaml", fake=kube, token=token)
    get = s.get(JWKS)
    assert get.status == 200 and get.header("etag")
    head = s.head(JWKS)
    assert head.status == 200 and head.body == b""
    assert head.header("etag") == get.header("etag")
    assert head.header("content-length") == str(len(get.body))
    r = s.get(JWKS, headers={"if-none-match": get.header("etag")})
    assert r.status == 304 and r.body == b""
    assert s.metric("kube_oidc_discovery.requests.jwks.not_modified") == 1
    assert s.metric("kube_oidc_discovery.upstream.jwks.http_error") == 0
