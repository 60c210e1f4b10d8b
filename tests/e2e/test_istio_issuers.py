"""The chart's `issuers` form in the Envoy that Istio would configure: envoy/istio-gateway.yaml
with the rendered WasmPlugin, EnvoyFilters, ServiceEntries and DestinationRules applied as istiod
applies them (tests/e2e/istiod.py), against three fake API servers, each with its own CA, token
and issuer: this cluster's (static token), another's at a fixed address (rotating token,
credential_injector) and another's reached by DNS (static token, SNI and SAN kubernetes.default.svc).
Each issuer's clients get their own cluster's documents."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.serialization import Encoding

from e2e import istiod
from e2e.checks import DISCOVERY, DOCS, JWKS, assert_generic_error, poll
from harness import client
from harness import config as cfgmod
from harness import pki as pkimod
from harness.envoy import Envoy
from harness.fake_apiserver import FakeApiServer
from harness.stack import new_token
from harness.tokendir import TokenDir

import helm  # noqa: E402  (tools/helm.py, on sys.path through conftest)

ISTIO = "istio-gateway.yaml"
SDS_MOUNT = "/etc/kube-oidc-discovery"


class Cluster:
    """One cluster's API server: its CA, a server certificate for ``sans``, a token and issuer."""

    def __init__(self, workdir: Path, name: str, issuer: str, sans: list[str]):
        self.dir = workdir / name
        self.dir.mkdir(parents=True)
        self.ca = pkimod.make_ca(f"{name} cluster CA")
        cert, key = pkimod.make_leaf(self.ca, "kube-apiserver", sans, ["127.0.0.1"])
        (self.dir / "server.crt").write_bytes(cert)
        (self.dir / "server.key").write_bytes(key)
        self.ca_file = self.dir / "ca.crt"
        self.ca_file.write_bytes(self.ca.cert.public_bytes(Encoding.PEM))
        self.token = new_token()
        self.issuer = issuer
        self.fake = FakeApiServer(self.dir / "server.crt", self.dir / "server.key", token=self.token,
                                  issuer=issuer).start()


@pytest.fixture
def clusters(tmp_path):
    made = {
        "local": Cluster(tmp_path, "local", "https://oidc.example.com/clusters/local", pkimod.API_SERVER_SANS),
        "prod": Cluster(tmp_path, "prod", "https://oidc.example.com/clusters/prod", ["api.prod.example.internal"]),
        "edge": Cluster(tmp_path, "edge", "https://edge-oidc.example.com", pkimod.API_SERVER_SANS),
    }
    yield made
    for c in made.values():
        c.fake.stop()


def chart_values(clusters: dict[str, Cluster]) -> dict:
    """In-cluster `local`; `prod` at a fixed address with a rotating token; `edge` by DNS
    (localhost) with the default static token mode, checked as kubernetes.default.svc (a name every
    API server's certificate carries)."""
    return {"issuers": [
        {"name": "local", "issuer": clusters["local"].issuer},
        {"name": "prod", "issuer": clusters["prod"].issuer, "tokenMode": "rotating",
         "apiServer": {"host": "api.prod.example.internal", "port": clusters["prod"].fake.port,
                       "addresses": ["127.0.0.1"]}},
        {"name": "edge", "issuer": clusters["edge"].issuer,
         "apiServer": {"host": "localhost", "port": clusters["edge"].fake.port, "sni": "kubernetes.default.svc"}},
    ], "publicGateway": {"create": True}}


