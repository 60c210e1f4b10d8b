"""The chart's `issuers` form: one pluginConfig entry per issuer, each calling the cluster istiod
builds for its API server (this cluster's, or a ServiceEntry's), TLS checked with that cluster's
CA, its token by its own mode, the plugin enabled on every issuer host, and the docs held to the
rendered names. What every variant gets (lint, validity, the filter's parser, the schema's
rejections) is in test_chart.py, whose VARIANTS include these."""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

import helm
from test_chart import (DISCOVERY_ROLE, check_config, ISTIO_CLUSTER, K8S_VERSION, README, VARIANTS, _notes_patch, by_kind,
                        injected_credential, one)

FORMS = ["issuers", "issuers-remote"]
SDS_MOUNT = "/etc/kube-oidc-discovery"


def named(objs: list[dict], kind: str, name: str) -> dict:
    (obj,) = [o for o in by_kind(objs).get(kind, []) if o["metadata"]["name"] == name]
    return obj


def plugin_entries(objs: list[dict]) -> dict[str, dict]:
    return {e["name"]: e for e in one(objs, "WasmPlugin")["spec"]["pluginConfig"]["issuers"]}


def remote(values: dict) -> list[dict]:
    return [e for e in values["issuers"] if "apiServer" in e]


def mode(values: dict, entry: dict) -> str:
    return entry.get("tokenMode") or values.get("token", {}).get("mode", "static")


def istio_clusters(objs: list[dict]) -> dict[str, str]:
    """ServiceEntry host -> the name istiod gives its cluster: outbound|<port>||<host>
    (pilot/pkg/model/service.go, BuildSubsetKey; the ServiceEntry's port number, not a target port)."""
    return {h: f"outbound|{p['number']}||{h}" for se in by_kind(objs)["ServiceEntry"]
            for h in se["spec"]["hosts"] for p in se["spec"]["ports"]}


# ---------------------------------------------------------------------- the filter's configuration
@pytest.mark.parametrize("variant", FORMS)
def test_plugin_config_has_an_entry_per_issuer_and_only_the_global_keys(variant):
    values = VARIANTS[variant]
    cfg = one(helm.render(values=values), "WasmPlugin")["spec"]["pluginConfig"]
    assert set(cfg) == {"issuers", "timeout_ms", "refresh_interval_s", "max_stale_s"}
    assert [(e["name"], e["issuer"], e.get("jwks_uri")) for e in cfg["issuers"]] == \
        [(v["name"], v["issuer"], v.get("jwksUri")) for v in values["issuers"]]


@pytest.mark.parametrize("variant", FORMS)
def test_each_issuer_calls_the_cluster_istio_builds_for_its_api_server(variant):
    values = VARIANTS[variant]
    objs = helm.render(values=values)
    entries, clusters = plugin_entries(objs), istio_clusters(objs)
    for v in values["issuers"]:
        e = entries[v["name"]]
        if "apiServer" in v:
            assert e["cluster"] == clusters[v["apiServer"]["host"]]
            assert e["authority"] == v["apiServer"]["host"]
        else:  # this cluster's, as in the single-issuer form
            dr = named(objs, "DestinationRule", "kod-kube-oidc-discovery-apiserver")
            assert e["cluster"] == ISTIO_CLUSTER == f"outbound|443||{dr['spec']['host']}"
            assert e["authority"] == "kubernetes.default.svc"
    # no ServiceEntry that no issuer uses
    assert sorted(clusters.values()) == sorted(entries[v["name"]]["cluster"] for v in remote(values))


