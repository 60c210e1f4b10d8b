"""Requests for every other host never enter the filter. Every shipped Envoy config (envoy/*.yaml)
lists the Wasm filter `disabled: true` and enables it only on the OIDC host's virtual host (the
Istio chart's scoping, on istiod's own output, is tests/istio/test_gateway.py). Here, in a real
Envoy with wasm trace logging, other hosts
reach their application untouched and the VM gets no stream callback for them, while the OIDC
host is served as before (the callbacks counted there show that the log would catch the filter).

The filter records no metric for a request it lets pass, so its metrics cannot tell whether such a
request entered it; the trace log can."""

from __future__ import annotations

import re

import pytest

from harness.checks import assert_generic_error, is_strong_etag, poll
from harness.issuers import host_of, public_path
from harness import config as cfgmod
from harness.constants import DOCS, HOST, JWKS, OTHER_HOST

OTHER_HOSTS = [OTHER_HOST, "oidc.example.com.evil", "xoidc.example.com", "example.com"]
# Envoy's trace line for the first proxy-wasm callback of every HTTP stream that enters the
# filter (wasm_vm.cc: [host->vm]); the filter answers or lets pass right there.
STREAM_CALLBACK = re.compile(r"\[host->vm\] proxy_on_request_headers\(")
# local.yaml has no application cluster: its default route answers this itself.
LOCAL_DEFAULT_BODY = b"passed through to the default route\n"


def callbacks(stack) -> int:
    return len(STREAM_CALLBACK.findall(stack.envoy.log_text()))


def start(make_stack, backend, config: str, scoped: bool = True):
    """The config in Envoy with wasm trace logging. ``scoped=False``: the filter in every
    request's path (as before this scoping)."""
    has_app = config != "local.yaml"
    s = make_stack(config, start=False, wasm_trace=True, backend_port=backend.port if has_app else None)
    if not scoped:
        cfgmod.unscoped(s.cfg)
    cfgmod.dump(s.cfg, s.envoy.config_path)
    s.start()
    # the VM runs (prefetch, refresh) whether or not the filter is in a request's path
    poll(s.envoy.prefetched, 10, what="the prefetch")
    return s, has_app


def pass_other_hosts(s, backend, has_app: bool) -> None:
    body = b"payload for the application"
    upstream = s.fake.count()
    for host in OTHER_HOSTS:
        backend.reset()
        r = s.request(JWKS + "?q=1", method="POST", host=host, body=body,
                      headers=[("x-app-header", "kept"), ("authorization", "Bearer app-user-token")])
        assert r.status == 200, (host, r.status, r.body[:200])
        if not has_app:
            assert r.body == LOCAL_DEFAULT_BODY
            continue
        assert r.body == b"hello from the application backend\n" and r.header("x-backend") == "app"
        rec = backend.last()
        assert rec is not None, "the request never reached the backend"
        assert (rec.method, rec.path, rec.body) == ("POST", JWKS + "?q=1", body)
        assert rec.header("host") == host
        assert rec.header("x-app-header") == "kept"
        assert rec.header("authorization") == "Bearer app-user-token"
    assert s.fake.count() == upstream


def serve_oidc_host(s, backend) -> int:
    """The OIDC host as before; returns the requests made."""
    backend.reset()
    n = 0
    for path in DOCS:
        r = s.get(path, host=HOST)
        n += 1
        assert r.status == 200 and is_strong_etag(r.header("etag")), (path, r.status, r.body[:200])
        assert r.header("content-type") and r.header("x-content-type-options") == "nosniff"
    r = s.get(JWKS, host=HOST)
    assert r.body == s.fake.jwks_body()
    assert s.get(JWKS, host=HOST, headers={"if-none-match": r.header("etag")}).status == 304
    assert s.head(JWKS, host=HOST).status == 200
    for host in ("OIDC.Example.COM", "oidc.example.com:8443"):
        assert s.get(JWKS, host=host).body == s.fake.jwks_body()
    assert_generic_error(s.get("/api/v1/secrets", host=HOST), 404)
    r = s.request(JWKS, method="POST", host=HOST, body=b"{}")
    assert r.status == 405 and r.header("allow") == "GET, HEAD"
    n += 7
    assert backend.last() is None
    assert {rec.path for rec in s.fake.history} <= set(DOCS)
    return n


@pytest.mark.parametrize("config", ["pod.yaml", "pod-static-token.yaml", "local.yaml"])
def test_other_hosts_never_enter_the_filter_and_the_oidc_host_is_served(make_stack, backend, config):
    s, has_app = start(make_stack, backend, config)
    assert callbacks(s) == 0
    pass_other_hosts(s, backend, has_app)
    n = serve_oidc_host(s, backend)
    # one callback per request (on_request_headers answers it), written after those of the
    # other hosts' requests would have been
    poll(lambda: callbacks(s) >= n, 5, what="the OIDC host's callbacks in the trace log")
    assert callbacks(s) == n


def test_unscoped_the_filter_sees_every_other_host(make_stack, backend):
    # The same check with the filter in every request's path: each other host's request enters it.
    s, has_app = start(make_stack, backend, "pod.yaml", scoped=False)
    pass_other_hosts(s, backend, has_app)
    poll(lambda: callbacks(s) >= len(OTHER_HOSTS), 5, what="the other hosts' callbacks")
    assert callbacks(s) == len(OTHER_HOSTS)


def test_multi_cluster_other_hosts_never_enter_the_filter(fleet, backend):
    # envoy/multi-cluster.yaml: the same scoping, with the issuers' hosts on the filter's host
    f, clusters = fleet(backend_port=backend.port, wasm_trace=True)
    for host in OTHER_HOSTS:
        r = f.request(JWKS, host=host)
        assert r.status == 200 and r.header("x-backend") == "app", (host, r.status)
    assert callbacks(f) == 0
    served = 0
    for name in clusters:
        for doc in DOCS:
            r = f.get(public_path(name, doc), host=host_of(name))
            assert r.status == 200, (name, doc, r.status)
            served += 1
    poll(lambda: callbacks(f) >= served, 5, what="the issuers' callbacks in the trace log")
    assert callbacks(f) == served
