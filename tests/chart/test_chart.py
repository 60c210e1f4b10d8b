"""The Helm chart, offline: strict lint, every rendered object valid (core kinds against the
Kubernetes OpenAPI schemas, Istio, Gateway API and cert-manager kinds against their CRD schemas), the
security-relevant fields, the schema's rejections, and a pluginConfig the filter itself accepts."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import helm_python
import kubernetes_validate
import pytest

import helm

REPO = Path(__file__).resolve().parents[2]
CRD_VALIDATOR = Path(__file__).with_name("validate_crds.mjs")
K8S_VERSION = "1.33"
ISTIO_CLUSTER = "outbound|443||kubernetes.default.svc.cluster.local"
DISCOVERY_ROLE = "system:service-account-issuer-discovery"

EVERYTHING = {
    "hosts": ["oidc.example.com", "issuer.example.org"],
    "jwksUri": "https://keys.example.org/openid/v1/jwks",
    "image": {"sha256": "a" * 64, "pullPolicy": "Always", "pullSecret": "regcred"},
    "plugin": {"failStrategy": "FAIL_CLOSE", "match": "CLIENT", "timeoutMs": 1500,
               "refreshIntervalS": 30, "maxStaleS": 3600},
    "publicGateway": {"create": True, "certificate": {"create": True, "issuerRef": {"name": "letsencrypt"}}},
}
# Several issuers: this cluster's and another's with rotating tokens (the default here), another's
# reached by DNS with a static token. Its own tests: test_issuers.py.
ISSUERS = {
    "token": {"mode": "rotating"},
    "issuers": [
        {"name": "local", "issuer": "https://oidc.example.com/clusters/local"},
        {"name": "prod", "issuer": "https://oidc.example.com/clusters/prod",
         "apiServer": {"host": "api.prod.example.internal"}, "tokenMode": "static"},
        {"name": "edge_1", "issuer": "https://edge-oidc.example.com/", "jwksUri": "https://keys.example.com/edge/jwks",
         "apiServer": {"host": "api.edge.example.internal", "port": 6443, "addresses": ["10.20.0.10", "fd00::10"],
                       "sni": "kubernetes.default.svc", "subjectAltNames": ["kubernetes.default.svc", "10.20.0.10"]}},
    ],
    "publicGateway": {"create": True, "certificate": {"create": True, "issuerRef": {"name": "letsencrypt"}}},
}
GATEWAY_REF = {"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "public"}
VARIANTS = {
    "defaults": {},
    "everything": EVERYTHING,
    "rotating": {"token": {"mode": "rotating"}, "publicGateway": {"create": True}},
    # Gateway API mode (its own tests: test_gateway_api.py)
    "gateway-api": {"gateway": {"targetRefs": [GATEWAY_REF], "deploymentName": "public-istio"}},
    "gateway-api-issuers": {"gateway": {"targetRefs": [GATEWAY_REF]}, "token": {"mode": "rotating"},
                            "issuers": ISSUERS["issuers"]},
    # a gateway installed as in Istio's Helm guide: helm install istio-ingress istio/gateway -n istio-ingress
    "helm-guide": {"token": {"mode": "rotating"},
                   "gateway": {"selector": {"istio": "ingress"}, "deploymentName": "istio-ingress"}},
    # today's behaviour: the plugin in the path of every request of the gateway
    "scope-all": {"plugin": {"scope": "all"}},
    "issuers": ISSUERS,
    # no token at all: the API server serves the documents anonymously (its own tests: test_no_token.py)
    "none": {"token": {"mode": "none"}, "publicGateway": {"create": True}},
    "issuers-none": {"token": {"mode": "none"}, "publicGateway": {"create": True}, "issuers": [
        {"name": "local", "issuer": "https://oidc.example.com/clusters/local"},
        {"name": "prod", "issuer": "https://oidc.example.com/clusters/prod", "apiServer": {"host": "api.prod.example.internal"}},
        {"name": "edge", "issuer": "https://edge-oidc.example.com", "apiServer": {"host": "api.edge.example.internal"},
         "tokenMode": "static"}]},
    # other clusters only (static tokens by default, two rotating): nothing of this cluster's
    "issuers-remote": {"issuers": [
        {"name": "a", "issuer": "https://a.example.com", "apiServer": {"host": "api.a.example.internal",
                                                                     "sni": "kubernetes.default.svc"}},
        {"name": "b", "issuer": "https://b.example.com/x", "apiServer": {"host": "api.b.example.internal"},
         "tokenMode": "rotating"},
        {"name": "c", "issuer": "https://b.example.com/y", "apiServer": {"host": "api.c.example.internal", "port": 8443},
         "tokenMode": "rotating"}]},
}


def by_kind(objs: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for o in objs:
        out.setdefault(o["kind"], []).append(o)
    return out


def one(objs: list[dict], kind: str, suffix: str = "") -> dict:
    """The one object of ``kind`` (whose name ends with ``suffix``: the chart has two EnvoyFilters)."""
    (obj,) = [o for o in by_kind(objs)[kind] if o["metadata"]["name"].endswith(suffix)]
    return obj


def crd_errors(objs: list[dict]) -> list[str | None]:
    r = subprocess.run(["node", str(CRD_VALIDATOR)], input=json.dumps(objs), capture_output=True,
                       text=True, timeout=60, cwd=CRD_VALIDATOR.parent)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def check_config(plugin_config: dict, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The filter's own parser (tools/check_config.rs) on the rendered pluginConfig; the env
    is the VM's (Istio's vmConfig.env with valueFrom HOST)."""
    return subprocess.run(["cargo", "run", "-q", "--example", "check_config"], cwd=REPO,
                          input=json.dumps(plugin_config), capture_output=True, text=True, timeout=600,
                          env={k: v for k, v in os.environ.items() if k != "KUBE_OIDC_TOKEN"} | env)


# ---------------------------------------------------------------------- lint and validity
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_strict_lint_is_clean(variant):
    assert helm.lint(values=VARIANTS[variant]) == []


