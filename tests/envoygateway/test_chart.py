"""The chart charts/kube-oidc-discovery-envoy-gateway offline: strict lint, every rendered object
valid (core kinds against Kubernetes' schemas; Gateway API kinds against the CRDs of
sigs.k8s.io/gateway-api at the version Envoy Gateway v1.9.1's go.mod pins, v1.6.1, the types
Envoy Gateway decodes them with; Envoy Gateway's kinds against the CRDs in its own module,
charts/gateway-crds-helm), the filter configuration accepted by the filter's own parser, the
cross-entry checks, and that nothing the chart renders names the `kubernetes` Service or goes
into another namespace than the release's and the Gateway's.

The CRD schemas are checked as JSON Schema (openAPIV3Schema); their CEL rules
(x-kubernetes-validations) are not evaluated here: Envoy Gateway running the render
(test_serving.py, test_issuers.py) is the check that it accepts the objects."""

from __future__ import annotations

import json
import os
import re
import subprocess
from functools import cache
from pathlib import Path

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

import helm
from harness.kube import ANONYMOUS_DISCOVERY_AUTHENTICATION_CONFIG, printed_authentication_configuration
from names import CHART, HERE, NAMESPACE, REPO, ROUTE

K8S_VERSION = "1.33"
DISCOVERY_ROLE = "system:service-account-issuer-discovery"
ISSUERS = {"issuers": [
    {"name": "local", "issuer": "https://oidc.example.com/clusters/local"},
    {"name": "prod", "issuer": "https://oidc.example.com/clusters/prod", "jwksUri": "https://keys.example.com/prod",
     "apiServer": {"host": "api.prod.example.internal"}},
    {"name": "edge_1", "issuer": "https://edge-oidc.example.com/",
     "apiServer": {"host": "api.edge.example.internal", "port": 6443, "addresses": ["10.20.0.10"],
                   "hostname": "kubernetes.default.svc", "caConfigMap": "edge-ca"}, "tokenSecret": "edge-token"}]}
VARIANTS = {
    "defaults": {},
    "everything": {"hosts": ["oidc.example.com", "issuer.example.org"], "jwksUri": "https://keys.example.org/jwks",
                   "gateway": {"name": "public", "namespace": "gateways", "sectionName": "https"},
                   "image": {"sha256": "a" * 64, "pullSecret": "regcred",
                             "caCertificateRef": {"kind": "Secret", "name": "registry-ca"}},
                   "plugin": {"failOpen": False, "timeoutMs": 1500, "refreshIntervalS": 30, "maxStaleS": 3600},
                   "apiServer": {"host": "kubernetes.default.svc.k8s.example", "port": 6443},
                   "envoyProxy": {"namespace": "gateways", "serviceAccountName": "public-envoy",
                                  "tokenExpirationSeconds": 7200}},
    "inject": {"token": {"mode": "inject", "secretName": "my-credential", "serviceAccountName": "oidc-reader"}},
    "env-token": {"token": {"mode": "env"}},
    "issuers": ISSUERS,
    "issuers-inject": {**ISSUERS, "token": {"mode": "inject"}},
    "issuers-env": {**ISSUERS, "token": {"mode": "env"}},
    # no credential: an API server that serves the documents anonymously (docs/envoy-gateway.md)
    "no-token": {"token": {"mode": "none"}},
    "issuers-no-token": {**ISSUERS, "token": {"mode": "none"}},
}


def render(values: dict) -> list[dict]:
    return helm.render(CHART, values, release="kod", namespace=NAMESPACE)


def by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


