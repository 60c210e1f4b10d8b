"""The configurations in envoy/ as shipped: Envoy accepts them (`--mode validate`, only the
files they point at replaced by test files), and they say what the documentation says."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from harness import REPO_ROOT
from harness import config as cfgmod
from harness import envoy as envoymod

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SDS_FILE = "/etc/kube-oidc-discovery/token-sds.yaml"
WASM_IN_POD = "/etc/kube-oidc-discovery/kube_oidc_discovery.wasm"
POD_CONFIGS = ["pod.yaml", "pod-static-token.yaml", "pod-anonymous.yaml"]
SHIPPED = [*POD_CONFIGS, "local.yaml"]


def _patch_files_only(cfg: dict, tmp: Path, pki, wasm) -> None:
    """Replace the in-pod file paths by existing files; keep every address and port as shipped."""
    cfgmod.set_trusted_ca(cfg, pki.ca_cert)
    cfgmod.set_wasm_file(cfg, wasm)
    if cfgmod.generic_credential(cfg) is not None:
        (tmp / "sa").mkdir()
        (tmp / "sa" / "token").write_text("validate-token")
        cfgmod.write_token_sds(tmp / "token-sds.yaml", tmp / "sa" / "token")
        cfgmod.set_token_sds(cfg, tmp / "token-sds.yaml", tmp / "sa")


@pytest.mark.parametrize("name", POD_CONFIGS)
def test_pod_configs_validate(tmp_path, pki, wasm, name):
    cfg = cfgmod.load(name)
    _patch_files_only(cfg, tmp_path, pki, wasm)
    path = cfgmod.dump(cfg, tmp_path / name)
    env = {k: v for k, v in os.environ.items() if k != "KUBE_OIDC_TOKEN"}
    if name == "pod-static-token.yaml":
        env["KUBE_OIDC_TOKEN"] = "validate-token"
    r = subprocess.run([envoymod.envoy_bin(), "--mode", "validate", "-c", str(path),
                        "--base-id", str(envoymod.unique_base_id())],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    envoymod.assert_validates_or_is_refused_as_documented(cfg, r)


def test_local_config_validates_unmodified_from_the_repository_root_layout(tmp_path, pki, wasm):
    # envoy/local.yaml uses paths relative to the repository root: lay out those files in a
    # scratch directory and validate the shipped file itself from there.
    (tmp_path / ".run" / "pki").mkdir(parents=True)
    (tmp_path / ".run" / "token").mkdir(parents=True)
    (tmp_path / ".run" / "pki" / "ca.crt").write_bytes(pki.ca_cert.read_bytes())
    (tmp_path / ".run" / "token" / "token").write_text("validate-token")
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "kube_oidc_discovery.wasm").symlink_to(wasm)
    (tmp_path / "envoy").mkdir()
    (tmp_path / "envoy" / "local-token-sds.yaml").symlink_to(REPO_ROOT / "envoy" / "local-token-sds.yaml")
    r = subprocess.run([envoymod.envoy_bin(), "--mode", "validate", "-c", str(REPO_ROOT / "envoy" / "local.yaml"),
                        "--base-id", str(envoymod.unique_base_id())],
                       cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    envoymod.assert_validates_or_is_refused_as_documented((REPO_ROOT / "envoy" / "local.yaml").read_text(), r)


@pytest.mark.parametrize("name", SHIPPED)
def test_plugin_and_api_cluster_as_documented(name):
    cfg = cfgmod.load(name)
    plugin = cfgmod.wasm_plugin(cfg)
    assert plugin["name"] == "kube-oidc-discovery"
    assert plugin["vm_config"]["runtime"] == "envoy.wasm.runtime.v8"
    assert plugin["vm_config"]["vm_id"]
    conf = cfgmod.plugin_config(cfg)
    assert conf["hosts"] == ["oidc.example.com"]
    assert conf.get("cluster", "kubernetes") == "kubernetes"
    filters = [f["name"] for f in cfgmod.hcm(cfg)["http_filters"]]
    assert filters == ["envoy.filters.http.wasm", "envoy.filters.http.router"]
    hcm = cfgmod.hcm(cfg)
    assert hcm.get("normalize_path") is False and hcm.get("merge_slashes") is False
    tls = cfgmod.tls_context(cfg)
    assert tls["sni"] == "kubernetes.default.svc"
    sans = tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]
    assert sans == [{"san_type": "DNS", "matcher": {"exact": "kubernetes.default.svc"}}]
    assert cfg["node"]["id"] and cfg["node"]["cluster"]
    admin = cfg["admin"]["address"]["socket_address"]
    assert (admin["address"], admin["port_value"]) == ("127.0.0.1", 9901)


@pytest.mark.parametrize("name", POD_CONFIGS)
def test_pod_paths(name):
    cfg = cfgmod.load(name)
    assert cfgmod.wasm_plugin(cfg)["vm_config"]["code"]["local"]["filename"] == WASM_IN_POD
    tls = cfgmod.tls_context(cfg)
    assert tls["common_tls_context"]["validation_context"]["trusted_ca"] == {"filename": f"{SA_DIR}/ca.crt"}
    ep = cfgmod.cluster(cfg, "kubernetes")["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert ep["endpoint"]["address"]["socket_address"] == {"address": "kubernetes.default.svc", "port_value": 443}
    listener = cfgmod.listeners(cfg)[0]["address"]["socket_address"]
    assert (listener["address"], listener["port_value"]) == ("0.0.0.0", 8080)


@pytest.mark.parametrize("name,sds_name", [("pod.yaml", "token-sds.yaml"), ("local.yaml", "local-token-sds.yaml")])
def test_credential_injector_reads_the_token_through_the_shipped_sds_file(name, sds_name):
    cfg = cfgmod.load(name)
    names = [f["name"] for f in cfgmod.upstream_http_filters(cfg)]
    assert names == ["envoy.filters.http.credential_injector", "envoy.filters.http.upstream_codec"]
    injector = cfgmod.upstream_http_filters(cfg)[0]["typed_config"]
    assert injector["overwrite"] is True
    gen = cfgmod.generic_credential(cfg)
    assert gen["header_value_prefix"] == "Bearer "
    assert gen["header"].lower() == "authorization"
    src = gen["credential"]["sds_config"]["path_config_source"]
    sds = cfgmod.load(sds_name)
    assert cfgmod.sds_secret_names(sds) == [gen["credential"]["name"]]
    token_file = sds["resources"][0]["generic_secret"]["secret"]["filename"]
    assert Path(token_file).parent == Path(src["watched_directory"]["path"])
    assert Path(token_file).name == "token"
    if name == "pod.yaml":
        assert src["path"] == SDS_FILE
        assert src["watched_directory"]["path"] == SA_DIR
    else:
        assert src["path"] == "envoy/local-token-sds.yaml"
    # the filter itself sends no token in this set-up
    assert "token_env" not in cfgmod.plugin_config(cfg)


def test_static_token_config_passes_the_token_variable_to_the_vm():
    cfg = cfgmod.load("pod-static-token.yaml")
    env_keys = cfgmod.wasm_plugin(cfg)["vm_config"]["environment_variables"]["host_env_keys"]
    assert cfgmod.plugin_config(cfg)["token_env"] == "KUBE_OIDC_TOKEN"
    assert env_keys == ["KUBE_OIDC_TOKEN"]
    assert cfgmod.generic_credential(cfg) is None


def test_local_config_mirrors_the_pod_config():
    pod, local = cfgmod.load("pod.yaml"), cfgmod.load("local.yaml")
    strip = lambda c: json.dumps(cfgmod.upstream_http_filters(c), sort_keys=True)  # noqa: E731
    # same upstream filter chain, except the SDS file and the watched directory
    pod_gen, local_gen = cfgmod.generic_credential(pod), cfgmod.generic_credential(local)
    for g in (pod_gen, local_gen):
        g["credential"]["sds_config"]["path_config_source"] = {}
    assert strip(pod) == strip(local)
    assert cfgmod.tls_context(pod)["sni"] == cfgmod.tls_context(local)["sni"]
    assert cfgmod.plugin_config(pod) == cfgmod.plugin_config(local)
    ls = cfgmod.listeners(local)[0]["address"]["socket_address"]
    assert (ls["address"], ls["port_value"]) == ("127.0.0.1", 8080)
    ep = cfgmod.cluster(local, "kubernetes")["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert ep["endpoint"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 6443}


def test_anonymous_config_is_the_static_token_config_without_any_credential():
    """envoy/pod-anonymous.yaml (docs/configuration.md, "No token: anonymous discovery"): the
    static-token config with its token taken out, and nothing else changed (listener, scoping,
    the API server's TLS), so the other pod configs' tests speak for the rest of it."""
    anon, static = cfgmod.load("pod-anonymous.yaml"), cfgmod.load("pod-static-token.yaml")
    assert "token_env" not in cfgmod.plugin_config(anon)
    assert cfgmod.generic_credential(anon) is None and cfgmod.upstream_http_filters(anon) == []
    assert "environment_variables" not in cfgmod.wasm_plugin(anon)["vm_config"]
    assert cfgmod.tls_context(anon) == cfgmod.tls_context(static)
    del cfgmod.wasm_plugin(static)["vm_config"]["environment_variables"]
    cfgmod.update_plugin_config(static, token_env=None)
    cfgmod.set_plugin_config(anon, cfgmod.plugin_config(anon))  # the same JSON text
    assert anon == static
    text = (REPO_ROOT / "envoy" / "pod-anonymous.yaml").read_text()
    for word in ("KUBE_OIDC_TOKEN", "credential_injector", "token-sds", "sds_config"):
        assert word not in text
