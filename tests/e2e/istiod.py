"""What istiod does with the chart's objects, for the Istio-shaped e2e tests: it applies an
EnvoyFilter's patches to the config it built, by the rules of pilot/pkg/networking/core/envoyfilter
(Istio 1.22-1.30), and sends a WasmPlugin's filter config by ECDS. Only what the chart uses."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from harness import config as cfgmod

WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"


def merge_cluster(base: dict, patch: dict) -> None:
    """A CLUSTER MERGE: messages merge field by field, but an entry of a map field
    (typed_extension_protocol_options) is replaced whole."""
    for k, v in patch.items():
        if k == "typed_extension_protocol_options":
            base.setdefault(k, {}).update(v)
        elif isinstance(v, dict) and isinstance(base.get(k), dict):
            merge_cluster(base[k], v)
        else:
            base[k] = v


def apply_scope(cfg: dict, spec: dict, *, inline: bool) -> tuple[int, int]:
    """Applies the `-scope` EnvoyFilter (HTTP_FILTER REPLACE, VIRTUAL_HOST MERGE) to listener 0:
    a REPLACE only where a filter of that name exists (listener_patch.go, replaceFunc), a MERGE of
    typed_per_filter_config only into the virtual host of that name (rc_patch.go,
    virtualHostMatch), a map entry replaced whole. ``inline``: keep the filter's inline
    typed_config (envoy/istio-gateway.yaml) instead of the patch's ECDS source. Returns how many
    filter and virtual-host patches applied."""
    hcm = cfgmod.hcm(cfg)
    filters = vhosts = 0
    for p in spec["configPatches"]:
        match, value = p["match"], p["patch"]["value"]
        assert match["context"] == "GATEWAY"
        if p["applyTo"] == "HTTP_FILTER":
            assert p["patch"]["operation"] == "REPLACE"
            assert match["listener"]["filterChain"]["filter"]["name"] == cfgmod.HCM
            name = match["listener"]["filterChain"]["filter"]["subFilter"]["name"]
            for i, f in enumerate(hcm["http_filters"]):
                if f["name"] == name:
                    new = copy.deepcopy(value)
                    if inline:
                        del new["config_discovery"]
                        new["typed_config"] = f["typed_config"]
                    hcm["http_filters"][i] = new
                    filters += 1
        elif p["applyTo"] == "VIRTUAL_HOST":
            assert p["patch"]["operation"] == "MERGE" and set(value) == {"typed_per_filter_config"}
            for vh in hcm["route_config"]["virtual_hosts"]:
                if vh["name"] == match["routeConfiguration"]["vhost"]["name"]:
                    vh.setdefault("typed_per_filter_config", {}).update(copy.deepcopy(value["typed_per_filter_config"]))
                    vhosts += 1
        else:
            raise AssertionError(f"not a scope patch: {p['applyTo']}")
    return filters, vhosts


def unscoped(cfg: dict) -> None:
    """The filter in every request's path, no per-host entries: envoy/istio-gateway.yaml as
    istiod builds it before the `-scope` EnvoyFilter (or with plugin.scope all), or a shipped
    config without its scoping."""
    for f in cfgmod.hcm(cfg)["http_filters"]:
        f.pop("disabled", None)
    for vh in cfgmod.hcm(cfg)["route_config"]["virtual_hosts"]:
        vh.pop("typed_per_filter_config", None)


def to_ecds(cfg: dict, name: str, ecds_file: Path) -> None:
    """The Wasm filter as istiod sends it: named ``name``, its config a TypedExtensionConfig of
    that name delivered by ECDS. A file stands in for ADS (a static Envoy has no xDS server)."""
    for i, f in enumerate(cfgmod.hcm(cfg)["http_filters"]):
        if cfgmod.is_wasm(f):
            resource = {"@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
                        "name": name, "typed_config": f["typed_config"]}
            ecds_file.write_text(yaml.safe_dump({"resources": [resource]}, sort_keys=False))
            cfgmod.hcm(cfg)["http_filters"][i] = {
                "name": name,
                "config_discovery": {"config_source": {"path_config_source": {"path": str(ecds_file)},
                                                       "resource_api_version": "V3"},
                                     "type_urls": [WASM_TYPE]}}
            return
    raise KeyError("no Wasm filter")


def ads_to_file(cfg: dict, ecds_file: Path) -> None:
    """The patched ECDS filters read ``ecds_file`` where istiod's read ADS."""
    for f in cfgmod.hcm(cfg)["http_filters"]:
        src = f.get("config_discovery", {}).get("config_source")
        if src is not None and "ads" in src:
            del src["ads"]
            src["path_config_source"] = {"path": str(ecds_file)}


def service_entry_cluster(se: dict, dr: dict, ca_file: Path) -> dict:
    """The cluster istiod gives a gateway for a ServiceEntry (one host, one port) and its
    DestinationRule's SIMPLE TLS: named outbound|<port>||<host> (model.BuildSubsetKey);
    resolution STATIC: the endpoints (EDS in Istio, static here), DNS without endpoints: the host
    resolved by Envoy (STRICT_DNS, cluster.go convertResolution); TLS with the rule's sni and SANs
    and the CA istiod serves by SDS from the credentialName Secret, here ``ca_file``
    (cluster_tls.go constructUpstreamTLS)."""
    (host,), (port,) = se["hosts"], se["ports"]
    assert dr["host"] == host and set(dr["trafficPolicy"]) == {"tls"}
    tls = dr["trafficPolicy"]["tls"]
    assert tls["mode"] == "SIMPLE" and "credentialName" in tls and "caCertificates" not in tls
    name = f"outbound|{port['number']}||{host}"
    if se["resolution"] == "STATIC":
        addresses, kind = [e["address"] for e in se["endpoints"]], "STATIC"
    else:
        assert se["resolution"] == "DNS" and "endpoints" not in se
        addresses, kind = [host], "STRICT_DNS"
    return {
        # V4_ONLY: what istiod selects for a gateway with IPv4 addresses (SelectDNSLookupFamily)
        "name": name, "type": kind, "connect_timeout": "10s", "dns_lookup_family": "V4_ONLY",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": a, "port_value": port["number"]}}}}
            for a in addresses]}]},
        "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": tls["sni"],
            "common_tls_context": {"validation_context": {
                "trusted_ca": {"filename": str(ca_file)},
                "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": s}}
                                                  for s in tls["subjectAltNames"]]}}}},
    }


def gateway_virtual_hosts(routes: list[dict], hosts: list[str], port: int) -> list[dict]:
    """The virtual hosts istiod builds from one VirtualService of ``hosts`` whose every host has
    the same ``routes``: one per host `<host>:<port>`, merged into the alphabetically first
    (gateway.go, collapseDuplicateRoutes)."""
    first, *_ = ordered = sorted(hosts)
    return [{"name": f"{first}:{port}", "domains": ordered, "routes": copy.deepcopy(routes)}]