def test_lint_catches_a_broken_template(tmp_path):
    broken = tmp_path / "chart"
    import shutil
    shutil.copytree(helm.CHART, broken)
    (broken / "templates" / "broken.yaml").write_text("kind: ConfigMap\nmetadata: {{ .Values.nope.nope }}\n")
    assert helm.lint(broken) != []


def _cli(*args: str) -> subprocess.CompletedProcess:
    import sys
    return subprocess.run([sys.executable, str(Path(helm.__file__)), *args], capture_output=True, text=True,
                          timeout=60)


def test_cli_template_renders_like_helm_template_and_lint_fails_on_errors(tmp_path):
    import yaml
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"token": {"mode": "rotating"}}))
    r = _cli("template", str(helm.CHART), "-f", str(values), "--set", "hosts={a.example.com}")
    assert r.returncode == 0, r.stderr
    objs = [o for o in yaml.safe_load_all(r.stdout) if o]
    assert objs == helm.render(values={"token": {"mode": "rotating"}, "hosts": ["a.example.com"]})
    r = _cli("template", str(helm.CHART), "--set", "plugin.timeoutMs=0")
    assert r.returncode == 1 and "/plugin/timeoutMs" in r.stderr
    assert _cli("lint", str(helm.CHART)).returncode == 0
    broken = tmp_path / "chart"
    import shutil
    shutil.copytree(helm.CHART, broken)
    (broken / "Chart.yaml").write_text((broken / "Chart.yaml").read_text().replace("version: 0.1.0", "version: x"))
    r = _cli("lint", str(broken))
    assert r.returncode == 1 and "FAILED" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_core_objects_are_valid_kubernetes(variant):
    core = [o for o in helm.render(values=VARIANTS[variant]) if "." not in o["apiVersion"].split("/")[0]
            or o["apiVersion"].startswith("rbac.authorization.k8s.io")]
    assert core
    assert len(core) == len([o for o in helm.render(values=VARIANTS[variant])
                             if o["kind"] in ("ServiceAccount", "ClusterRoleBinding", "Secret", "ConfigMap")])
    for o in core:
        kubernetes_validate.validate(o, K8S_VERSION, strict=True)


def test_core_validation_can_fail():
    sa = one(helm.render(), "ServiceAccount")
    sa["automountServiceAccountToken"] = "no"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sa, K8S_VERSION, strict=True)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_istio_gateway_api_and_cert_manager_objects_match_their_crd_schemas(variant):
    objs = [o for o in helm.render(values=VARIANTS[variant])
            if o["apiVersion"].split("/")[0].endswith(("istio.io", "cert-manager.io", "gateway.networking.k8s.io"))]
    assert objs
    errors = crd_errors(objs)
    assert errors == [None] * len(objs), list(zip([o["kind"] for o in objs], errors))


def test_crd_validation_can_fail():
    """The validators enforce the CRDs' types, enums, patterns and required fields (not unknown
    fields, nor the CEL rules: those the chart's schema and tests cover)."""
    objs = helm.render(values=EVERYTHING)
    wp, dr, cert = one(objs, "WasmPlugin"), one(objs, "DestinationRule"), one(objs, "Certificate")
    vs, ef = one(objs, "VirtualService"), one(helm.render(values=VARIANTS["rotating"]), "EnvoyFilter", "-credential")
    se = by_kind(helm.render(values=ISSUERS))["ServiceEntry"][0]
    route = one(helm.render(values=VARIANTS["gateway-api"]), "HTTPRoute")
    route["spec"]["rules"][0]["matches"][0]["path"]["type"] = "Exactly"
    wp["spec"]["failStrategy"] = "FAIL_SOMETIMES"
    se["spec"]["resolution"] = "DNZ"
    dr["spec"]["trafficPolicy"]["tls"]["mode"] = "SIMPLEST"
    del cert["spec"]["issuerRef"]["name"]
    vs["spec"]["http"][0]["directResponse"]["status"] = "404"
    ef["spec"]["configPatches"][0]["applyTo"] = "CLUSTERS"
    errors = crd_errors([wp, dr, cert, vs, ef, se, route])
    assert "failStrategy" in errors[0] and "tls/mode" in errors[1] and "issuerRef" in errors[2], errors
    assert "directResponse/status" in errors[3] and "applyTo" in errors[4] and "resolution" in errors[5], errors
    assert "path/type" in errors[6], errors


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_wasm_plugin_has_exactly_one_of_selector_and_target_refs(variant):
    # a CEL rule of the CRD, which the validators above do not run
    spec = one(helm.render(values=VARIANTS[variant]), "WasmPlugin")["spec"]
    assert ("selector" in spec) != ("targetRefs" in spec)


