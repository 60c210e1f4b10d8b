"""istiod's output for the chart in token mode none (matrix case `classic-no-token`: no token
Secret, no env var, no credential EnvoyFilter), in Envoy, against a real kube-apiserver v1.37.2
whose AuthenticationConfiguration makes the two document paths anonymous (KEP-4633; harness.kube's
anonymous_discovery, the file NOTES.txt prints): with the chart's binding of the discovery role to
system:unauthenticated both documents are served, nothing in the gateway's config carries a
credential; without it the API server's 403 is the gateway's generic 502, the 403 in the filter's
warn line."""

from __future__ import annotations

import json

from harness.checks import assert_generic_error, assert_served_as_the_api_server_serves, leak_words, poll
from harness.config import CREDENTIAL_INJECTOR
from harness.constants import DOC_NAMES, DOCS, JWKS
from istio import matrix
from istio.gateway import ISTIOD_SERVER, RealApiServer

CASE = matrix.BY_ID["classic-no-token"]
HOST = "oidc.example.com"
API_CLUSTER = "outbound|443||kubernetes.default.svc.cluster.local"


def start(make_gateway, kube, image, **kw):
    g = make_gateway(CASE, {"local": RealApiServer(kube)}, image=image, **kw)
    g.start()
    return g


def test_the_gateway_serves_both_documents_without_a_credential(anonymous_kube, make_gateway, image):
    kube = anonymous_kube
    kube.bind_discovery_to_unauthenticated()
    poll(lambda: kube.anonymous_get(JWKS)[0] == 200, 10, what="RBAC to see the binding")
    g = start(make_gateway, kube, image)
    # nothing of a credential in what istiod and pilot-agent sent the gateway
    assert g.static_tokens() == {}
    (ext,) = g.result.agent_ecds
    assert "token_env" not in json.loads(ext["typed_config"]["config"]["configuration"]["value"])
    assert "environment_variables" not in ext["typed_config"]["config"]["vm_config"]
    assert CREDENTIAL_INJECTOR not in json.dumps(g.result.resource("clusters", API_CLUSTER))
    for path in DOCS:
        status, real = kube.anonymous_get(path)
        assert status == 200
        assert_served_as_the_api_server_serves(g.get(path, host=HOST), path, real, f"https://{HOST}{JWKS}")
    assert_generic_error(g.get("/api/v1/secrets", host=HOST), 404, server=ISTIOD_SERVER)


def test_without_the_binding_the_api_servers_403_is_the_gateways_502(anonymous_kube, make_gateway, image):
    kube = anonymous_kube
    kube.unbind_discovery_from_unauthenticated()
    poll(lambda: kube.anonymous_get(JWKS)[0] == 403, 10, what="RBAC to see the binding gone")
    g = start(make_gateway, kube, image)
    forbidden = [w for w in leak_words(kube, token="") if w]  # no token to leak
    for path in DOCS:
        assert_generic_error(g.get(path, host=HOST), 502, forbidden, server=ISTIOD_SERVER)
    # (the filter's lines: Envoy's `wasm log` prefix; istiod's plugin has no name of its own there)
    for doc in DOC_NAMES.values():
        poll(lambda: [ln for ln in g.envoy.log_text().splitlines() if "wasm log" in ln and "[warning]" in ln
                      and doc in ln and "the API server answered 403" in ln],
             5, what=f"the warn line quoting the 403 for {doc}")
