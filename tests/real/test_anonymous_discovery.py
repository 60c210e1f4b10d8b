"""No token at all (docs/configuration.md, "No token: anonymous discovery") against a real
kube-apiserver v1.37.2 whose AuthenticationConfiguration makes the two document paths, and only
those, anonymous (KEP-4633; harness.kube's anonymous_discovery):

- envoy/pod-anonymous.yaml serves both documents, sending no credential;
- without the binding of the discovery role to system:unauthenticated the API server answers
  403, which the filter relays as its generic 502 with the 403 in its warn line; with the binding
  back, the next retry serves;
- every other path stays 401 without a credential; the file cannot stand beside --anonymous-auth
  (the API server refuses to start); on a hardened API server (--anonymous-auth=false, no
  AuthenticationConfiguration) the binding grants nothing: 401;
- the binding each chart renders in token mode none, applied with kubectl, is what opens the two
  documents and nothing else.

istiod's output for the Istio chart in this mode, and Envoy Gateway running its chart, are served
against the same kind of API server in tests/istio/test_gateway_anonymous.py and
tests/envoygateway/test_anonymous.py."""

from __future__ import annotations

import json

import pytest
import yaml

import helm  # tools/helm.py
from harness import REPO_ROOT
from harness.checks import assert_generic_error, leak_words, plugin_log_lines, poll
from harness.constants import DISCOVERY, DOC_NAMES, DOCS, JWKS, MEDIA_TYPES
from harness.kube import KubeError
from test_documents import assert_serves_the_api_servers_documents

CONFIG = "pod-anonymous.yaml"
# paths an anonymous client may not even be authenticated for: the API, the health and version
# endpoints (open to anonymous requests on a default API server), near misses of the documents
OTHER_PATHS = ["/api", "/api/v1/namespaces", "/api/v1/namespaces/default/secrets", "/apis", "/version",
               "/livez", "/readyz", "/healthz", "/openid/v1/jwks/", "/.well-known/openid-configuration/x",
               "/openid/v1/jwks.json", "/metrics"]
CHARTS = {"istio": helm.CHART, "envoy-gateway": REPO_ROOT / "charts" / "kube-oidc-discovery-envoy-gateway"}


def test_the_no_token_config_serves_both_documents(anonymous_kube, make_stack):
    kube = anonymous_kube
    kube.bind_discovery_to_unauthenticated()
    poll(lambda: kube.anonymous_get(JWKS)[0] == 200, 10, what="RBAC to see the binding")
    s = make_stack(CONFIG, fake=kube)
    assert_serves_the_api_servers_documents(s, kube, token=None)


def test_without_the_binding_the_api_servers_403_is_the_filters_502(anonymous_kube, make_stack):
    kube = anonymous_kube
    kube.unbind_discovery_from_unauthenticated()
    poll(lambda: kube.anonymous_get(JWKS)[0] == 403, 10, what="RBAC to see the binding gone")
    # authenticated as anonymous, then refused by RBAC: what the filter's calls get
    status, _, body = kube.request("GET", JWKS, headers={"Accept": MEDIA_TYPES[JWKS]})
    assert status == 403 and b'system:anonymous' in body, body
    s = make_stack(CONFIG, fake=kube, plugin_changes={"refresh_interval_s": 5})
    forbidden = [w for w in leak_words(kube, token="") if w]  # no token to leak: every other word
    for path in DOCS:
        assert_generic_error(s.get(path), 502, forbidden)
        assert s.metric(f"kube_oidc_discovery.upstream.{DOC_NAMES[path]}.http_error") >= 1
        assert s.metric(f"kube_oidc_discovery.upstream.{DOC_NAMES[path]}.ok") == 0
    for doc in ("discovery", "jwks"):
        poll(lambda: [ln for ln in plugin_log_lines(s.envoy.log_text())
                      if "[warning]" in ln and doc in ln and "the API server answered 403" in ln],
             5, what=f"the warn line quoting the 403 for {doc}")
    # the binding back: a retry (backoff at most refresh_interval_s) serves
    kube.bind_discovery_to_unauthenticated()
    poll(lambda: s.get(JWKS).status == 200 and s.get(DISCOVERY).status == 200, 30,
         what="the documents after the binding")


def test_every_other_path_stays_401_without_a_credential(anonymous_kube):
    kube = anonymous_kube
    kube.bind_discovery_to_unauthenticated()
    poll(lambda: kube.anonymous_get(JWKS)[0] == 200, 10, what="RBAC to see the binding")
    assert kube.anonymous_get(DISCOVERY)[0] == 200
    assert {p: kube.anonymous_get(p)[0] for p in OTHER_PATHS} == {p: 401 for p in OTHER_PATHS}


def test_the_api_server_refuses_anonymous_auth_beside_the_file(own_kube):
    with pytest.raises(KubeError, match="--anonymous-auth flag cannot be set when anonymous field is configured"):
        own_kube(anonymous_discovery=True, apiserver_args=["--anonymous-auth=false"])


def test_a_hardened_api_server_grants_the_binding_nothing(kube):
    # --anonymous-auth=false and no AuthenticationConfiguration: an anonymous request is refused
    # before authorization, binding or not (the NOTES' "without the file ... 401")
    kube.bind_discovery_to_unauthenticated()
    try:
        for path in DOCS:
            assert kube.anonymous_get(path)[0] == 401
    finally:
        kube.unbind_discovery_from_unauthenticated()


@pytest.mark.parametrize("chart", list(CHARTS))
def test_the_charts_binding_opens_the_two_documents_and_nothing_else(anonymous_kube, chart):
    kube = anonymous_kube
    kube.unbind_discovery_from_unauthenticated()
    objs = helm.render(CHARTS[chart], {"token": {"mode": "none"}})
    core = [o for o in objs if o["apiVersion"] in ("v1", "rbac.authorization.k8s.io/v1")]
    assert [o["kind"] for o in core] == ["ClusterRoleBinding"]  # no account, no Secret
    (crb,) = core
    poll(lambda: kube.anonymous_get(JWKS)[0] == 403, 10, what="RBAC to see no binding")
    r = kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(crb))
    assert r.returncode == 0 and " created" in r.stdout, r.stdout + r.stderr
    try:
        poll(lambda: kube.anonymous_get(JWKS)[0] == 200, 10, what="RBAC to see the chart's binding")
        for path in DOCS:
            status, headers, body = kube.request("GET", path, headers={"Accept": MEDIA_TYPES[path]})
            assert status == 200 and json.loads(body)
        assert {p: kube.anonymous_get(p)[0] for p in OTHER_PATHS} == {p: 401 for p in OTHER_PATHS}
        # the binding is the discovery role's alone: HEAD (verb head) is still refused
        assert kube.request("HEAD", JWKS)[0] == 403
    finally:
        r = kube.kubectl("delete", "clusterrolebinding", crb["metadata"]["name"])
        assert r.returncode == 0, r.stderr