@cache
def module_dir(module: str) -> Path:
    """The module's source in the Go module cache, at the version tests/envoygateway/go.sum pins."""
    r = subprocess.run(["go", "list", "-mod=readonly", "-m", "-f", "{{.Dir}}", module], cwd=HERE,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip(), f"{module}: {r.stderr} (run `make tools-envoy-gateway`)"
    return Path(r.stdout.strip())


def _crd_docs(path: Path) -> list[dict]:
    # Envoy Gateway's generated CRDs sit in `{{- if ... }}` of its CRD chart
    text = "\n".join(line for line in path.read_text().splitlines() if "{{" not in line)
    return [d for d in yaml.safe_load_all(text) if d and d.get("kind") == "CustomResourceDefinition"]


@cache
def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> openAPIV3Schema, for the served versions."""
    files = sorted((module_dir("sigs.k8s.io/gateway-api") / "config" / "crd" / "standard").glob("*.yaml"))
    files += sorted((module_dir("github.com/envoyproxy/gateway") / "charts" / "gateway-crds-helm" / "templates"
                     / "generated").glob("gateway.envoyproxy.io_*.yaml"))
    out = {}
    for f in files:
        for crd in _crd_docs(f):
            for v in crd["spec"]["versions"]:
                if v.get("served"):
                    out[(f"{crd['spec']['group']}/{v['name']}", crd["spec"]["names"]["kind"])] = v["schema"]["openAPIV3Schema"]
    return out


def crd_errors(obj: dict) -> list[str]:
    schema = crd_schemas().get((obj["apiVersion"], obj["kind"]))
    assert schema is not None, f"no CRD for {obj['apiVersion']} {obj['kind']}"
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in jsonschema.Draft7Validator(schema).iter_errors(obj)]


def check_config(config: dict, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The filter's own parser (tools/check_config.rs, the example check_config) on the rendered configuration."""
    return subprocess.run(["cargo", "run", "-q", "--example", "check_config"], cwd=REPO, input=json.dumps(config),
                          capture_output=True, text=True, timeout=600,
                          env={k: v for k, v in os.environ.items() if not k.startswith("KUBE_OIDC_TOKEN")} | env)


# ---------------------------------------------------------------------- lint and validity
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_strict_lint_is_clean(variant):
    assert helm.lint(CHART, VARIANTS[variant]) == []


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_object_is_valid(variant):
    objs = render(VARIANTS[variant])
    crd_kinds = [o for o in objs if "." in o["apiVersion"].split("/")[0] and not o["apiVersion"].startswith("rbac.")]
    assert crd_kinds
    for o in crd_kinds:
        assert crd_errors(o) == [], (o["kind"], o["metadata"]["name"])
    for o in objs:
        if o not in crd_kinds:
            kubernetes_validate.validate(o, K8S_VERSION, strict=True)


def test_crd_validation_can_fail():
    (route,) = by_kind(render({}), "HTTPRoute")
    route["spec"]["rules"][0]["matches"][0]["method"] = "FETCH"
    assert crd_errors(route)
    (policy,) = by_kind(render({}), "EnvoyExtensionPolicy")
    policy["spec"]["wasm"][0]["code"]["type"] = "Tarball"
    assert crd_errors(policy)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_filter_accepts_its_configuration(variant):
    (policy,) = by_kind(render(VARIANTS[variant]), "EnvoyExtensionPolicy")
    wasm = policy["spec"]["wasm"][0]
    env = {k: "eyJ.test.token" for k in wasm.get("env", {}).get("hostKeys", [])}
    r = check_config(wasm["config"], env)
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------------- what the chart says
CLUSTER = f"httproute/{NAMESPACE}/{ROUTE}/rule/0"


def test_defaults_route_to_the_releases_backend_and_harden_the_route():
    objs = render({})
    (route,) = by_kind(objs, "HTTPRoute")
    (rule,) = route["spec"]["rules"]
    assert [(m["path"]["value"], m["method"]) for m in rule["matches"]] == [
        ("/.well-known/openid-configuration", "GET"), ("/openid/v1/jwks", "GET")]
    assert all(m["path"]["type"] == "Exact" for m in rule["matches"])
    assert rule["backendRefs"] == [{"group": "gateway.envoyproxy.io", "kind": "Backend", "name": ROUTE,
                                    "namespace": NAMESPACE, "port": 443}]
    (backend,) = by_kind(objs, "Backend")
    assert backend["spec"] == {"endpoints": [{"fqdn": {"hostname": "kubernetes.default.svc.cluster.local", "port": 443}}]}
    mods = {f["type"]: f for f in rule["filters"]}
    assert {"Authorization", "Impersonate-User", "Impersonate-Group"} <= set(mods["RequestHeaderModifier"]["requestHeaderModifier"]["remove"])
    assert {"Audit-Id", "Warning", "Set-Cookie"} <= set(mods["ResponseHeaderModifier"]["responseHeaderModifier"]["remove"])
    (policy,) = by_kind(objs, "EnvoyExtensionPolicy")
    assert policy["spec"]["wasm"][0]["failOpen"] is True
    assert policy["spec"]["wasm"][0]["config"]["cluster"] == CLUSTER
    assert policy["spec"]["targetRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                                             "name": route["metadata"]["name"]}]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_tls_to_the_api_server_applies_to_the_releases_backends_alone(variant):
    """Nothing names the `kubernetes` Service: TLS settings on it would change how every route to
    it, and under Istio 1.28 and later every meshed client (a DestinationRule for the Service),
    reaches the API server. No object leaves the release's namespace but the token's
    EnvoyProxy and EnvoyPatchPolicy (the Gateway's namespace)."""
    objs = render(VARIANTS[variant])
    backends = {b["metadata"]["name"] for b in by_kind(objs, "Backend")}
    for tls in by_kind(objs, "BackendTLSPolicy"):
        assert [(t["group"], t["kind"]) for t in tls["spec"]["targetRefs"]] == [("gateway.envoyproxy.io", "Backend")]
        assert tls["spec"]["targetRefs"][0]["name"] in backends
        assert tls["metadata"]["namespace"] == NAMESPACE
    assert len(by_kind(objs, "BackendTLSPolicy")) == len(backends) == len(by_kind(objs, "HTTPRoute"))
    for route in by_kind(objs, "HTTPRoute"):
        assert all(ref["kind"] == "Backend" for rule in route["spec"]["rules"] for ref in rule["backendRefs"])
    gateway_ns = VARIANTS[variant].get("gateway", {}).get("namespace") or NAMESPACE
    for o in objs:
        ns = o["metadata"].get("namespace")
        assert ns in (None, NAMESPACE) or (ns == gateway_ns and o["kind"] in ("EnvoyProxy", "EnvoyPatchPolicy")), o["kind"]
    assert not by_kind(objs, "ReferenceGrant")


def _projected(objs: list[dict]) -> tuple[dict, dict]:
    (proxy,) = by_kind(objs, "EnvoyProxy")
    (patch,) = by_kind(objs, "EnvoyPatchPolicy")
    return proxy, patch


def test_projected_mounts_the_pods_token_and_injects_it_on_the_api_servers_cluster_alone():
    objs = render({})
    proxy, patch = _projected(objs)
    k8s = proxy["spec"]["provider"]["kubernetes"]
    assert proxy["spec"]["mergeType"] == "StrategicMerge"  # the GatewayClass's settings stay
    assert k8s["envoyServiceAccount"] == {"name": f"{ROUTE}-envoy"}
    (vol,) = k8s["envoyDeployment"]["pod"]["volumes"]
    # the API server's own audience (none given), a token the kubelet renews
    assert vol["projected"]["sources"] == [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}}]
    (mount,) = k8s["envoyDeployment"]["container"]["volumeMounts"]
    assert (mount["name"], mount["mountPath"], mount["readOnly"]) == (vol["name"], "/var/run/secrets/kube-oidc-discovery", True)
    assert patch["spec"]["targetRef"] == {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "eg"}
    secret, cluster = patch["spec"]["jsonPatches"]
    assert secret["operation"]["value"]["generic_secret"] == {"secret": {"filename": "/var/run/secrets/kube-oidc-discovery/token"}}
    assert cluster["name"] == CLUSTER
    injector, codec = cluster["operation"]["value"]
    generic = injector["typed_config"]["credential"]["typed_config"]
    assert generic["credential"]["name"] == secret["operation"]["value"]["name"] == secret["name"]
    assert generic["header_value_prefix"] == "Bearer "
    assert injector["typed_config"]["overwrite"] is True
    assert codec["name"] == "envoy.filters.http.upstream_codec"
    # no token of the release's own: nothing to renew
    assert not by_kind(objs, "Secret") and not by_kind(objs, "ServiceAccount") and not by_kind(objs, "HTTPRouteFilter")


