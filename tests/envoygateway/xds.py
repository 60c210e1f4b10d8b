"""Reading an Envoy config dump (/config_dump?include_eds) of the Envoy that Envoy Gateway drives:
its clusters, listeners, route configurations and secrets, and the Wasm filter in them."""

from __future__ import annotations

import json

from harness.config import is_wasm

CRED_TYPE = "type.googleapis.com/envoy.extensions.filters.http.credential_injector.v3.CredentialInjector"


def _section(dump: dict, suffix: str) -> dict:
    (sec,) = [c for c in dump["configs"] if c["@type"].rsplit(".", 1)[-1] == suffix]
    return sec


def clusters(dump: dict) -> dict[str, dict]:
    sec = _section(dump, "ClustersConfigDump")
    out = {c["cluster"]["name"]: c["cluster"] for c in sec.get("static_clusters", [])}
    out.update({c["cluster"]["name"]: c["cluster"] for c in sec.get("dynamic_active_clusters", [])})
    return out


def listeners(dump: dict) -> list[dict]:
    sec = _section(dump, "ListenersConfigDump")
    return [l["active_state"]["listener"] for l in sec.get("dynamic_listeners", []) if "active_state" in l]


def route_configs(dump: dict) -> dict[str, dict]:
    sec = _section(dump, "RoutesConfigDump")
    return {r["route_config"]["name"]: r["route_config"] for r in sec.get("dynamic_route_configs", [])}


def secrets(dump: dict) -> dict[str, dict]:
    sec = _section(dump, "SecretsConfigDump")
    return {s["name"]: s["secret"] for s in sec.get("dynamic_active_secrets", [])}


def endpoints(dump: dict) -> dict[str, dict]:
    try:
        sec = _section(dump, "EndpointsConfigDump")
    except ValueError:
        return {}
    return {e["endpoint_config"]["cluster_name"]: e["endpoint_config"]
            for e in sec.get("dynamic_endpoint_configs", [])}


def filter_chains(listener: dict) -> list[dict]:
    """A listener's filter chains, its default one included."""
    return listener.get("filter_chains", []) + ([listener["default_filter_chain"]]
                                                if "default_filter_chain" in listener else [])


def http_filters(listener: dict) -> list[dict]:
    out = []
    for chain in filter_chains(listener):
        for f in chain.get("filters", []):
            out += f.get("typed_config", {}).get("http_filters", [])
    return out


def wasm_filters(dump: dict) -> list[dict]:
    return [f for l in listeners(dump) for f in http_filters(l) if is_wasm(f)]


def wasm_plugin_config(f: dict) -> dict:
    """The plugin configuration the filter receives (a StringValue of JSON)."""
    return json.loads(f["typed_config"]["config"]["configuration"]["value"])


def routes(dump: dict) -> list[dict]:
    return [r for rc in route_configs(dump).values() for vh in rc.get("virtual_hosts", []) for r in vh.get("routes", [])]


def upstream_filters(cluster: dict) -> list[dict]:
    opts = cluster.get("typed_extension_protocol_options", {})
    return [f for o in opts.values() for f in o.get("http_filters", [])]