def test_every_variant_renders_the_expected_kinds():
    kinds = {v: sorted(o["kind"] for o in helm.render(values=VARIANTS[v])) for v in VARIANTS}
    assert kinds["defaults"] == ["ClusterRoleBinding", "DestinationRule", "EnvoyFilter", "EnvoyFilter", "Secret",
                                 "ServiceAccount", "WasmPlugin"]
    assert kinds["everything"] == ["Certificate", "ClusterRoleBinding", "DestinationRule", "EnvoyFilter", "EnvoyFilter",
                                   "Gateway", "Secret", "ServiceAccount", "VirtualService", "WasmPlugin"]
    assert kinds["rotating"] == ["ClusterRoleBinding", "ConfigMap", "DestinationRule", "EnvoyFilter", "EnvoyFilter",
                                 "EnvoyFilter", "Gateway", "Secret", "ServiceAccount", "VirtualService", "WasmPlugin"]
    assert kinds["gateway-api"] == ["ClusterRoleBinding", "DestinationRule", "EnvoyFilter", "EnvoyFilter", "HTTPRoute",
                                    "Secret", "ServiceAccount", "WasmPlugin"]
    assert kinds["gateway-api-issuers"] == ["ClusterRoleBinding", "ConfigMap", "DestinationRule", "DestinationRule",
                                            "DestinationRule", "EnvoyFilter", "EnvoyFilter", "EnvoyFilter", "HTTPRoute",
                                            "Secret", "ServiceAccount", "ServiceEntry", "ServiceEntry", "WasmPlugin"]
    assert kinds["helm-guide"] == ["ClusterRoleBinding", "ConfigMap", "DestinationRule", "EnvoyFilter", "EnvoyFilter",
                                   "EnvoyFilter", "Secret", "ServiceAccount", "WasmPlugin"]
    assert kinds["scope-all"] == ["ClusterRoleBinding", "DestinationRule", "EnvoyFilter", "Secret", "ServiceAccount",
                                  "WasmPlugin"]
    assert kinds["issuers"] == ["Certificate", "ClusterRoleBinding", "ConfigMap", "DestinationRule", "DestinationRule",
                                "DestinationRule", "EnvoyFilter", "EnvoyFilter", "EnvoyFilter", "Gateway", "Secret",
                                "ServiceAccount", "ServiceEntry", "ServiceEntry", "VirtualService", "WasmPlugin"]
    assert kinds["none"] == ["ClusterRoleBinding", "DestinationRule", "EnvoyFilter", "EnvoyFilter", "Gateway",
                             "VirtualService", "WasmPlugin"]
    assert kinds["issuers-none"] == ["ClusterRoleBinding", "DestinationRule", "DestinationRule", "DestinationRule",
                                     "EnvoyFilter", "EnvoyFilter", "Gateway", "ServiceEntry", "ServiceEntry",
                                     "VirtualService", "WasmPlugin"]
    assert kinds["issuers-remote"] == ["ConfigMap", "DestinationRule", "DestinationRule", "DestinationRule",
                                       "EnvoyFilter", "EnvoyFilter", "EnvoyFilter", "ServiceEntry", "ServiceEntry",
                                       "ServiceEntry", "WasmPlugin"]


# ---------------------------------------------------------------------- what matters
def test_destination_rule_originates_verified_tls_for_the_gateway_only():
    dr = one(helm.render(), "DestinationRule")
    assert dr["metadata"]["namespace"] == helm.NAMESPACE
    assert dr["spec"]["host"] == "kubernetes.default.svc.cluster.local"
    assert dr["spec"]["exportTo"] == ["."]
    assert dr["spec"]["workloadSelector"] == {"matchLabels": {"istio": "ingressgateway"}}
    assert dr["spec"]["trafficPolicy"]["tls"] == {
        "mode": "SIMPLE",
        "caCertificates": "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
        "sni": "kubernetes.default.svc",
        "subjectAltNames": ["kubernetes.default.svc"],
    }


@pytest.mark.parametrize("variant", ["defaults", "everything", "rotating", "issuers"])
def test_least_privilege_a_dedicated_account_bound_only_to_the_discovery_role(variant):
    objs = helm.render(values=VARIANTS[variant])
    kinds = by_kind(objs)
    assert not {"Role", "ClusterRole", "RoleBinding"} & set(kinds)
    (sa,) = kinds["ServiceAccount"]
    (crb,) = kinds["ClusterRoleBinding"]
    assert crb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": DISCOVERY_ROLE}
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                "namespace": helm.NAMESPACE}]
    assert sa["metadata"]["name"] not in ("istio-ingressgateway", "istio-ingressgateway-service-account", "default")
    (secret,) = kinds["Secret"]
    assert secret["type"] == "kubernetes.io/service-account-token"
    assert secret["metadata"]["annotations"] == {"kubernetes.io/service-account.name": sa["metadata"]["name"]}
    assert "data" not in secret and "stringData" not in secret  # the token controller fills it
    assert sa.get("automountServiceAccountToken") is False


def test_wasm_plugin_answers_first_fails_open_and_gets_the_token_from_the_host():
    wp = one(helm.render(), "WasmPlugin")["spec"]
    assert wp["phase"] == "AUTHN" and wp["priority"] >= 1000
    assert wp["failStrategy"] == "FAIL_OPEN"
    assert wp["selector"] == {"matchLabels": {"istio": "ingressgateway"}}
    assert wp["vmConfig"] == {"env": [{"name": "KUBE_OIDC_TOKEN", "valueFrom": "HOST"}]}
    assert wp["pluginConfig"]["token_env"] == "KUBE_OIDC_TOKEN"
    assert wp["pluginConfig"]["cluster"] == ISTIO_CLUSTER
    assert wp["pluginConfig"]["jwks_uri"] == "https://oidc.example.com/openid/v1/jwks"


def test_image_pinning_and_pull_settings():
    wp = one(helm.render(values=EVERYTHING), "WasmPlugin")["spec"]
    assert (wp["sha256"], wp["imagePullPolicy"], wp["imagePullSecret"]) == ("a" * 64, "Always", "regcred")
    assert not {"sha256", "imagePullPolicy", "imagePullSecret"} & set(one(helm.render(), "WasmPlugin")["spec"])