def test_projected_names_the_gateways_namespace_and_the_envoy_account():
    objs = render(VARIANTS["everything"])
    proxy, patch = _projected(objs)
    assert proxy["metadata"]["namespace"] == patch["metadata"]["namespace"] == "gateways"
    assert patch["spec"]["targetRef"]["name"] == "public"
    assert proxy["spec"]["provider"]["kubernetes"]["envoyServiceAccount"] == {"name": "public-envoy"}
    (vol,) = proxy["spec"]["provider"]["kubernetes"]["envoyDeployment"]["pod"]["volumes"]
    assert vol["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] == 7200
    (crb,) = by_kind(objs, "ClusterRoleBinding")
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": "public-envoy", "namespace": "gateways"}]


def test_inject_puts_the_secrets_token_on_the_backend():
    objs = render(VARIANTS["inject"])
    (route,) = by_kind(objs, "HTTPRoute")
    (ref,) = route["spec"]["rules"][0]["backendRefs"]
    (f,) = ref["filters"]
    (hf,) = by_kind(objs, "HTTPRouteFilter")
    assert f["extensionRef"]["name"] == hf["metadata"]["name"]
    assert hf["spec"]["credentialInjection"]["overwrite"] is True
    assert hf["spec"]["credentialInjection"]["credential"]["valueRef"]["name"] == "my-credential"
    assert not by_kind(objs, "EnvoyProxy") and not by_kind(objs, "EnvoyPatchPolicy")
    (policy,) = by_kind(objs, "EnvoyExtensionPolicy")
    assert policy["spec"]["wasm"][0]["config"]["cluster"] == f"{CLUSTER}/backend/0"


@pytest.mark.parametrize("variant, subject", [
    ("defaults", {"kind": "ServiceAccount", "name": f"{ROUTE}-envoy", "namespace": "envoy-gateway-system"}),
    ("inject", {"kind": "ServiceAccount", "name": "oidc-reader", "namespace": NAMESPACE}),
    ("env-token", {"kind": "ServiceAccount", "name": ROUTE, "namespace": NAMESPACE}),
])
def test_the_account_may_only_read_the_discovery_documents(variant, subject):
    objs = render(VARIANTS[variant])
    (crb,) = by_kind(objs, "ClusterRoleBinding")
    assert crb["roleRef"]["name"] == DISCOVERY_ROLE
    assert crb["subjects"] == [subject]
    for sa in by_kind(objs, "ServiceAccount"):  # the dedicated account (inject, env)
        assert sa["metadata"]["name"] == subject["name"] and sa["automountServiceAccountToken"] is False
    assert not by_kind(objs, "Role") and not by_kind(objs, "ClusterRole") and not by_kind(objs, "RoleBinding")


def test_env_mode_names_the_rule_cluster_and_the_host_key():
    (policy,) = by_kind(render(VARIANTS["env-token"]), "EnvoyExtensionPolicy")
    wasm = policy["spec"]["wasm"][0]
    assert wasm["env"] == {"hostKeys": ["KUBE_OIDC_TOKEN"]}
    assert wasm["config"]["token_env"] == "KUBE_OIDC_TOKEN"
    assert wasm["config"]["cluster"].endswith("/rule/0")
    assert not by_kind(render(VARIANTS["env-token"]), "HTTPRouteFilter")


@pytest.mark.parametrize("variant", ["no-token", "issuers-no-token"])
def test_no_token_mode_sends_no_credential_and_binds_the_anonymous_group(variant):
    objs = render(VARIANTS[variant])
    assert not by_kind(objs, "ServiceAccount") and not by_kind(objs, "Secret") and not by_kind(objs, "HTTPRouteFilter")
    for route in by_kind(objs, "HTTPRoute"):
        assert all("filters" not in ref for rule in route["spec"]["rules"] for ref in rule["backendRefs"])
    (policy,) = by_kind(objs, "EnvoyExtensionPolicy")
    wasm = policy["spec"]["wasm"][0]
    assert "env" not in wasm
    entries = wasm["config"].get("issuers", [wasm["config"]])
    assert not any("token_env" in e for e in entries)
    assert all(e["cluster"].endswith("/rule/0") for e in entries)  # no filter on the backendRef
    (crb,) = by_kind(objs, "ClusterRoleBinding")
    assert crb["roleRef"]["name"] == DISCOVERY_ROLE
    assert crb["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:unauthenticated"}]
    # the same object as the token modes' binding: a change of mode updates it in place
    assert crb["metadata"]["name"] == by_kind(render({}), "ClusterRoleBinding")[0]["metadata"]["name"]


