"""The `issuers` form in real Envoy (envoy/multi-cluster.yaml), against fake API servers of
different clusters: each its own CA (a harness Pki of its own), certificate name, token, signing
keys and `--service-account-issuer`. The ``fleet`` and ``cluster_pkis`` fixtures that start them
are in tests/conftest.py.

- prod: path-prefixed on oidc.example.com, its own CA, token from the VM env (KOD_TOKEN_PROD)
- dev: path-prefixed on oidc.example.com, another CA, token injected by its cluster (SDS file)
- edge: host-based on edge-oidc.example.com, a third cluster (prod-api's settings, another
  server, token from KOD_TOKEN_EDGE)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from harness import config as cfgmod
from harness.constants import DEV_ISSUER, PROD_ISSUER
from harness.fake_apiserver import FakeApiServer

EDGE = "https://edge-oidc.example.com"
EDGE_HOST = "edge-oidc.example.com"

# name -> (issuer, cluster, the certificate name its cluster checks)
CLUSTERS = {
    "prod": (PROD_ISSUER, "prod-api", "api.prod.example.internal"),
    "dev": (DEV_ISSUER, "dev-api", "api.dev.example.internal"),
    "edge": (EDGE, "edge-api", "api.prod.example.internal"),
}


@dataclass
class Cluster:
    name: str
    issuer: str
    fake: FakeApiServer
    token: str


def public_path(name: str, doc_path: str) -> str:
    """Where the filter serves a document of this issuer: its path, then the API server's."""
    issuer = CLUSTERS[name][0]
    prefix = issuer.split("://", 1)[1].partition("/")[2]
    return (f"/{prefix}" if prefix else "") + doc_path


def host_of(name: str) -> str:
    return CLUSTERS[name][0].split("://", 1)[1].split("/", 1)[0]


def plugin_config(**globals_) -> dict:
    entries = [
        {"name": "prod", "issuer": PROD_ISSUER, "cluster": "prod-api",
         "authority": "api.prod.example.internal", "token_env": "KOD_TOKEN_PROD"},
        {"name": "dev", "issuer": DEV_ISSUER, "cluster": "dev-api", "authority": "api.dev.example.internal"},
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