# ---------------------------------------------------------------------- other clusters' API servers
@pytest.mark.parametrize("variant", FORMS)
def test_service_entries_resolve_each_api_server_for_the_gateway_namespace_only(variant):
    values = VARIANTS[variant]
    objs = helm.render(values=values)
    for v in remote(values):
        api = v["apiServer"]
        (se,) = [o for o in by_kind(objs)["ServiceEntry"] if o["spec"]["hosts"] == [api["host"]]]
        spec = se["spec"]
        assert se["metadata"]["namespace"] == helm.NAMESPACE
        # "." is the ServiceEntry's own namespace: istiod indexes it for that namespace alone
        # (push_context.go, initServiceRegistry; the gateway's scope, DefaultSidecarScopeForGateway)
        assert spec["exportTo"] == ["."]
        assert spec["location"] == "MESH_EXTERNAL"
        assert "workloadSelector" not in spec  # would select endpoints, not clients
        assert spec["ports"] == [{"number": api.get("port", 443), "name": "https", "protocol": "HTTPS"}]
        if api.get("addresses"):  # STATIC: the endpoints are the addresses (IPs only)
            assert spec["resolution"] == "STATIC"
            assert spec["endpoints"] == [{"address": a} for a in api["addresses"]]
        else:  # DNS without endpoints: Envoy resolves the host itself
            assert spec["resolution"] == "DNS" and "endpoints" not in spec


@pytest.mark.parametrize("variant", FORMS)
def test_each_api_server_is_checked_with_its_own_clusters_ca_by_the_gateway_only(variant):
    values = VARIANTS[variant]
    objs = helm.render(values=values)
    secrets = []
    for v in remote(values):
        api = v["apiServer"]
        (dr,) = [o for o in by_kind(objs)["DestinationRule"] if o["spec"]["host"] == api["host"]]
        assert dr["metadata"]["namespace"] == helm.NAMESPACE
        assert dr["spec"]["exportTo"] == ["."]
        assert dr["spec"]["workloadSelector"] == {"matchLabels": {"istio": "ingressgateway"}}
        sni = api.get("sni") or api["host"]
        secret = f"kod-kube-oidc-discovery-{v['name'].replace('_', '-')}-ca"
        # credentialName: istiod serves the CA of that Secret (key cacert or ca.crt) by SDS;
        # an explicit sni and SANs: no auto_sni / auto_san_validation (cluster_tls.go)
        assert dr["spec"]["trafficPolicy"] == {"tls": {
            "mode": "SIMPLE", "credentialName": secret, "sni": sni,
            "subjectAltNames": api.get("subjectAltNames") or [sni]}}
        secrets.append(secret)
    assert len(set(secrets)) == len(secrets) == len(remote(values))


# ---------------------------------------------------------------------- public hosts
@pytest.mark.parametrize("variant", FORMS + ["gateway-api-issuers"])
def test_the_chart_routes_every_issuer_host_and_path(variant):
    values = VARIANTS[variant] | {"hosts": ["unused.example.com"]}  # hosts: the single-issuer form's
    hosts = list(dict.fromkeys(urlsplit(e["issuer"]).hostname for e in values["issuers"]))
    paths = [f"{urlsplit(e['issuer']).path.rstrip('/')}{d}" for e in values["issuers"]
             for d in ("/.well-known/openid-configuration", "/openid/v1/jwks")]
    objs = by_kind(helm.render(values=values))
    if "HTTPRoute" in objs:
        (route,) = objs["HTTPRoute"]
        assert route["spec"]["hostnames"] == hosts
        assert [m["path"] for m in route["spec"]["rules"][0]["matches"]] == [{"type": "Exact", "value": p}
                                                                           for p in paths]
    elif "Gateway" in objs:
        (gw,), (vs,), (cert,) = objs["Gateway"], objs["VirtualService"], objs["Certificate"]
        assert gw["spec"]["servers"][0]["hosts"] == vs["spec"]["hosts"] == cert["spec"]["dnsNames"] == hosts
        assert [m["uri"]["exact"] for m in vs["spec"]["http"][0]["match"]] == paths
    else:
        assert f"the public hosts {' '.join(hosts)}\n" in helm.notes(values=values)