@pytest.mark.parametrize("variant", ["no-token", "issuers-no-token"])
def test_no_token_notes_print_the_authentication_configuration_the_suite_runs(variant):
    text = helm.notes(CHART, VARIANTS[variant], release="kod", namespace=NAMESPACE)
    assert printed_authentication_configuration(text) == ANONYMOUS_DISCOVERY_AUTHENTICATION_CONFIG
    assert "create secret" not in text and "create token" not in text
    (crb,) = by_kind(render(VARIANTS[variant]), "ClusterRoleBinding")
    assert re.search(rf"this release did, in this cluster \(ClusterRoleBinding\s+{crb['metadata']['name']}\)", text)
    if variant == "issuers-no-token":  # each other cluster's CA, and nothing of a token
        assert "create configmap kod-kube-oidc-discovery-envoy-gateway-prod-ca " in text
        assert "create configmap edge-ca " in text
    assert "AuthenticationConfiguration" not in helm.notes(CHART, {}, release="kod", namespace=NAMESPACE)


def test_the_docs_print_the_authentication_configuration_the_suite_runs():
    section = (REPO / "docs" / "envoy-gateway.md").read_text().split("### No token: anonymous discovery", 1)[1]
    assert printed_authentication_configuration(section.split("\n## ", 1)[0]) == ANONYMOUS_DISCOVERY_AUTHENTICATION_CONFIG