def istio_config(objs: list[dict], clusters: dict[str, Cluster], workdir: Path, wasm: Path,
                 ca_secrets: dict[str, Path]) -> tuple[dict, dict[str, str], dict[str, TokenDir]]:
    """envoy/istio-gateway.yaml as istiod turns the rendered objects into Envoy config. The CA
    Secret of each DestinationRule's credentialName is ``ca_secrets[name]``. Returns the config,
    the gateway's environment (the static tokens) and the mounted token directories (rotating)."""
    kinds: dict[str, list[dict]] = {}
    for o in objs:
        kinds.setdefault(o["kind"], []).append(o)
    (wp,) = kinds["WasmPlugin"]
    efs = {o["metadata"]["name"].rsplit("-", 1)[1]: o["spec"] for o in kinds["EnvoyFilter"]}
    cfg = cfgmod.load(ISTIO)
    cfgmod.set_listener(cfg, "127.0.0.1", 0)
    cfgmod.set_admin(cfg, "127.0.0.1", 0)
    cfgmod.set_wasm_file(cfg, wasm)
    cfgmod.set_plugin_config(cfg, wp["spec"]["pluginConfig"])
    env_keys = [e["name"] for e in wp["spec"]["vmConfig"]["env"] if e["valueFrom"] == "HOST"]
    cfgmod.set_vm_env_keys(cfg, env_keys)
    # this cluster's API server, as in test_istio.py; the application cluster on a closed port
    local = "outbound|443||kubernetes.default.svc.cluster.local"
    cfgmod.set_cluster_endpoint(cfg, local, "127.0.0.1", clusters["local"].fake.port)
    cfgmod.set_trusted_ca(cfg, clusters["local"].ca_file, local)
    cfgmod.set_cluster_endpoint(cfg, "outbound|8080||app.default.svc.cluster.local", "127.0.0.1", 9)
    # each ServiceEntry with its DestinationRule
    rules = {dr["spec"]["host"]: dr["spec"] for dr in kinds["DestinationRule"]}
    for se in kinds["ServiceEntry"]:
        dr = rules[se["spec"]["hosts"][0]]
        cfg["static_resources"]["clusters"].append(
            istiod.service_entry_cluster(se["spec"], dr, ca_secrets[dr["trafficPolicy"]["tls"]["credentialName"]]))
    # the credential EnvoyFilter; its ConfigMap and the token Secrets mounted into test directories
    (cm,) = kinds["ConfigMap"]
    tokens: dict[str, TokenDir] = {}
    for patch in efs["credential"]["configPatches"]:
        cluster = cfgmod.cluster(cfg, patch["match"]["cluster"]["name"])
        istiod.merge_cluster(cluster, patch["patch"]["value"])
        src = cfgmod.generic_credential(cfg, cluster["name"])["credential"]["sds_config"]["path_config_source"]
        mount = src["watched_directory"]["path"]
        tokens[cluster["name"]] = TokenDir(workdir / "mounts" / mount.strip("/").replace("/", "_"))
        sds = yaml.safe_load(cm["data"][src["path"].removeprefix(SDS_MOUNT + "/")])
        (secret,) = sds["resources"]
        assert secret["generic_secret"]["secret"]["filename"] == f"{mount}/token"
        secret["generic_secret"]["secret"]["filename"] = str(tokens[cluster["name"]].token_file)
        src["path"] = str(cfgmod.dump(sds, workdir / f"{secret['name']}.yaml"))
        src["watched_directory"]["path"] = str(tokens[cluster["name"]].path)
    # the VirtualService's hosts, then the scope EnvoyFilter
    (vs,) = kinds["VirtualService"]
    rc = cfgmod.hcm(cfg)["route_config"]
    i = next(i for i, vh in enumerate(rc["virtual_hosts"]) if vh["name"] == "oidc.example.com:443")
    istiod.unscoped(cfg)
    rc["virtual_hosts"][i:i + 1] = istiod.gateway_virtual_hosts(rc["virtual_hosts"][i]["routes"], vs["spec"]["hosts"], 443)
    assert istiod.apply_scope(cfg, efs["scope"], inline=True) == (1, 1)  # edge-oidc.example.com:443, both hosts
    env = {e["token_env"]: clusters[e["name"]].token for e in wp["spec"]["pluginConfig"]["issuers"] if "token_env" in e}
    assert sorted(env) == sorted(env_keys)
    return cfg, env, tokens


def wasm_plugin(objs: list[dict]) -> dict:
    (wp,) = [o for o in objs if o["kind"] == "WasmPlugin"]
    return wp["spec"]


def credential_names(objs: list[dict]) -> dict[str, str]:
    """API-server host -> the credentialName of its DestinationRule (another cluster's)."""
    return {o["spec"]["host"]: o["spec"]["trafficPolicy"]["tls"]["credentialName"] for o in objs
            if o["kind"] == "DestinationRule" and "credentialName" in o["spec"]["trafficPolicy"]["tls"]}


