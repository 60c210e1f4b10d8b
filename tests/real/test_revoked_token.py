"""The filter's service account deleted: the API server answers 401 to its token. Nothing of
that answer is stored; the last good copy keeps being served."""

from __future__ import annotations

import time

from harness.checks import poll
from harness.constants import FASTEST_REFRESH_S, JWKS



def test_401_upstream_keeps_the_last_good_copy(kube, account, make_stack):
    ns, name = account(kube)
    s = make_stack("pod-static-token.yaml", fake=kube, token=kube.token(ns, name),
                   plugin_changes={"refresh_interval_s": FASTEST_REFRESH_S})
    good = s.get(JWKS)
    assert good.status == 200

    kube.delete_service_account(ns, name)
    # the authenticator sees the deletion through its informer, a moment later
    poll(lambda: kube.request("GET", JWKS, token=s.token)[0] == 401, 10, what="the token refused")
    ok = s.metric("kube_oidc_discovery.upstream.jwks.ok")
    before = s.get(JWKS)
    poll(lambda: s.metric("kube_oidc_discovery.upstream.jwks.http_error") >= 1, FASTEST_REFRESH_S + 3,
         what="a refused refresh")
    # Envoy writes its log asynchronously: the warn line may follow the metric
    poll(lambda: "the API server answered 401" in s.envoy.log_text(), 5, what="the warn line")
    time.sleep(1.1)  # so that the age header of the same copy has grown
    r = s.get(JWKS)
    assert r.status == 200
    assert r.body == good.body and r.header("etag") == good.header("etag")
    # the same copy, older: nothing was stored since the token was refused
    assert s.metric("kube_oidc_discovery.upstream.jwks.ok") == ok
    assert int(r.header("age")) > int(before.header("age"))