@pytest.mark.parametrize("variant, token_dir", [
    ("rotating", "/var/run/secrets/kube-oidc-discovery"),  # the mounted token Secret
    ("helm-guide", "/var/run/secrets/kube-oidc-discovery"),
])
def test_injected_modes_add_the_token_in_envoy_not_in_the_filter(variant, token_dir):
    objs = helm.render(values=VARIANTS[variant])
    selector = VARIANTS[variant].get("gateway", {}).get("selector", {"istio": "ingressgateway"})
    wp = one(objs, "WasmPlugin")["spec"]
    assert "token_env" not in wp["pluginConfig"] and "vmConfig" not in wp
    ef = one(objs, "EnvoyFilter", "-credential")
    assert ef["metadata"]["namespace"] == helm.NAMESPACE
    ef = ef["spec"]
    assert ef["workloadSelector"] == {"labels": selector}
    (patch,) = ef["configPatches"]
    assert patch["applyTo"] == "CLUSTER" and patch["match"]["cluster"]["name"] == ISTIO_CLUSTER
    opts = patch["patch"]["value"]["typed_extension_protocol_options"]
    filters = opts["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["http_filters"]
    assert [f["name"] for f in filters] == ["envoy.filters.http.credential_injector",
                                            "envoy.filters.http.upstream_codec"]
    sds = filters[0]["typed_config"]["credential"]["typed_config"]["credential"]["sds_config"]["path_config_source"]
    assert sds == {"path": "/etc/kube-oidc-discovery/token-sds.yaml", "watched_directory": {"path": token_dir}}
    assert filters[0]["typed_config"]["credential"]["typed_config"]["header_value_prefix"] == "Bearer "
    cm = one(objs, "ConfigMap")
    import yaml
    (secret,) = yaml.safe_load(cm["data"]["token-sds.yaml"])["resources"]
    assert secret["generic_secret"]["secret"]["filename"] == f"{token_dir}/token"
    assert secret["name"] == filters[0]["typed_config"]["credential"]["typed_config"]["credential"]["name"]


def test_public_host_routes_are_all_404():
    objs = helm.render(values=EVERYTHING)
    vs, gw, cert = one(objs, "VirtualService"), one(objs, "Gateway"), one(objs, "Certificate")
    assert vs["spec"]["hosts"] == EVERYTHING["hosts"] == gw["spec"]["servers"][0]["hosts"] == cert["spec"]["dnsNames"]
    assert vs["spec"]["gateways"] == [gw["metadata"]["name"]]
    for route in vs["spec"]["http"]:
        assert route["directResponse"]["status"] == 404 and "route" not in route
    assert "match" not in vs["spec"]["http"][-1]  # every path of the hosts
    assert gw["spec"]["servers"][0]["tls"] == {"mode": "SIMPLE", "credentialName": cert["spec"]["secretName"]}


# ---------------------------------------------------------------------- the plugin runs only on the public hosts
HCM = "envoy.filters.network.http_connection_manager"
# What istiod builds for a WasmPlugin's HTTP filter (pilot/pkg/networking/core/extension/wasmplugin.go,
# extensionfilter.go from 1.30): ECDS over ADS, waiting for it, Wasm or (fail-open/close) RBAC.
ISTIOD_ECDS = {"config_source": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
               "type_urls": ["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                             "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"]}


def istiod_filter_names(wasm_plugin: dict) -> set[str]:
    """The names istiod gives a WasmPlugin's filter (pilot/pkg/model/extensions.go): the
    `extenstions` typo up to 1.25, fixed in 1.26, TrafficExtension translation from 1.30."""
    ns_name = f"{wasm_plugin['metadata']['namespace']}.{wasm_plugin['metadata']['name']}"
    return {f"extenstions.istio.io/wasmplugin/{ns_name}", f"extensions.istio.io/wasmplugin/{ns_name}",
            f"extensions.istio.io/trafficextension/{ns_name}~istio-translated-wasmplugin"}


def scope_patches(values: dict) -> tuple[dict, list[dict], list[dict]]:
    """The `-scope` EnvoyFilter, its HTTP_FILTER patches and its HTTP_ROUTE patches."""
    objs = helm.render(values=values)
    ef = one(objs, "EnvoyFilter", "-scope")
    patches = ef["spec"]["configPatches"]
    assert {p["applyTo"] for p in patches} == {"HTTP_FILTER", "HTTP_ROUTE"}
    return ef, [p for p in patches if p["applyTo"] == "HTTP_FILTER"], \
        [p for p in patches if p["applyTo"] == "HTTP_ROUTE"]


def chart_route_names(objs: list[dict]) -> list[str]:
    """The names istiod gives the Envoy routes of the chart's VirtualService (its http routes'
    names: route.go TranslateRoute) or HTTPRoute (`<namespace>.<name>.<rule index>` for rules
    without a name: conversion.go convertHTTPRoute)."""
    kinds = by_kind(objs)
    if "HTTPRoute" in kinds:
        (r,) = kinds["HTTPRoute"]
        assert not any("name" in rule for rule in r["spec"]["rules"])
        return [f"{r['metadata']['namespace']}.{r['metadata']['name']}.{i}" for i in range(len(r["spec"]["rules"]))]
    (vs,) = kinds["VirtualService"]
    return [route["name"] for route in vs["spec"]["http"]]


@pytest.mark.parametrize("variant", ["defaults", "everything", "helm-guide", "gateway-api"])
def test_scope_disables_the_plugins_filter_under_every_name_istiod_gives_it(variant):
    values = VARIANTS[variant]
    ef, filters, _ = scope_patches(values)
    wp = one(helm.render(values=values), "WasmPlugin")
    assert ef["metadata"]["namespace"] == wp["metadata"]["namespace"] == helm.NAMESPACE
    assert {p["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"] for p in filters} == \
        istiod_filter_names(wp)
    for p in filters:
        assert p["match"]["context"] == "GATEWAY"
        assert p["match"]["listener"]["filterChain"]["filter"]["name"] == HCM
        # REPLACE: istiod's MERGE of an HTTP filter keeps only name and typed_config, and skips an
        # ECDS filter (listener_patch.go, mergeHTTPFilter)
        assert p["patch"]["operation"] == "REPLACE"
        name = p["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"]
        assert p["patch"]["value"] == {"name": name, "disabled": True, "config_discovery": ISTIOD_ECDS}


@pytest.mark.parametrize("variant", ["defaults", "everything", "helm-guide", "gateway-api", "issuers"])
def test_every_chart_envoy_filter_binds_to_the_gateway_as_the_wasm_plugin_does(variant):
    values = VARIANTS[variant]
    objs = helm.render(values=values)
    wp = one(objs, "WasmPlugin")["spec"]
    for ef in by_kind(objs)["EnvoyFilter"]:
        spec = ef["spec"]
        if "targetRefs" in wp:  # Gateway API mode: istiod matches a Gateway API gateway by targetRefs
            assert spec["targetRefs"] == wp["targetRefs"] and "workloadSelector" not in spec
        else:
            assert spec["workloadSelector"] == {"labels": wp["selector"]["matchLabels"]} and "targetRefs" not in spec
    selector = values.get("gateway", {}).get("selector", {"istio": "ingressgateway"})
    assert wp.get("selector", {"matchLabels": selector}) == {"matchLabels": selector}


ENABLED = {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "is_optional": True,
           # value: istiod's legacy jsonpb requires it in an Any of a well-known type; the binary
           # proto istiod sends is an Any of Empty with no bytes, as Envoy's JSON without it
           "config": {"@type": "type.googleapis.com/google.protobuf.Empty", "value": {}}}


@pytest.mark.parametrize("variant", ["everything", "gateway-api", "issuers", "gateway-api-issuers", "own-gateway"])
def test_scope_enables_it_on_the_chart_routes_by_name_on_any_virtual_host(variant):
    """Route collapse (gateway.go, collapseDuplicateRoutes) merges the virtual hosts of hosts
    with the same routes into one named after the first host in istiod's order (longest first, then
    alphabetical), which may be another host: a match by virtual host name can miss, or enable the
    filter for another host (tests/istio runs both collapse cases through istiod). A route keeps
    its name wherever it lands, so the patches name no virtual host."""
    values = VARIANTS.get(variant, {"publicGateway": {"gateways": ["istio-ingress/public"]}})
    objs = helm.render(values=values)
    _, filters, routes = scope_patches(values)
    names = {p["patch"]["value"]["name"] for p in filters}
    assert [p["match"]["routeConfiguration"] for p in routes] == \
        [{"vhost": {"route": {"name": n}}} for n in chart_route_names(objs)]
    for p in routes:
        assert p["match"]["context"] == "GATEWAY" and p["patch"]["operation"] == "MERGE"
        assert p["patch"]["value"] == {"typed_per_filter_config": {n: ENABLED for n in names}}
    # unique to this release: nobody else's route gets the filter
    assert all(n.startswith(f"{helm.NAMESPACE}.kod-kube-oidc-discovery.") for n in chart_route_names(objs))


def _anys(value):
    if isinstance(value, dict):
        if "@type" in value:
            yield value
        for v in value.values():
            yield from _anys(v)
    elif isinstance(value, list):
        for v in value:
            yield from _anys(v)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_any_of_a_well_known_type_carries_value_for_istiods_jsonpb(variant):
    """istiod decodes patch values with the legacy golang/protobuf jsonpb (pkg/config/xds,
    BuildXDSObjectFromStruct), which refuses an Any of a google.protobuf type without `value`
    ("Any JSON doesn't have 'value'"): the webhook then fails the install. istiod's own decoder
    runs on every render in tests/istio; this keeps the rule visible where the chart is edited."""
    efs = [o for o in helm.render(values=VARIANTS[variant]) if o["kind"] == "EnvoyFilter"]
    wkt = [a for ef in efs for p in ef["spec"]["configPatches"] for a in _anys(p["patch"]["value"])
           if a["@type"].startswith("type.googleapis.com/google.protobuf.")]
    assert all("value" in a for a in wkt), wkt
    if variant != "scope-all" and VARIANTS[variant].get("plugin", {}).get("scope", "hosts") == "hosts":
        assert wkt  # the check has something to check


def test_the_jsonpb_check_can_fail():
    ef = one(helm.render(values={"publicGateway": {"create": True}}), "EnvoyFilter", "-scope")
    anys = [a for p in ef["spec"]["configPatches"] for a in _anys(p["patch"]["value"])]
    empty = next(a for a in anys if a["@type"].endswith("google.protobuf.Empty"))
    del empty["value"]
    assert any("value" not in a for a in anys if a["@type"].startswith("type.googleapis.com/google.protobuf."))


def test_classic_routes_answer_404_and_the_document_paths_come_first():
    vs = one(helm.render(values=ISSUERS), "VirtualService")["spec"]
    documents, not_found = vs["http"]
    # not a catch-all: istiod (route.go SortVHostRoutes) puts catch-alls of every VirtualService
    # of the host after it
    assert [m["uri"] for m in documents["match"]] == [
        {"exact": f"{p}{d}"} for p in ("/clusters/local", "/clusters/prod", "")
        for d in ("/.well-known/openid-configuration", "/openid/v1/jwks")]
    assert "match" not in not_found
    for route in (documents, not_found):
        assert route["directResponse"] == {"status": 404, "body": {"string": '{"error":"not found"}'}}
        assert "route" not in route


def test_scope_all_has_no_scope_filter():
    objs = helm.render(values=VARIANTS["scope-all"])
    assert [ef["metadata"]["name"] for ef in by_kind(objs)["EnvoyFilter"]] == ["kod-kube-oidc-discovery-clusters"]
    assert one(objs, "WasmPlugin")["spec"] == one(helm.render(), "WasmPlugin")["spec"]


@pytest.mark.parametrize("values, warns", [
    ({}, True),  # no VirtualService from the chart
    ({"publicGateway": {"create": True}}, False),
    ({"publicGateway": {"gateways": ["istio-ingress/public"]}}, False),
    ({"publicGateway": {"create": True, "virtualService": False}}, True),
    ({"plugin": {"scope": "all"}}, False),
    ({"gateway": {"targetRefs": [GATEWAY_REF]}}, False),
    ({"gateway": {"targetRefs": [GATEWAY_REF]}, "publicGateway": {"httpRoute": False}}, True),
])
def test_notes_say_when_the_chart_routes_no_host_so_the_plugin_never_runs(values, warns):
    text = helm.notes(values=values)
    assert ("NOTE: the plugin runs only on the chart's routes of the public hosts oidc.example.com\n" in text) == warns


@pytest.mark.parametrize("variant, warns", [("defaults", False), ("rotating", True), ("helm-guide", True),
                                           ("issuers", True), ("gateway-api", False),
                                           ("issuers-remote", True)])  # two remote entries rotating
def test_notes_warn_that_rotating_needs_istio_1_29(variant, warns):
    """Envoy knows header_value_prefix from 1.37 (Istio 1.29's gateway); Istio 1.28's Envoy 1.36
    refuses the API server's cluster that istiod sends with it (tests/istio/test_gateway.py runs
    that in Envoy 1.36; chart README, The token)."""
    text = helm.notes(values=VARIANTS[variant])
    assert ("NOTE: token mode rotating needs Istio 1.29 or later" in text) == warns
    objs = helm.render(values=VARIANTS[variant])
    assert warns == any(o["metadata"]["name"].endswith("-credential") for o in by_kind(objs)["EnvoyFilter"])


# ---------------------------------------------------------------------- the API servers' clusters
@pytest.mark.parametrize("variant, hosts", [
    ("defaults", ["kubernetes.default.svc.cluster.local"]),
    ("scope-all", ["kubernetes.default.svc.cluster.local"]),
    ("issuers", ["kubernetes.default.svc.cluster.local", "api.prod.example.internal", "api.edge.example.internal"]),
    ("issuers-remote", ["api.a.example.internal", "api.b.example.internal", "api.c.example.internal"]),
])
def test_an_envoy_filter_names_the_api_servers_for_gateway_cluster_filtering(variant, hosts):
    """PILOT_FILTER_GATEWAY_CLUSTER_CONFIG=true: istiod sends a gateway only the clusters of the
    Services its routes or its EnvoyFilters' referenced-services annotation name
    (push_context.go extraServicesForProxy; the annotation from Istio 1.26, envoyfilter.go)."""
    objs = helm.render(values=VARIANTS[variant])
    ef = one(objs, "EnvoyFilter", "-clusters")
    assert ef["metadata"]["annotations"] == {"envoyfilter.istio.io/referenced-services": ",".join(hosts)}
    assert ef["spec"]["configPatches"] == []
    wp = one(objs, "WasmPlugin")["spec"]["pluginConfig"]
    clusters = [e["cluster"] for e in wp.get("issuers", [wp])]
    assert sorted(c.split("||")[1] for c in clusters) == sorted(hosts)


# ---------------------------------------------------------------------- the filter accepts it
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_plugin_config_is_accepted_by_the_filter(variant):
    wp = one(helm.render(values=VARIANTS[variant]), "WasmPlugin")["spec"]
    env = {e["name"]: "eyJ.test.token" for e in wp.get("vmConfig", {}).get("env", []) if e["valueFrom"] == "HOST"}
    r = check_config(wp["pluginConfig"], env)
    assert r.returncode == 0, r.stderr
    clusters = [e["cluster"] for e in wp["pluginConfig"].get("issuers", [wp["pluginConfig"]])]
    assert clusters and all(c in r.stdout for c in clusters), (clusters, r.stdout)


def test_the_filter_check_runs_it_rejects_a_missing_token_variable():
    wp = one(helm.render(), "WasmPlugin")["spec"]
    r = check_config(wp["pluginConfig"], {})
    assert r.returncode == 1 and "KUBE_OIDC_TOKEN" in r.stderr


# ---------------------------------------------------------------------- the schema
BAD_VALUES = {
    "no-hosts": ({"hosts": []}, "/hosts"),
    "host-with-scheme": ({"hosts": ["https://oidc.example.com"]}, "/hosts/0"),
    "http-jwks-uri": ({"jwksUri": "http://oidc.example.com/openid/v1/jwks"}, "/jwksUri"),
    "fail-sometimes": ({"plugin": {"failStrategy": "FAIL_SOMETIMES"}}, "/plugin/failStrategy"),
    "server-mode": ({"plugin": {"match": "SERVER"}}, "/plugin/match"),
    "timeout-zero": ({"plugin": {"timeoutMs": 0}}, "/plugin/timeoutMs"),
    "timeout-too-long": ({"plugin": {"timeoutMs": 60001}}, "/plugin/timeoutMs"),
    "priority-beyond-int32": ({"plugin": {"priority": 2**31}}, "/plugin/priority"),
    "refresh-too-short": ({"plugin": {"refreshIntervalS": 4}}, "/plugin/refreshIntervalS"),
    "stale-too-long": ({"plugin": {"maxStaleS": 31536001}}, "/plugin/maxStaleS"),
    "short-sha": ({"image": {"sha256": "abc"}}, "/image/sha256"),
    "pull-never": ({"image": {"pullPolicy": "Never"}}, "/image/pullPolicy"),
    "unknown-key": ({"plugin": {"timeout": 5}}, "/plugin"),
    "unknown-top-key": ({"tokenEnv": "X"}, "additional"),
    "token-mode": ({"token": {"mode": "sidecar"}}, "/token/mode"),
    "scope": ({"plugin": {"scope": "oidc"}}, "/plugin/scope"),
    # the gateway's own (projected) token is never offered: its account can read TLS Secrets
    "gateway-own-token": ({"token": {"mode": "projected"}}, "/token/mode"),
    "deployment-name": ({"gateway": {"deploymentName": "Istio Ingress"}}, "/gateway/deploymentName"),
    "empty-selector": ({"gateway": {"selector": {"istio": None}}}, "/gateway/selector"),  # null deletes
    "env-name": ({"token": {"envName": "1-TOKEN"}}, "/token/envName"),
    "selector-not-string": ({"gateway": {"selector": {"istio": 1}}}, "/gateway/selector/istio"),
    "cert-without-issuer": ({"publicGateway": {"create": True, "certificate": {"create": True}}},
                            "/publicGateway/certificate/issuerRef/name"),
    # issuers: each entry (values.schema.json), as the filter checks it
    **{f"issuer-name-{n}": ({"issuers": [{"name": name, "issuer": "https://a.example.com"}]}, "/issuers/0/name")
       for n, name in (("upper", "Prod"), ("dot", "prod.eu"), ("long", "p" * 33), ("empty", ""))},
    **{f"issuer-{n}": ({"issuers": [{"name": "a", "issuer": url}]}, "/issuers/0/issuer")
       for n, url in (("http", "http://a.example.com"), ("query", "https://a.example.com/x?y=1"),
                      ("fragment", "https://a.example.com/x#y"), ("dot-segment", "https://a.example.com/x/../y"),
                      ("empty-segment", "https://a.example.com//x"), ("space", "https://a.example.com/a b"),
                      ("no-host", "https:///x"),
                      # the chart's own rule: it names Gateway hosts and virtual hosts after the host
                      ("port", "https://a.example.com:8443/x"), ("upper-host", "https://A.example.com/x"))},
    "issuer-unknown-key": ({"issuers": [{"name": "a", "issuer": "https://a.example.com", "cluster": "x"}]},
                           "/issuers/0"),
    "issuer-without-issuer": ({"issuers": [{"name": "a"}]}, "/issuers/0"),
    "issuers-65": ({"issuers": [{"name": f"i{i}", "issuer": f"https://a.example.com/{i}"} for i in range(65)]},
                   "/issuers"),
    "issuer-http-jwks-uri": ({"issuers": [{"name": "a", "issuer": "https://a.example.com",
                                           "jwksUri": "http://a.example.com/jwks"}]}, "/issuers/0/jwksUri"),
    "issuer-api-server-without-host": ({"issuers": [{"name": "a", "issuer": "https://a.example.com",
                                                     "apiServer": {"port": 443}}]}, "/issuers/0/apiServer"),
    "issuer-api-server-ip-host": ({"issuers": [{"name": "a", "issuer": "https://a.example.com",
                                                "apiServer": {"host": "api_x"}}]}, "/issuers/0/apiServer/host"),
    # a dotless host is a short name to istiod: the DestinationRule would miss it (no TLS)
    "issuer-api-server-dotless-host": ({"issuers": [{"name": "a", "issuer": "https://a.example.com",
                                                     "apiServer": {"host": "localhost"}}]},
                                       "/issuers/0/apiServer/host"),
    "api-server-dotless-host": ({"apiServer": {"host": "kubernetes"}}, "/apiServer/host"),
    "issuer-address-not-ip": ({"issuers": [{"name": "a", "issuer": "https://a.example.com",
                                            "apiServer": {"host": "api.a", "addresses": ["api.a"]}}]},
                              "/issuers/0/apiServer/addresses/0"),
    "issuer-token-mode": ({"issuers": [{"name": "a", "issuer": "https://a.example.com",
                                        "apiServer": {"host": "api.a"}, "tokenMode": "projected"}]},
                          "/issuers/0/tokenMode"),
    # this cluster's entry takes token.mode
    "issuer-local-token-mode": ({"issuers": [{"name": "a", "issuer": "https://a.example.com",
                                              "tokenMode": "rotating"}]}, "/issuers/0"),
    # issuers: across entries (kod.issuers fails the render), as the filter checks them
    "issuer-duplicate-name": ({"issuers": [{"name": "a", "issuer": "https://a.example.com/1"},
                                           {"name": "a", "issuer": "https://a.example.com/2",
                                            "apiServer": {"host": "api.b"}}]}, "issuers[1].name: the name a"),
    "issuer-names-alike": ({"issuers": [{"name": "a-b", "issuer": "https://a.example.com/1"},
                                        {"name": "a_b", "issuer": "https://a.example.com/2",
                                         "apiServer": {"host": "api.b"}}]}, "issuers[1].name: the name a-b"),
    "issuer-same-paths": ({"issuers": [{"name": "a", "issuer": "https://a.example.com/x"},
                                       {"name": "b", "issuer": "https://a.example.com/x/",
                                        "apiServer": {"host": "api.b"}}]},
                          "issuers[1].issuer: the document paths https://a.example.com/x/... is also that of issuers[0]"),
    "issuer-two-local": ({"issuers": [{"name": "a", "issuer": "https://a.example.com/1"},
                                      {"name": "b", "issuer": "https://a.example.com/2"}]},
                         "issuers[1].apiServer: the API server (cluster outbound|443||kubernetes.default.svc"),
    "issuer-same-api-server": ({"issuers": [{"name": "a", "issuer": "https://a.example.com/1",
                                             "apiServer": {"host": "api.b", "port": 443}},
                                            {"name": "b", "issuer": "https://a.example.com/2",
                                             "apiServer": {"host": "api.b"}}]},
                               "issuers[1].apiServer: the API server (cluster outbound|443||api.b)"),
    "issuers-with-jwks-uri": ({"jwksUri": "https://a.example.com/jwks",
                               "issuers": [{"name": "a", "issuer": "https://a.example.com"}]}, "jwksUri is the single"),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_schema_rejects_bad_values(case):
    values, where = BAD_VALUES[case]
    with pytest.raises(helm_python.HelmError) as e:
        helm.render(values=values)
    assert where in str(e.value), str(e.value)


def _notes_patch(text: str) -> tuple[str, dict]:
    """The `kubectl patch deployment NAME ... -p '<json>'` line of the NOTES: NAME and the patch."""
    cmd, rest = text.split(" patch deployment ", 1)[1].split(" -p '", 1)
    return cmd.split()[0], json.loads(rest.split("'", 1)[0])


def test_notes_show_the_curl_lines_and_metrics_for_the_gateway():
    text = helm.notes(values={"hosts": ["a.example.com", "b.example.com"]})
    for host in ("a.example.com", "b.example.com"):
        assert f"curl -s https://{host}/.well-known/openid-configuration" in text
        assert f"curl -s https://{host}/openid/v1/jwks" in text
    assert f"kubectl -n {helm.NAMESPACE} exec deploy/istio-ingressgateway -c istio-proxy" in text
    assert "pilot-agent request GET stats/prometheus" in text


@pytest.mark.parametrize("variant", ["defaults", "rotating", "helm-guide"])
def test_notes_patch_the_gateway_with_the_rendered_names(variant):
    values = VARIANTS[variant]
    objs = by_kind(helm.render(values=values))
    deployment, patch = _notes_patch(helm.notes(values=values))
    assert deployment == values.get("gateway", {}).get("deploymentName", "istio-ingressgateway")
    pod = patch["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == "istio-proxy"
    if variant == "defaults":
        secret = objs["Secret"][0]["metadata"]["name"]
        assert container["env"] == [{"name": "KUBE_OIDC_TOKEN",
                                     "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}}}]
        assert "volumes" not in pod
        return
    assert "env" not in container
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert volumes["kod-token-sds"]["configMap"]["name"] == objs["ConfigMap"][0]["metadata"]["name"]
    assert mounts["kod-token-sds"] + "/token-sds.yaml" == \
        _sds_source(one(helm.render(values=values), "EnvoyFilter", "-credential"))["path"]
    assert set(volumes) == set(mounts) == {"kod-token", "kod-token-sds"}
    assert volumes["kod-token"]["secret"]["secretName"] == objs["Secret"][0]["metadata"]["name"]
    assert mounts["kod-token"] == \
        _sds_source(one(helm.render(values=values), "EnvoyFilter", "-credential"))["watched_directory"]["path"]


def _reissue_steps(text: str) -> list[str]:
    """The `kubectl -n NS delete ...` and `helm -n NS upgrade ...` lines of a text."""
    import re
    return re.findall(r"^ *(kubectl -n \S+ delete .*|helm -n \S+ upgrade .*)$", text, re.M)


@pytest.mark.parametrize("variant", ["rotating", "helm-guide", "issuers", "gateway-api-issuers"])
def test_notes_reissue_the_rotating_token_with_a_new_account_not_just_a_new_secret(variant):
    """A legacy token's claims are the account's name and UID and the Secret's name only, and RS256
    is deterministic: a Secret re-created alone gets the same token back. So the NOTES delete the
    account too; Helm re-creates both, and the binding (by name) binds the new account
    (tests/istioreal/test_rotating.py runs these lines)."""
    values = VARIANTS[variant]
    objs = by_kind(helm.render(values=values))
    (secret,), (account,), (binding,) = objs["Secret"], objs["ServiceAccount"], objs["ClusterRoleBinding"]
    name, ns = account["metadata"]["name"], helm.NAMESPACE
    assert secret["metadata"]["annotations"]["kubernetes.io/service-account.name"] == name
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": ns}]
    assert _reissue_steps(helm.notes(values=values)) == [
        f"kubectl -n {ns} delete secret {secret['metadata']['name']}",
        f"kubectl -n {ns} delete serviceaccount {name}",
        f"helm -n {ns} upgrade {helm.RELEASE} <chart> --reuse-values"]


def test_notes_of_static_mode_reissue_nothing():
    assert _reissue_steps(helm.notes()) == []


def injected_credential(patch: dict) -> dict:
    """The SDS credential (name, sds_config) the credential_injector of a `-credential` patch reads."""
    opts = patch["patch"]["value"]["typed_extension_protocol_options"]
    injector = opts["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["http_filters"][0]
    return injector["typed_config"]["credential"]["typed_config"]["credential"]


def _sds_source(ef: dict) -> dict:
    (patch,) = ef["spec"]["configPatches"]
    return injected_credential(patch)["sds_config"]["path_config_source"]


# ---------------------------------------------------------------------- the docs say what the chart does
README = helm.CHART / "README.md"


def _leaf_keys(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        if isinstance(v, dict) and v and k not in ("selector", "issuerRef"):
            out |= _leaf_keys(v, f"{prefix}{k}.")
        else:
            out.add(prefix + k)
    return out


def test_readme_values_table_lists_every_value():
    import re
    import yaml
    defaults = yaml.safe_load((helm.CHART / "values.yaml").read_text())
    table = README.read_text().split("## Values", 1)[1]
    documented = set(re.findall(r"^\| `([a-zA-Z0-9.]+)` \|", table, re.M))
    assert documented == _leaf_keys(defaults)


def test_readme_gateway_values_for_rotating_mode_name_the_rendered_objects():
    import re
    import yaml
    block = re.search(r"```yaml\n(volumes:.*?)```", README.read_text(), re.S).group(1)
    snippet = yaml.safe_load(block)
    objs = helm.render(values={"token": {"mode": "rotating"}})
    vols = {v["name"]: v for v in snippet["volumes"]}
    assert vols["kod-token"]["secret"]["secretName"] == one(objs, "Secret")["metadata"]["name"]
    assert vols["kod-token-sds"]["configMap"]["name"] == one(objs, "ConfigMap")["metadata"]["name"]
    mounts = {m["name"]: m["mountPath"] for m in snippet["volumeMounts"]}
    assert mounts == {"kod-token": "/var/run/secrets/kube-oidc-discovery", "kod-token-sds": "/etc/kube-oidc-discovery"}


def test_readme_static_mode_snippets_match_the_notes_and_the_rendered_secret():
    import re
    import yaml
    text = README.read_text()
    snippet = yaml.safe_load(re.search(r"```yaml\n(envVarFrom:.*?)```", text, re.S).group(1))
    secret = one(helm.render(), "Secret")["metadata"]["name"]
    assert snippet["envVarFrom"] == [{"name": "KUBE_OIDC_TOKEN",
                                      "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}}}]
    readme_patch = _notes_patch(text.split("### static", 1)[1])
    assert readme_patch == _notes_patch(helm.notes())


def test_readme_reissue_steps_of_rotating_mode_are_the_notes():
    text = README.read_text().split("### rotating", 1)[1].split("\n### ", 1)[0]
    steps = _reissue_steps(text)
    assert len(steps) == 3
    assert steps == _reissue_steps(helm.notes(values=VARIANTS["rotating"]))


def test_schema_ranges_and_defaults_are_the_filters_own():
    """values.schema.json's limits are the ranges the filter accepts and values.yaml's defaults
    are its defaults, as the filter's own parser (tools/check_config.rs) tells: it accepts
    each bound, refuses one past it naming the key, and compiles the chart's defaults to the
    same configuration as an empty one."""
    import yaml
    schema = json.loads((helm.CHART / "values.schema.json").read_text())["properties"]["plugin"]["properties"]
    defaults = yaml.safe_load((helm.CHART / "values.yaml").read_text())["plugin"]
    keys = {"timeoutMs": "timeout_ms", "refreshIntervalS": "refresh_interval_s", "maxStaleS": "max_stale_s"}
    for bound in ("minimum", "maximum"):
        r = check_config({key: schema[value][bound] for value, key in keys.items()}, {})
        assert r.returncode == 0, (bound, r.stderr)
    for value, key in keys.items():
        for past in (schema[value]["minimum"] - 1, schema[value]["maximum"] + 1):
            r = check_config({key: past}, {})
            assert r.returncode == 1 and key in r.stderr, (key, past, r.stdout, r.stderr)
    empty = check_config({}, {})
    charted = check_config({key: defaults[value] for value, key in keys.items()}, {})
    assert (empty.returncode, charted.returncode) == (0, 0), empty.stderr + charted.stderr
    assert charted.stdout == empty.stdout
