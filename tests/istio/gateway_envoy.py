"""What istiod produced (tests/istio/istiod.py), as files an upstream Envoy 1.40 loads, so the
gateway's config runs in real Envoy. Everything istiod (and pilot-agent) sent is kept as sent
except the three changes below, each in one place here:

1. ADDRESSES (`_test_addresses`): every listener binds 127.0.0.1 on an ephemeral port instead of
   0.0.0.0:<gateway port> (tests use 127.0.0.1 only); the admin interface likewise. Upstream
   addresses need no change: the test gives istiod Kubernetes objects and ServiceEntries that
   already point at 127.0.0.1 (tests/istio/cluster.py).
2. DELIVERY (`_to_files`): istiod's ADS and the agent's SDS socket become files. Every config
   source that says `ads` (RDS, ECDS, EDS, SDS) or names the agent's SDS cluster becomes a
   `path_config_source` of a DiscoveryResponse file holding exactly the resource istiod (or the
   agent) sent for that name; LDS and CDS are two such files named in the bootstrap. All files
   are binary proto encoded by the Go protos istiod uses (Envoy's JSON loader reads an Any of
   google.protobuf.Empty differently from istiod's jsonpb).
3. EXTENSIONS (`ISTIO_PROXY_ONLY`): istio-proxy's own extensions, absent from upstream Envoy,
   are removed wherever they appear, each listed with why it does not matter here.
4. MESH mTLS (`_without_mesh_mtls`): a cluster's `transport_socket_matches` entry for in-mesh
   endpoints (match tlsMode: istio) is removed: it needs the workload certificate pilot-agent
   gets from istiod's CA (SDS `default`, `ROOTCA`), which the test has not; no endpoint here is
   in the mesh, so Envoy would never pick it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from istio import istiod

TYPES = {
    "listeners": "type.googleapis.com/envoy.config.listener.v3.Listener",
    "clusters": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    "routes": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
    "extensions": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
    "endpoints": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
    "secrets": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
}
DISCOVERY_RESPONSE = "envoy.service.discovery.v3.DiscoveryResponse"
BOOTSTRAP = "envoy.config.bootstrap.v3.Bootstrap"

# Extensions compiled into istio-proxy only (github.com/istio/proxy), by type URL: upstream Envoy
# refuses a config naming them. None takes part in serving the OIDC documents or routing.
ISTIO_PROXY_ONLY = {
    # Istio's telemetry (istio_requests_total ...): metrics only.
    "type.googleapis.com/stats.PluginConfig": "istio.stats: Istio's request metrics",
    # Peer metadata for telemetry, read from headers / the mTLS peer: telemetry only.
    "type.googleapis.com/io.istio.http.peer_metadata.Config": "peer_metadata: telemetry labels",
    "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange": "metadata_exchange: telemetry labels over mTLS",
    # ALPN override for Istio's mTLS between proxies: the gateway's upstreams here are not in the mesh.
    "type.googleapis.com/istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig": "istio.alpn: mesh mTLS ALPN",
    # Istio's PeerAuthentication filter: no mTLS peers at an ingress gateway's public listener.
    "type.googleapis.com/io.istio.network.authn.Config": "istio_authn: mesh peer authentication",
}


TYPED_STRUCTS = ("type.googleapis.com/udpa.type.v1.TypedStruct", "type.googleapis.com/xds.type.v3.TypedStruct")


def _type(obj: dict) -> str | None:
    """An extension's type; for one istiod wraps in a TypedStruct (its Go has no such proto),
    the wrapped type."""
    tc = obj.get("typed_config")
    if not isinstance(tc, dict):
        return None
    if tc.get("@type") in TYPED_STRUCTS:
        return "type.googleapis.com/" + tc.get("type_url", "").rsplit("/", 1)[-1]
    return tc.get("@type")


def strip_istio_proxy_only(node, removed: set[str]) -> None:
    """Removes, in place, each list entry (a filter) whose typed_config is istio-proxy's own."""
    if isinstance(node, dict):
        for v in node.values():
            strip_istio_proxy_only(v, removed)
    elif isinstance(node, list):
        keep = []
        for item in node:
            t = _type(item) if isinstance(item, dict) else None
            if t in ISTIO_PROXY_ONLY:
                removed.add(t)
                continue
            strip_istio_proxy_only(item, removed)
            keep.append(item)
        node[:] = keep