def test_issuers_one_route_per_api_server():
    objs = render(ISSUERS)
    routes = {r["metadata"]["name"]: r for r in by_kind(objs, "HTTPRoute")}
    assert sorted(routes) == [f"kod-kube-oidc-discovery-envoy-gateway-{n}" for n in ("edge-1", "local", "prod")]
    edge = routes["kod-kube-oidc-discovery-envoy-gateway-edge-1"]["spec"]
    assert edge["hostnames"] == ["edge-oidc.example.com"]
    assert [m["path"]["value"] for m in edge["rules"][0]["matches"]] == ["/.well-known/openid-configuration", "/openid/v1/jwks"]
    prod = routes["kod-kube-oidc-discovery-envoy-gateway-prod"]["spec"]
    assert [m["path"]["value"] for m in prod["rules"][0]["matches"]] == [
        "/clusters/prod/.well-known/openid-configuration", "/clusters/prod/openid/v1/jwks"]
    assert prod["rules"][0]["backendRefs"][0]["kind"] == "Backend"
    backends = {b["metadata"]["name"]: b["spec"] for b in by_kind(objs, "Backend")}
    assert backends["kod-kube-oidc-discovery-envoy-gateway-edge-1"]["endpoints"] == [{"ip": {"address": "10.20.0.10", "port": 6443}}]
    assert backends["kod-kube-oidc-discovery-envoy-gateway-prod"]["endpoints"] == [{"fqdn": {"hostname": "api.prod.example.internal", "port": 443}}]
    (policy,) = by_kind(objs, "EnvoyExtensionPolicy")
    assert sorted(t["name"] for t in policy["spec"]["targetRefs"]) == sorted(routes)
    # this cluster's token is the Envoy pods' own (projected), the others' Secrets (inject)
    assert [e["cluster"] for e in policy["spec"]["wasm"][0]["config"]["issuers"]] == [
        f"httproute/{NAMESPACE}/kod-kube-oidc-discovery-envoy-gateway-local/rule/0",
        f"httproute/{NAMESPACE}/kod-kube-oidc-discovery-envoy-gateway-prod/rule/0/backend/0",
        f"httproute/{NAMESPACE}/kod-kube-oidc-discovery-envoy-gateway-edge-1/rule/0/backend/0"]
    (_, patch) = _projected(objs)
    assert patch["spec"]["jsonPatches"][1]["name"] == f"httproute/{NAMESPACE}/kod-kube-oidc-discovery-envoy-gateway-local/rule/0"
    assert sorted(f["spec"]["credentialInjection"]["credential"]["valueRef"]["name"] for f in by_kind(objs, "HTTPRouteFilter")) == [
        "edge-token", "kod-kube-oidc-discovery-envoy-gateway-prod-credential"]