def start(tmp_path: Path, clusters: dict[str, Cluster], wasm: Path, cas: dict[str, str] | None = None,
          **plugin) -> tuple[Envoy, list[dict], dict[str, TokenDir]]:
    """Envoy running the rendered chart. ``cas``: the cluster whose CA each API-server host's CA
    Secret holds (default its own)."""
    objs = helm.render(values=chart_values(clusters) | {"plugin": plugin})
    cas = cas or {"api.prod.example.internal": "prod", "localhost": "edge"}
    secrets = {cred: clusters[cas[host]].ca_file for host, cred in credential_names(objs).items()}
    cfg, env, tokens = istio_config(objs, clusters, tmp_path, wasm, secrets)
    by_cluster = {e["cluster"]: e["name"] for e in wasm_plugin(objs)["pluginConfig"]["issuers"]}
    for cluster, td in tokens.items():
        td.write_token(clusters[by_cluster[cluster]].token)
    return Envoy(cfg, tmp_path / "envoy", env=os.environ | env).start(), objs, tokens


def test_each_issuer_gets_its_own_clusters_documents(tmp_path, clusters, wasm):
    envoy, objs, tokens = start(tmp_path, clusters, wasm, refreshIntervalS=5)
    try:
        urls = {"local": ("oidc.example.com", "/clusters/local"), "prod": ("oidc.example.com", "/clusters/prod"),
                "edge": ("edge-oidc.example.com", "")}
        entries = {e["name"]: e for e in wasm_plugin(objs)["pluginConfig"]["issuers"]}
        for name, (host, prefix) in urls.items():
            c = clusters[name]
            r = client.get(envoy.port, prefix + DISCOVERY, host=host)
            assert r.status == 200, (name, r.status, r.body[:200])
            doc = json.loads(r.body)
            assert (doc["issuer"], doc["jwks_uri"]) == (c.issuer, f"https://{host}{prefix}{JWKS}")
            r = client.get(envoy.port, prefix + JWKS, host=host)
            assert r.status == 200 and r.body == c.fake.jwks_body(), name
            # its own API server, with its own token and the entry's authority
            assert {rec.path for rec in c.fake.history} == set(DOCS), name
            for rec in c.fake.history:
                assert rec.header_all("authorization") == [f"Bearer {c.token}"], name
                assert rec.header("host") == entries[name]["authority"], name
        # the issuers' hosts answer nothing else
        assert_generic_error(client.get(envoy.port, "/clusters/dev" + JWKS, host="oidc.example.com"), 404)
        assert_generic_error(client.get(envoy.port, JWKS, host="oidc.example.com"), 404)
        # prod's rotating token: a re-issued one is used without a restart
        prod = clusters["prod"]
        new = new_token()
        tokens[entries["prod"]["cluster"]].write_token(new)  # the kubelet's ..data swap
        prod.fake.set_token(new)
        seen = len(prod.fake.history)
        poll(lambda: len(prod.fake.history) > seen, 12, what="prod's next refresh")
        for rec in prod.fake.history[seen:]:
            assert rec.header_all("authorization") == [f"Bearer {new}"]
    finally:
        envoy.stop()


def test_an_api_server_not_signed_by_its_clusters_ca_is_never_served_and_the_others_are(tmp_path, clusters, wasm):
    # prod's CA Secret holds edge's CA
    envoy, _, _ = start(tmp_path, clusters, wasm, cas={"api.prod.example.internal": "edge", "localhost": "edge"},
                        timeoutMs=1000)
    try:
        assert_generic_error(client.get(envoy.port, "/clusters/prod" + JWKS, host="oidc.example.com"), 503)
        assert poll(lambda: clusters["prod"].fake.handshake_failures, 5, what="a refused handshake")
        assert clusters["prod"].fake.count() == 0
        assert client.get(envoy.port, "/clusters/local" + JWKS, host="oidc.example.com").status == 200
        assert client.get(envoy.port, JWKS, host="edge-oidc.example.com").status == 200
    finally:
        envoy.stop()
