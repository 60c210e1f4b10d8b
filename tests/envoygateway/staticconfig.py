"""envoy/envoy-gateway.yaml from the config dump of the Envoy that Envoy Gateway drives: the same
listeners, routes, clusters and filters, as a static bootstrap a reader of plain Envoy can run.

What changes, and only that:
- xDS becomes static: listeners with their RDS route configuration inline, clusters, and the SDS
  secrets they name as static secrets; EDS clusters become STATIC with the endpoints Envoy had;
  the ADS bootstrap cluster (`xds_cluster`) goes.
- What only exists in the test: the ports (Gateway listener 8080, admin 9901, the API server's
  stand-in's port 6443, the other application 127.0.0.1:8000), the cluster CA (inline in the
  dump) as the pod's service-account `ca.crt` file, the token as the file the chart's EnvoyProxy
  mounts (the projected token, already a file in the dump), and
  the module Envoy fetched from Envoy Gateway's Wasm HTTP server (its `wasm_cluster` and client
  certificate) as a local file."""

from __future__ import annotations

import copy

import xds

SA_CA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
TOKEN_FILE = "/var/run/secrets/kube-oidc-discovery/token"
WASM_FILE = "/etc/kube-oidc-discovery/kube_oidc_discovery.wasm"
LISTENER_PORT, ADMIN_PORT, API_PORT, APP_PORT = 8080, 9901, 6443, 8000
DROP_CLUSTERS = {"xds_cluster", "wasm_cluster"}
HEADER = """\
# The config Envoy Gateway v{version} produced for charts/kube-oidc-discovery-envoy-gateway
# (defaults, hosts oidc.example.com) on a Gateway `eg` with one HTTP listener, plus another
# application's HTTPRoute (app.example.com), taken from its Envoy's config dump and made static
# (tests/envoygateway/staticconfig.py says what changed). For readers of plain Envoy; regenerate
# with `make envoy-gateway-config`, tests/envoygateway/test_shipped_config.py checks it for drift.
# Files it reads: {ca} (cluster CA), {token} (the pod's projected service-account token), {wasm}.
# It resolves kubernetes.default.svc.cluster.local (cluster DNS) and needs Envoy 1.37 or later
# (header_value_prefix).
"""


def _walk(node, fn):
    if isinstance(node, dict):
        fn(node)
        for v in node.values():
            _walk(v, fn)
    elif isinstance(node, list):
        for v in node:
            _walk(v, fn)


def to_static(dump: dict, ports: dict[int, int]) -> dict:
    """``ports``: a port of the test (listener, admin, API server, app) -> its canonical port."""
    (boot_sec,) = [c for c in dump["configs"] if c["@type"].endswith("BootstrapConfigDump")]
    boot = copy.deepcopy(boot_sec["bootstrap"])
    boot.pop("dynamic_resources", None)
    # the node as the bootstrap and command line set it, not what this Envoy build reports about
    # itself (version, extensions)
    boot["node"] = {k: v for k, v in boot.get("node", {}).items() if k in ("id", "cluster", "locality")}
    # Envoy Gateway passes these as --service-node/--service-cluster; a route configuration needs them
    boot["node"].setdefault("id", "envoy-gateway-proxy")
    boot["node"].setdefault("cluster", "envoy-gateway-proxy")
    routes = xds.route_configs(dump)
    eps = xds.endpoints(dump)
    listeners = sorted(copy.deepcopy(xds.listeners(dump)), key=lambda l: l["name"])
    for l in listeners:
        for chain in xds.filter_chains(l):
            for f in chain.get("filters", []):
                hcm = f.get("typed_config", {})
                if "rds" in hcm:
                    hcm["route_config"] = copy.deepcopy(routes[hcm.pop("rds")["route_config_name"]])
                    hcm["route_config"].pop("@type", None)
    clusters = []
    for name, c in sorted(xds.clusters(dump).items()):
        if name in DROP_CLUSTERS:
            continue
        c = copy.deepcopy(c)
        if c.get("type") == "EDS":
            c["type"] = "STATIC"
            c.pop("eds_cluster_config", None)
            ep = copy.deepcopy(eps[name])
            for loc in ep.get("endpoints", []):
                for lb in loc.get("lb_endpoints", []):
                    lb.pop("health_status", None)
            c["load_assignment"] = {"cluster_name": name, "endpoints": ep.get("endpoints", [])}
        clusters.append(c)
    secrets = [copy.deepcopy(s) for n, s in sorted(xds.secrets(dump).items())]
    used = set()

    def fix(node: dict) -> None:
        # SDS over ADS -> a static secret of the same name
        if "sds_config" in node and "ads" in node["sds_config"]:
            node.pop("sds_config")
            used.add(node.get("name"))
        if "port_value" in node and node["port_value"] in ports:
            node["port_value"] = ports[node["port_value"]]
        # Envoy Gateway's stat prefix names the listener's port: http-<port>
        prefix, _, port = node.get("stat_prefix", "").rpartition("-")
        if prefix and port.isdigit() and int(port) in ports:
            node["stat_prefix"] = f"{prefix}-{ports[int(port)]}"
        if "trusted_ca" in node and "inline_bytes" in node["trusted_ca"]:
            node["trusted_ca"] = {"filename": SA_CA}
        if node.get("@type", "").endswith("generic.v3.Generic") or "generic_secret" in node:
            gs = node.get("generic_secret")
            if gs and "secret" in gs:
                gs["secret"] = {"filename": TOKEN_FILE}
        if "remote" in node.get("code", {}):
            node["code"] = {"local": {"filename": WASM_FILE}}

    _walk(listeners, fix)
    _walk(clusters, fix)
    _walk(secrets, fix)
    for res in listeners + clusters + secrets:
        res.pop("@type", None)  # the dump's Any wrapper; a static resource is the message itself
    boot["static_resources"] = {
        "listeners": listeners,
        "clusters": [c for c in boot.get("static_resources", {}).get("clusters", []) if c["name"] not in DROP_CLUSTERS]
        + clusters,
        # only the secrets something still names (the Wasm client certificate goes with wasm_cluster)
        "secrets": [s for s in secrets if s["name"] in used],
    }
    _walk(boot["static_resources"], lambda n: n.pop("sds_config", None) if "ads" in n.get("sds_config", {}) else None)
    admin = boot.get("admin", {}).get("address", {}).get("socket_address", {})
    if admin.get("port_value") in ports:
        admin["port_value"] = ports[admin["port_value"]]
    return boot