# ---------------------------------------------------------------------- tokens
@pytest.mark.parametrize("variant", FORMS)
def test_each_token_reaches_envoy_by_its_entrys_mode(variant):
    values = VARIANTS[variant]
    objs = helm.render(values=values)
    wp, entries = one(objs, "WasmPlugin")["spec"], plugin_entries(objs)
    patches = {p["match"]["cluster"]["name"]: p for p in one(objs, "EnvoyFilter", "-credential")["spec"]["configPatches"]}
    static = [entries[v["name"]] for v in values["issuers"] if mode(values, v) == "static"]
    rotating = [entries[v["name"]] for v in values["issuers"] if mode(values, v) == "rotating"]
    assert static and rotating
    # static: the filter reads its own variable, which Istio hands the VM from the proxy's env
    assert [e["name"] for e in wp["vmConfig"]["env"] if e["valueFrom"] == "HOST"] == [e["token_env"] for e in static]
    assert len({e["token_env"] for e in static}) == len(static)
    # rotating: Envoy injects it on that cluster alone, from that entry's own SDS file and token
    assert not any("token_env" in e for e in rotating)
    assert sorted(patches) == sorted(e["cluster"] for e in rotating)
    cm = one(objs, "ConfigMap")
    sources = [injected_credential(p) for p in patches.values()]
    for src in sources:
        sds = src["sds_config"]["path_config_source"]
        assert sds["path"].startswith(f"{SDS_MOUNT}/")
        (secret,) = yaml.safe_load(cm["data"][sds["path"][len(SDS_MOUNT) + 1:]])["resources"]
        assert secret["name"] == src["name"]
        assert secret["generic_secret"]["secret"]["filename"] == sds["watched_directory"]["path"] + "/token"
    assert len(cm["data"]) == len({s["name"] for s in sources}) == \
        len({s["sds_config"]["path_config_source"]["watched_directory"]["path"] for s in sources}) == len(rotating)