def _without_mesh_mtls(clusters: list[dict]) -> None:
    for c in clusters:
        if "transport_socket_matches" in c:
            c["transport_socket_matches"] = [m for m in c["transport_socket_matches"]
                                             if m.get("match", {}).get("tlsMode") != "istio"]
            if not c["transport_socket_matches"]:
                del c["transport_socket_matches"]


def _test_addresses(listeners: list[dict]) -> None:
    for ls in listeners:
        ls["address"] = {"socket_address": {"address": "127.0.0.1", "port_value": 0}}
        ls.pop("additional_addresses", None)


class Files:
    """The DiscoveryResponse files, one per resource (Envoy's file subscriptions for RDS, ECDS,
    EDS and SDS each take exactly the one resource they name)."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.jobs: list[tuple[str, dict, Path]] = []

    def add(self, kind: str, resources: list[dict], name: str) -> dict:
        path = self.dir / f"{kind}-{hashlib.sha1(name.encode()).hexdigest()[:12]}.pb"
        self.jobs.append((DISCOVERY_RESPONSE, {
            "version_info": "1", "type_url": TYPES[kind],
            "resources": [{"@type": TYPES[kind], **r} for r in resources]}, path))
        return {"path_config_source": {"path": str(path)}, "resource_api_version": "V3"}


def _to_files(node, by_name: dict[str, dict[str, dict]], files: Files, missing: list[str]) -> None:
    """Rewrites every ADS / agent-SDS config source under ``node`` to its file (DELIVERY)."""
    def source(kind: str, name: str, old: dict) -> dict:
        res = by_name[kind].get(name)
        if res is None:
            missing.append(f"{kind} {name}")
            res = {}
        new = files.add(kind, [res] if res else [], name)
        if "initial_fetch_timeout" in old:
            new["initial_fetch_timeout"] = old["initial_fetch_timeout"]
        return new

    if isinstance(node, dict):
        if isinstance(node.get("rds"), dict):
            rds = node["rds"]
            rds["config_source"] = source("routes", rds["route_config_name"], rds["config_source"])
        if isinstance(node.get("config_discovery"), dict):
            cd = node["config_discovery"]
            cd["config_source"] = source("extensions", node["name"], cd["config_source"])
        if node.get("type") == "EDS":
            eds = node["eds_cluster_config"]
            eds["eds_config"] = source("endpoints", eds.get("service_name") or node["name"], eds["eds_config"])
        sds = node.get("sds_config")
        if isinstance(sds, dict) and ("ads" in sds or "api_config_source" in sds):  # not a file the chart names
            node["sds_config"] = source("secrets", node["name"], sds)
        for v in node.values():
            _to_files(v, by_name, files, missing)
    elif isinstance(node, list):
        for v in node:
            _to_files(v, by_name, files, missing)


def bootstrap(result: istiod.Result, workdir: Path, *, node_id: str) -> tuple[Path, set[str]]:
    """Writes the bootstrap and its files under ``workdir``; returns the bootstrap's path and the
    istio-proxy-only extensions removed. The ECDS and file-root: secrets are pilot-agent's (the
    result must have been generated with ``agent``)."""
    x = json.loads(json.dumps(result.xds))  # a copy to rewrite
    by_name = {k: {istiod.name_of(r): r for r in x.get(k, [])} for k in TYPES}
    for r in result.agent_ecds:  # the Wasm module as the agent rewrote it: a local file
        by_name["extensions"][r["name"]] = json.loads(json.dumps(r))
    for r in result.agent_secrets:
        by_name["secrets"][r["name"]] = json.loads(json.dumps(r))
    removed: set[str] = set()
    strip_istio_proxy_only(x, removed)
    for k in by_name:
        strip_istio_proxy_only(list(by_name[k].values()), removed)
    _test_addresses(x["listeners"])
    _without_mesh_mtls(x["clusters"])
    files = Files(workdir / "xds")
    missing: list[str] = []
    _to_files(x["listeners"], by_name, files, missing)
    _to_files(x["clusters"], by_name, files, missing)
    # the resources those files hold may name more (a route's ECDS? a secret's SDS?): none in practice
    if missing:
        raise AssertionError(f"istiod sent config that names what it never sent: {missing}")
    lds = files.add("listeners", x["listeners"], "lds")
    cds = files.add("clusters", x["clusters"], "cds")
    boot = {
        "node": {"id": node_id, "cluster": "istio-ingressgateway.istio-ingress"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "dynamic_resources": {"lds_config": lds, "cds_config": cds},
    }
    path = workdir / "bootstrap.pb"
    files.jobs.append((BOOTSTRAP, boot, path))
    istiod.encode(files.jobs)
    return path, removed
