"""Loads the shipped Envoy configurations (envoy/*.yaml) and patches them structurally for a
test or a local run: addresses and ports, the API-server cluster's endpoint, the CA, the token
SDS file and directory, the Wasm file and the plugin configuration. The tests run the shipped
configurations, never copies of them.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import REPO_ROOT

ENVOY_DIR = REPO_ROOT / "envoy"
HCM = "envoy.filters.network.http_connection_manager"
CREDENTIAL_INJECTOR = "envoy.filters.http.credential_injector"
HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
API_CLUSTER = "kubernetes"


def load(name: str) -> dict:
    """A shipped configuration, e.g. ``load("pod.yaml")``."""
    with open(ENVOY_DIR / name) as f:
        return yaml.safe_load(f)


def dump(cfg: dict, path: Path | str) -> Path:
    p = Path(path)
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


def clone(cfg: dict) -> dict:
    return copy.deepcopy(cfg)


# ---------------------------------------------------------------------- finding things
def listeners(cfg: dict) -> list[dict]:
    return cfg["static_resources"]["listeners"]


def hcm(cfg: dict, listener: int = 0) -> dict:
    for f in listeners(cfg)[listener]["filter_chains"][0]["filters"]:
        if f["name"] == HCM:
            return f["typed_config"]
    raise KeyError("no http_connection_manager")


WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"


def unscoped(cfg: dict) -> None:
    """The filter in every request's path: no `disabled`, no per-virtual-host entries (a shipped
    config without its scoping)."""
    for f in hcm(cfg)["http_filters"]:
        f.pop("disabled", None)
    for vh in hcm(cfg)["route_config"]["virtual_hosts"]:
        vh.pop("typed_per_filter_config", None)


def is_wasm(http_filter: dict) -> bool:
    """Whether an HTTP filter is a Wasm filter, told by its type: Istio names the filter after
    the WasmPlugin, not ``envoy.filters.http.wasm``."""
    return http_filter.get("typed_config", {}).get("@type") == WASM_TYPE


def wasm_plugin(cfg: dict, listener: int = 0) -> dict:
    """The ``PluginConfig`` of the Wasm filter (name, vm_config, configuration)."""
    for f in hcm(cfg, listener)["http_filters"]:
        if is_wasm(f):
            return f["typed_config"]["config"]
    raise KeyError("no Wasm filter")


def cluster(cfg: dict, name: str) -> dict:
    for c in cfg["static_resources"]["clusters"]:
        if c["name"] == name:
            return c
    raise KeyError(f"no cluster {name!r}")


def upstream_http_filters(cfg: dict, cluster_name: str = API_CLUSTER) -> list[dict]:
    opts = cluster(cfg, cluster_name).get("typed_extension_protocol_options", {}).get(HTTP_OPTIONS, {})
    return opts.get("http_filters", [])


def generic_credential(cfg: dict, cluster_name: str = API_CLUSTER) -> dict | None:
    """The ``Generic`` injected-credential config of the API cluster, or None without injector."""
    for f in upstream_http_filters(cfg, cluster_name):
        if f["name"] == CREDENTIAL_INJECTOR:
            return f["typed_config"]["credential"]["typed_config"]
    return None


def tls_context(cfg: dict, cluster_name: str = API_CLUSTER) -> dict:
    return cluster(cfg, cluster_name)["transport_socket"]["typed_config"]


def api_clusters(cfg: dict) -> list[str]:
    """The clusters the filter calls: each ``issuers`` entry's ``cluster``, or the single-issuer
    form's ``cluster`` (default ``kubernetes``, as in the filter), or the default when the
    configuration is malformed."""
    try:
        plugin = plugin_config(cfg)
    except (ValueError, KeyError):  # malformed, or no Wasm filter at all
        return [API_CLUSTER]
    entries = plugin.get("issuers") if isinstance(plugin, dict) else None
    if isinstance(entries, list):
        named = [e.get("cluster") for e in entries if isinstance(e, dict)]
        return list(dict.fromkeys(n for n in named if isinstance(n, str) and n)) or [API_CLUSTER]
    return [plugin.get("cluster") or API_CLUSTER]


def api_cluster(cfg: dict) -> str:
    """The (first) cluster the filter calls."""
    return api_clusters(cfg)[0]


def other_clusters(cfg: dict) -> list[str]:
    """Every cluster but the API servers': the application(s) behind the gateway."""
    apis = api_clusters(cfg)
    return [c["name"] for c in cfg["static_resources"]["clusters"] if c["name"] not in apis]


def plugin_config(cfg: dict) -> dict:
    value = wasm_plugin(cfg).get("configuration", {}).get("value", "")
    return json.loads(value) if value.strip() else {}


# ---------------------------------------------------------------------- patching
def set_plugin_config(cfg: dict, plugin: dict | str, listener: int = 0) -> None:
    """Sets the filter's JSON configuration; a str is used verbatim (for malformed configs)."""
    value = plugin if isinstance(plugin, str) else json.dumps(plugin)
    wasm_plugin(cfg, listener)["configuration"] = {
        "@type": "type.googleapis.com/google.protobuf.StringValue",
        "value": value,
    }


