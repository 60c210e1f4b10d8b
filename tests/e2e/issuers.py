"""The `issuers` form in real Envoy (envoy/multi-cluster.yaml), against fake API servers of
different clusters: each its own CA (a harness Pki of its own), certificate name, token, signing
keys and `--service-account-issuer`.

- prod: path-prefixed on oidc.example.com, its own CA, token from the VM env (KOD_TOKEN_PROD)
- dev: path-prefixed on oidc.example.com, another CA, token injected by its cluster (SDS file)
- edge: host-based on edge-oidc.example.com, a third cluster (prod-api's settings, another
  server, token from KOD_TOKEN_EDGE)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest

from harness import config as cfgmod
from harness import pki as pkimod
from harness.fake_apiserver import FakeApiServer
from harness.fleet import Fleet, Upstream
from harness.stack import new_token

PROD = "https://oidc.example.com/clusters/prod"
DEV = "https://oidc.example.com/clusters/dev"
EDGE = "https://edge-oidc.example.com"
HOST = "oidc.example.com"
EDGE_HOST = "edge-oidc.example.com"
DISCOVERY = "/.well-known/openid-configuration"
JWKS = "/openid/v1/jwks"
P = "kube_oidc_discovery"

# name -> (issuer, cluster, the certificate name its cluster checks)
CLUSTERS = {
    "prod": (PROD, "prod-api", "api.prod.example.internal"),
    "dev": (DEV, "dev-api", "api.dev.example.internal"),
    "edge": (EDGE, "edge-api", "api.prod.example.internal"),
}


def public_path(name: str, doc_path: str) -> str:
    """Where the filter serves a document of this issuer: its path, then the API server's."""
    issuer = CLUSTERS[name][0]
    prefix = issuer.split("://", 1)[1].partition("/")[2]
    return (f"/{prefix}" if prefix else "") + doc_path


def host_of(name: str) -> str:
    return CLUSTERS[name][0].split("://", 1)[1].split("/", 1)[0]


def plugin_config(**globals_) -> dict:
    entries = [
        {"name": "prod", "issuer": PROD, "cluster": "prod-api",
         "authority": "api.prod.example.internal", "token_env": "KOD_TOKEN_PROD"},
        {"name": "dev", "issuer": DEV, "cluster": "dev-api", "authority": "api.dev.example.internal"},
        {"name": "edge", "issuer": EDGE, "cluster": "edge-api",
         "authority": "api.prod.example.internal", "token_env": "KOD_TOKEN_EDGE"},
    ]
    return {"issuers": entries, **globals_}


def three_clusters() -> dict:
    """envoy/multi-cluster.yaml with a third API-server cluster for the host-based issuer: a
    copy of prod-api (same CA and certificate name, another server and token)."""
    cfg = cfgmod.load("multi-cluster.yaml")
    edge = copy.deepcopy(cfgmod.cluster(cfg, "prod-api"))
    edge["name"] = edge["load_assignment"]["cluster_name"] = "edge-api"
    cfg["static_resources"]["clusters"].append(edge)
    cfgmod.set_vm_env_keys(cfg, ["KOD_TOKEN_PROD", "KOD_TOKEN_EDGE"])
    # the filter runs only on the OIDC virtual host: the host-based issuer's host goes there too
    oidc = cfgmod.hcm(cfg)["route_config"]["virtual_hosts"][0]
    oidc["domains"] += [EDGE_HOST, f"{EDGE_HOST}:*"]
    return cfg


@dataclass
class Cluster:
    name: str
    issuer: str
    fake: FakeApiServer
    token: str


@pytest.fixture(scope="session")
def cluster_pkis(tmp_path_factory) -> dict[str, pkimod.Pki]:
    """A PKI per certificate name: prod's (also edge's) and dev's, each with its own CA."""
    names = {n for _, _, n in CLUSTERS.values()}
    return {n: pkimod.generate(tmp_path_factory.mktemp(n), [n]) for n in sorted(names)}


@pytest.fixture
def fleet(tmp_path, wasm, cluster_pkis):
    """``fleet(before_envoy=None, **plugin_globals)`` -> (Fleet, {name:
    Cluster}): three fake API servers started, Envoy started with the three issuers."""
    started: list = []

    def make(before_envoy=None, backend_port=None, concurrency=1,
             wasm_trace=False, **plugin_globals):
        clusters: dict[str, Cluster] = {}
        upstreams: dict[str, Upstream] = {}
        for name, (issuer, cluster, cert_name) in CLUSTERS.items():
            pki = cluster_pkis[cert_name]
            token = new_token()
            fake = FakeApiServer(pki.server_cert, pki.server_key, token=token, issuer=issuer)
            fake.start()
            started.append(fake)
            clusters[name] = Cluster(name, issuer, fake, token)
            upstreams[cluster] = Upstream(fake, pki.ca_cert, token)
        if before_envoy:
            before_envoy(clusters)
        f = Fleet(tmp_path / "fleet", wasm, upstreams, cfg=three_clusters(),
                  plugin=plugin_config(**plugin_globals), backend_port=backend_port,
                  concurrency=concurrency, wasm_trace=wasm_trace)
        started.append(f)
        f.start()
        return f, clusters

    yield make
    for s in reversed(started):
        if isinstance(s, Fleet):
            print(f"---- Envoy log (tail) ----\n{s.envoy.tail(30)}")
        s.stop()