@pytest.mark.parametrize("values, message", [
    ({"issuers": [{"name": "a_b", "issuer": "https://a.example.com"}, {"name": "a-b", "issuer": "https://b.example.com"}]},
     "issuers[1].name"),
    ({"issuers": [{"name": "a", "issuer": "https://a.example.com"}, {"name": "b", "issuer": "https://b.example.com"}]},
     "only one entry may be this cluster"),
    ({"jwksUri": "https://k.example.com/jwks", "issuers": [{"name": "a", "issuer": "https://a.example.com"}]},
     "jwksUri is the single-issuer form's"),
])
def test_cross_entry_errors(values, message):
    with pytest.raises(helm_python.HelmError, match=message.replace("[", r"\[").replace("]", r"\]")):
        render(values)


@pytest.mark.parametrize("values, field", [
    ({"token": {"mode": "kubelet"}}, "/token/mode"),
    ({"envoyProxy": {"tokenExpirationSeconds": 60}}, "/envoyProxy/tokenExpirationSeconds"),
    ({"apiServer": {"service": "kubernetes"}}, "/apiServer"),
    ({"image": {"url": "oci://registry.example.com/kod:1"}}, "/image/url"),
    ({"plugin": {"timeoutMs": 0}}, "/plugin/timeoutMs"),
    ({"hosts": []}, "/hosts"),
    ({"image": {"caCertificateRef": {"kind": "ClusterTrustBundle", "name": "registry-ca"}}}, "/image/caCertificateRef/kind"),
    ({"image": {"caCertificateRef": {"name": "Registry CA"}}}, "/image/caCertificateRef/name"),
])
def test_the_schema_rejects(values, field):
    with pytest.raises(helm_python.HelmError) as e:
        render(values)
    assert field.strip("/").split("/")[-1] in str(e.value)


# ---------------------------------------------------------------------- the registry's CA
def test_the_registry_ca_goes_into_the_image_source_only_when_named():
    def image(values):
        (policy,) = by_kind(render(values), "EnvoyExtensionPolicy")
        return policy["spec"]["wasm"][0]["code"]["image"]
    assert "tls" not in image({})
    assert image({"image": {"caCertificateRef": {"name": "registry-ca"}}})["tls"] == {
        "caCertificateRef": {"group": "", "kind": "ConfigMap", "name": "registry-ca"}}
    assert image(VARIANTS["everything"])["tls"] == {
        "caCertificateRef": {"group": "", "kind": "Secret", "name": "registry-ca"}}