def update_plugin_config(cfg: dict, **changes: Any) -> dict:
    """Changes keys of the shipped plugin configuration (a value of None removes the key)."""
    plugin = plugin_config(cfg)
    for k, v in changes.items():
        if v is None:
            plugin.pop(k, None)
        else:
            plugin[k] = v
    set_plugin_config(cfg, plugin)
    return plugin


def set_wasm_file(cfg: dict, path: Path | str, listener: int = 0) -> None:
    wasm_plugin(cfg, listener)["vm_config"]["code"]["local"]["filename"] = str(path)


def set_vm_env_keys(cfg: dict, keys: list[str]) -> None:
    vm = wasm_plugin(cfg)["vm_config"]
    vm.setdefault("environment_variables", {})["host_env_keys"] = list(keys)


def _socket(addr: dict) -> dict:
    return addr["socket_address"]


def set_listener(cfg: dict, address: str, port: int, listener: int = 0) -> None:
    s = _socket(listeners(cfg)[listener]["address"])
    s["address"], s["port_value"] = address, port


def set_admin(cfg: dict, address: str, port: int) -> None:
    s = _socket(cfg["admin"]["address"])
    s["address"], s["port_value"] = address, port


def set_cluster_endpoint(cfg: dict, cluster_name: str, address: str, port: int) -> None:
    c = cluster(cfg, cluster_name)
    eps = c["load_assignment"]["endpoints"][0]["lb_endpoints"]
    del eps[1:]
    s = _socket(eps[0]["endpoint"]["address"])
    s["address"], s["port_value"] = address, port


def set_trusted_ca(cfg: dict, path: Path | str, cluster_name: str = API_CLUSTER) -> None:
    tls_context(cfg, cluster_name)["common_tls_context"]["validation_context"]["trusted_ca"] = {
        "filename": str(path)
    }


def set_token_sds(cfg: dict, sds_file: Path | str, watched_dir: Path | str,
                  cluster_name: str = API_CLUSTER) -> None:
    """Points the credential injector at an SDS file and the token directory it watches."""
    gen = generic_credential(cfg, cluster_name)
    if gen is None:
        raise KeyError("this configuration has no credential_injector")
    src = gen["credential"]["sds_config"]["path_config_source"]
    src["path"] = str(sds_file)
    src["watched_directory"] = {"path": str(watched_dir)}


def write_token_sds(out: Path | str, token_file: Path | str, template: str = "token-sds.yaml") -> Path:
    """Writes the shipped SDS secret file with its token path replaced."""
    sds = load(template)
    for res in sds["resources"]:
        res["generic_secret"]["secret"]["filename"] = str(token_file)
    return dump(sds, out)


def sds_secret_names(sds: dict) -> list[str]:
    return [r["name"] for r in sds["resources"]]


@dataclass
class Api:
    """Where a test points one API-server cluster: the server's port on 127.0.0.1, the CA to
    trust and, for a cluster whose credential_injector reads the token, the token directory,
    the SDS file to write and the shipped SDS file it is made from."""
    port: int
    ca: Path | str
    token_dir: Path | str | None = None
    sds_file: Path | str | None = None
    sds_template: str = "token-sds.yaml"


def for_test(name: str, *, wasm: Path | str, ca: Path | str | None = None,
             api_port: int | None = None, token_dir: Path | str | None = None,
             sds_file: Path | str | None = None, apis: dict[str, Api] | None = None,
             plugin: dict | str | None = None, plugin_changes: dict | None = None,
             backend_port: int | None = None, cfg: dict | None = None) -> dict:
    """A shipped configuration (or ``cfg``, one built from it) patched to run on 127.0.0.1 with
    ephemeral ports: listener and admin on port 0 (the launcher reads the bound ports), each
    API-server cluster at its test server (``apis``, by cluster name; or for a configuration
    with one API cluster, the one its plugin configuration names, ``api_port``, ``ca``,
    ``token_dir`` and ``sds_file``), the Wasm file and plugin configuration."""
    cfg = load(name) if cfg is None else cfg
    if apis is None:
        apis = {api_cluster(cfg): Api(api_port, ca, token_dir, sds_file)}
    set_listener(cfg, "127.0.0.1", 0)
    set_admin(cfg, "127.0.0.1", 0)
    for api, server in apis.items():
        set_cluster_endpoint(cfg, api, "127.0.0.1", server.port)
        set_trusted_ca(cfg, server.ca, api)
        if generic_credential(cfg, api) is not None:
            if server.token_dir is None or server.sds_file is None:
                raise ValueError(f"{name}: {api} injects the token: token_dir and sds_file are required")
            write_token_sds(server.sds_file, Path(server.token_dir) / "token", server.sds_template)
            set_token_sds(cfg, server.sds_file, server.token_dir, api)
    set_wasm_file(cfg, wasm)
    # The application cluster(s) get a loopback endpoint too (port 9, discard, is closed here),
    # so no DNS lookup of a cluster-internal name delays the start.
    apps = other_clusters(cfg)
    if backend_port is not None and not apps:
        raise KeyError(f"{name} has no application cluster")
    for app in apps:
        set_cluster_endpoint(cfg, app, "127.0.0.1", backend_port or 9)
    # last: a test's plugin configuration may name a cluster that does not exist
    if plugin is not None:
        set_plugin_config(cfg, plugin)
    if plugin_changes:
        update_plugin_config(cfg, **plugin_changes)
    return cfg
