"""envoy/multi-cluster.yaml as shipped: Envoy accepts it (only the files it points at replaced by
test files), and it is what docs/configuration.md says: one listener, the filter's `issuers` form with two
path-prefixed issuers on the public host, two API-server clusters, each with its own CA, SAN and
credential (prod: a token from the VM environment; dev: credential_injector with a file SDS
secret)."""

from __future__ import annotations

from pathlib import Path

from harness import config as cfgmod
from harness import envoy as envoymod

NAME = "multi-cluster.yaml"
SDS = "multi-cluster-dev-token-sds.yaml"
WASM_IN_POD = "/etc/kube-oidc-discovery/kube_oidc_discovery.wasm"


def test_it_validates(tmp_path, pki, wasm, monkeypatch):
    cfg = cfgmod.load(NAME)
    cfgmod.set_wasm_file(cfg, wasm)
    for cluster in cfgmod.api_clusters(cfg):
        cfgmod.set_trusted_ca(cfg, pki.ca_cert, cluster)
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "token").write_text("validate-token")
    cfgmod.write_token_sds(tmp_path / "sds.yaml", tmp_path / "dev" / "token", SDS)
    cfgmod.set_token_sds(cfg, tmp_path / "sds.yaml", tmp_path / "dev", "dev-api")
    monkeypatch.setenv("KOD_TOKEN_PROD", "validate-token")  # the filter reads it at start
    r = envoymod.validate(cfgmod.dump(cfg, tmp_path / NAME))
    envoymod.assert_validates_or_is_refused_as_documented(cfg, r)


def test_one_listener_two_issuers_each_cluster_with_its_own_ca_san_and_credential():
    cfg = cfgmod.load(NAME)
    assert len(cfgmod.listeners(cfg)) == 1
    plugin = cfgmod.plugin_config(cfg)
    assert set(plugin) == {"issuers"}
    prod, dev = plugin["issuers"]
    assert (prod["name"], prod["issuer"]) == ("prod", "https://oidc.example.com/clusters/prod")
    assert (dev["name"], dev["issuer"]) == ("dev", "https://oidc.example.com/clusters/dev")
    assert cfgmod.api_clusters(cfg) == ["prod-api", "dev-api"]
    assert cfgmod.other_clusters(cfg) == ["app"]
    domains = cfgmod.hcm(cfg)["route_config"]["virtual_hosts"][0]["domains"]
    assert domains == ["oidc.example.com", "oidc.example.com:*"]
    assert cfgmod.wasm_plugin(cfg)["vm_config"]["code"]["local"]["filename"] == WASM_IN_POD
    cas = set()
    for entry in plugin["issuers"]:
        tls = cfgmod.tls_context(cfg, entry["cluster"])
        name = entry["authority"]
        assert tls["sni"] == name
        validation = tls["common_tls_context"]["validation_context"]
        assert validation["match_typed_subject_alt_names"] == [
            {"san_type": "DNS", "matcher": {"exact": name}}]
        cas.add(validation["trusted_ca"]["filename"])
        ep = cfgmod.cluster(cfg, entry["cluster"])["load_assignment"]["endpoints"][0]["lb_endpoints"]
        assert ep[0]["endpoint"]["address"]["socket_address"] == {"address": name, "port_value": 443}
    assert len(cas) == 2, "each cluster its own CA"
    # prod: the filter sends the token from a VM environment variable, the cluster injects none
    env_keys = cfgmod.wasm_plugin(cfg)["vm_config"]["environment_variables"]["host_env_keys"]
    assert prod["token_env"] == "KOD_TOKEN_PROD" and env_keys == ["KOD_TOKEN_PROD"]
    assert cfgmod.generic_credential(cfg, "prod-api") is None
    # dev: the cluster's credential_injector reads the token through the shipped SDS file
    assert "token_env" not in dev
    names = [f["name"] for f in cfgmod.upstream_http_filters(cfg, "dev-api")]
    assert names == ["envoy.filters.http.credential_injector", "envoy.filters.http.upstream_codec"]
    gen = cfgmod.generic_credential(cfg, "dev-api")
    assert gen["header"] == "authorization" and gen["header_value_prefix"] == "Bearer "
    sds = cfgmod.load(SDS)
    assert cfgmod.sds_secret_names(sds) == [gen["credential"]["name"]]
    src = gen["credential"]["sds_config"]["path_config_source"]
    token_file = Path(sds["resources"][0]["generic_secret"]["secret"]["filename"])
    assert token_file.parent == Path(src["watched_directory"]["path"])
    assert Path(validation_ca(cfg, "dev-api")).parent == token_file.parent, "one Secret: ca.crt and token"


def validation_ca(cfg: dict, cluster: str) -> str:
    return cfgmod.tls_context(cfg, cluster)["common_tls_context"]["validation_context"]["trusted_ca"]["filename"]