@pytest.mark.parametrize("variant", FORMS)
def test_notes_give_the_gateway_every_token_and_name_the_secrets_to_create(variant):
    values = VARIANTS[variant]
    objs = helm.render(values=values)
    text = helm.notes(values=values)
    wp, entries = one(objs, "WasmPlugin")["spec"], plugin_entries(objs)
    _, patch = _notes_patch(text)
    pod = patch["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert list(env) == [e["name"] for e in wp["vmConfig"]["env"]]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert set(mounts.values()) == set(volumes)
    patches = {p["match"]["cluster"]["name"]: p for p in one(objs, "EnvoyFilter", "-credential")["spec"]["configPatches"]}
    cm = one(objs, "ConfigMap")["metadata"]["name"]
    assert volumes[mounts[SDS_MOUNT]]["configMap"]["name"] == cm
    chart_secret = [o["metadata"]["name"] for o in by_kind(objs).get("Secret", [])]
    for v in values["issuers"]:
        e = entries[v["name"]]
        if "token_env" in e:
            secret = env[e["token_env"]]["name"]
            assert env[e["token_env"]]["key"] == "token"
        else:
            token_dir = injected_credential(patches[e["cluster"]])["sds_config"]["path_config_source"]["watched_directory"]["path"]
            secret = volumes[mounts[token_dir]]["secret"]["secretName"]
        if "apiServer" not in v:
            assert [secret] == chart_secret  # this cluster's: the chart's own Secret
            continue
        # another cluster's: the user creates its token and CA Secrets with these lines
        (dr,) = [o for o in by_kind(objs)["DestinationRule"] if o["spec"]["host"] == v["apiServer"]["host"]]
        ca = dr["spec"]["trafficPolicy"]["tls"]["credentialName"]
        assert re.search(rf"^   kubectl -n {helm.NAMESPACE} create secret generic {ca} --from-file=ca\.crt=\S+$",
                         text, re.M), ca
        assert re.search(rf"^   kubectl -n {helm.NAMESPACE} create secret generic {secret} --from-file=token=\S+$",
                         text, re.M), secret
        assert secret not in chart_secret
    for v in values["issuers"]:
        base = v["issuer"].rstrip("/")
        assert f"curl -s {base}/.well-known/openid-configuration\n" in text
        assert f"curl -s {base}/openid/v1/jwks\n" in text


# ---------------------------------------------------------------------- the README
def _block(text: str, first_line: str, lang: str = "yaml") -> str:
    return re.search(rf"```{lang}\n({re.escape(first_line)}\n.*?)```", text, re.S).group(1)


def test_readme_example_renders_and_its_secret_commands_are_the_notes():
    text = README.read_text()
    values = yaml.safe_load(_block(text, "issuers:"))
    notes = helm.notes(values=values)
    commands = [line for line in _block(text, "kubectl --context prod apply -f remote.yaml", "sh").splitlines()
                if line.startswith("kubectl -n ")]
    assert len(commands) == 2
    for line in commands:
        assert f"\n   {line}\n" in notes, line
    assert {e["name"] for e in remote(values)} >= {"prod"}


def test_readme_remote_account_is_valid_and_may_only_read_the_discovery_documents():
    text = README.read_text()
    objs = by_kind([o for o in yaml.safe_load_all(_block(text, "# remote.yaml")) if o])
    for kind in objs.values():
        for o in kind:
            kubernetes_validate.validate(o, K8S_VERSION, strict=True)
    (sa,), (secret,), (crb,) = objs["ServiceAccount"], objs["Secret"], objs["ClusterRoleBinding"]
    assert set(objs) == {"Namespace", "ServiceAccount", "Secret", "ClusterRoleBinding"}
    ns, name = sa["metadata"]["namespace"], sa["metadata"]["name"]
    assert sa.get("automountServiceAccountToken") is False
    assert crb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": DISCOVERY_ROLE}
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": ns}]
    assert secret["type"] == "kubernetes.io/service-account-token"
    assert secret["metadata"]["annotations"] == {"kubernetes.io/service-account.name": name}
    sh = _block(text, "kubectl --context prod apply -f remote.yaml", "sh")
    reads = re.findall(r"-n (\S+) get secret (\S+) -o jsonpath='\{\.data\.(\S+?)\}'", sh)
    assert reads == [(ns, secret["metadata"]["name"], "token"), (ns, secret["metadata"]["name"], r"ca\.crt")]


def test_readme_issuer_table_lists_every_key_of_an_entry():
    schema = json.loads((helm.CHART / "values.schema.json").read_text())
    item = schema["properties"]["issuers"]["items"]["properties"]
    keys = set(item) | {f"apiServer.{k}" for k in item["apiServer"]["properties"]}
    documented = set(re.findall(r"^\| `issuers\[\]\.([a-zA-Z.]+)` \|", README.read_text(), re.M))
    assert documented == keys


def test_issuers_example_in_values_yaml_is_valid():
    """The commented example in values.yaml renders as written."""
    text = (helm.CHART / "values.yaml").read_text()
    example = re.search(r"^# Example:\n((?:#   .*\n)+)", text, re.M).group(1)
    values = {"issuers": yaml.safe_load("\n".join(line[4:] for line in example.splitlines()))}
    assert [e["name"] for e in plugin_entries(helm.render(values=values)).values()] == ["local", "prod"]


def test_schema_limits_of_issuers_are_the_filters_own():
    """maxItems and the name's length in values.schema.json are where the filter's own parser
    (tools/check_config.rs) draws the line: it accepts the schema's bound and refuses one past
    it, naming the key."""
    schema = json.loads((helm.CHART / "values.schema.json").read_text())["properties"]["issuers"]
    max_items = schema["maxItems"]
    max_name = int(re.fullmatch(r"\^\[a-z0-9_-\]\{1,(\d+)\}\$", schema["items"]["properties"]["name"]["pattern"]).group(1))

    def issuers(n: int, name_len: int = 1) -> dict:
        return {"issuers": [{"name": f"{i:0{name_len}d}"[-name_len:] if n > 1 else "n" * name_len,
                             "issuer": f"https://oidc.example.com/c{i}", "cluster": f"c{i}"}
                            for i in range(n)]}

    assert check_config(issuers(max_items, 2), {}).returncode == 0
    past = check_config(issuers(max_items + 1, 2), {})
    assert past.returncode != 0 and "issuers" in past.stderr + past.stdout
    assert check_config(issuers(1, max_name), {}).returncode == 0
    long = check_config(issuers(1, max_name + 1), {})
    assert long.returncode != 0 and "issuers[0].name" in long.stderr + long.stdout