# ---------------------------------------------------------------------- extension APIs
GATEWAY_HELM_IMAGE = {"${GatewayImage}": "docker.io/envoyproxy/gateway:v1.9.1", "${GatewayImagePullPolicy}": "IfNotPresent"}


def _notes_extension_apis(text: str) -> tuple[dict, dict]:
    """The NOTES' Envoy Gateway configuration snippet, and its `helm upgrade ... --set`s as values."""
    snippet = re.search(r"envoy-gateway-system\) must have:\n\n((?:  .*\n)+)", text).group(1)
    values: dict = {}
    for path, value in re.findall(r"--set (config\.envoyGateway\.\S+)=(\S+)", text):
        v = yaml.safe_load(value)
        for key in reversed(path.split(".")):
            v = {key: v}
        values = helm._merge(values, v)
    return yaml.safe_load(snippet), values


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_notes_ask_for_exactly_the_extension_apis_the_render_needs(variant):
    objs = render(VARIANTS[variant])
    backends = [b["metadata"]["name"] for b in by_kind(objs, "Backend")]
    patches = by_kind(objs, "EnvoyPatchPolicy")
    text = helm.notes(CHART, VARIANTS[variant], release="kod", namespace=NAMESPACE)
    want = {"enableBackend": True} | ({"enableEnvoyPatchPolicy": True} if patches else {})
    assert _notes_extension_apis(text)[0] == {"extensionApis": want}
    assert _notes_extension_apis(text)[1] == {"config": {"envoyGateway": {"extensionApis": want}}}
    assert f"Envoy Gateway Backends ({', '.join(backends)}):\n" in text
    # the reason the route shows, as Envoy Gateway words it (test_enable_backend.py reads it)
    assert '("Backend is disabled in Envoy\nGateway configuration")' in text


def test_the_notes_helm_setting_gives_envoy_gateway_the_notes_configuration(tmp_path):
    """Envoy Gateway's own chart (charts/gateway-helm of the pinned module; its values.yaml is
    values.tmpl.yaml with the image filled in, as its release does) rendered with the NOTES'
    `--set`: its EnvoyGateway configuration then has the NOTES' snippet, and without it not."""
    snippet, values = _notes_extension_apis(helm.notes(CHART, {}, release="kod", namespace=NAMESPACE))
    chart = tmp_path / "gateway-helm"
    src = module_dir("github.com/envoyproxy/gateway") / "charts" / "gateway-helm"
    for f in src.rglob("*"):
        if f.is_file():
            (chart / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            (chart / f.relative_to(src)).write_bytes(f.read_bytes())
    text = (src / "values.tmpl.yaml").read_text()
    for k, v in GATEWAY_HELM_IMAGE.items():
        text = text.replace(k, v)
    (chart / "values.yaml").write_text(text)

    def config(values):
        files = helm.render_files(chart, values, release="eg", namespace="envoy-gateway-system")
        (cm,) = [yaml.safe_load(t) for p, t in files.items() if p.endswith("templates/envoy-gateway-config.yaml")]
        assert (cm["metadata"]["name"], cm["metadata"]["namespace"]) == ("envoy-gateway-config", "envoy-gateway-system")
        cfg = yaml.safe_load(cm["data"]["envoy-gateway.yaml"])
        assert cfg["kind"] == "EnvoyGateway" and "Error" not in cfg, cfg
        return cfg
    assert not config({}).get("extensionApis")
    cfg = config(values)
    assert cfg["extensionApis"] == snippet["extensionApis"]
    assert cfg["provider"]["type"] == "Kubernetes"
