"""What Envoy Gateway reads in standalone mode besides the chart's render, unchanged: what a
cluster would already hold (cluster_objects) and the test's own Gateway (gateway_objects). Envoy
Gateway's file provider reads them all from one YAML file. (The chart names no Service, so
nothing needs Service discovery: its API servers are Backends, and this cluster's, by its DNS
name, resolves in the sandbox.)"""

from __future__ import annotations

import base64

import yaml

EG_GROUP = "gateway.envoyproxy.io"
GW_GROUP = "gateway.networking.k8s.io"
CONTROLLER = "gateway.envoyproxy.io/gatewayclass-controller"
# Envoy Gateway's namespace in standalone mode (config.Server's default, ENVOY_GATEWAY_NAMESPACE).
EG_NAMESPACE = "envoy-gateway-system"
GATEWAY_CLASS = "eg"


def _b64(data: dict[str, str]) -> dict[str, str]:
    # `data`, not `stringData`: the file provider decodes objects as they are, and only the API
    # server turns stringData into data
    return {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}


def cluster_objects(*, namespace: str, ca_pem: str, secrets: dict[tuple[str, str], dict[str, str]],
                    configmaps: dict[tuple[str, str], dict[str, str]] | None = None) -> list[dict]:
    """What the cluster holds that the chart refers to: the ConfigMap `kube-root-ca.crt` in
    ``namespace`` (the cluster CA, as every namespace has it), and the Secrets and ConfigMaps the
    user creates ((namespace, name) -> string data)."""
    objs = [{"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "kube-root-ca.crt", "namespace": namespace}, "data": {"ca.crt": ca_pem}}]
    for (ns, name), data in (configmaps or {}).items():
        objs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns},
                     "data": data})
    for (ns, name), data in secrets.items():
        objs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
                     "type": "Opaque", "data": _b64(data)})
    return objs


def gateway_objects(*, namespace: str, gateway: str, port: int, admin_port: int, envoy_version: str,
                    envoy_tls: tuple[str, str]) -> list[dict]:
    """The user's side, which the chart only names: a GatewayClass of Envoy Gateway, a Gateway
    with one HTTP listener on ``port``, and for the host infrastructure an EnvoyProxy that runs
    ``envoy_version`` (installed where func-e looks, so nothing is downloaded) with its admin on
    127.0.0.1:``admin_port`` (the bootstrap's admin port is 0, a random one, in host mode). Plus
    the Secret `envoy` in Envoy Gateway's namespace: Envoy's client certificate for Envoy
    Gateway's Wasm HTTP server (internal/gatewayapi/globalresources.go), which on Kubernetes its
    certgen job creates; here the one `certgen --local` wrote (``envoy_tls``: cert, key PEM)."""
    return [
        {"apiVersion": f"{EG_GROUP}/v1alpha1", "kind": "EnvoyProxy",
         "metadata": {"name": "kod-test", "namespace": EG_NAMESPACE},
         "spec": {"provider": {"type": "Host", "host": {"envoyVersion": envoy_version}},
                  "bootstrap": {"type": "JSONPatch", "jsonPatches": [
                      {"op": "replace", "path": "/admin/address/socket_address/port_value",
                       "value": admin_port}]}}},
        {"apiVersion": f"{GW_GROUP}/v1", "kind": "GatewayClass", "metadata": {"name": GATEWAY_CLASS},
         "spec": {"controllerName": CONTROLLER,
                  "parametersRef": {"group": EG_GROUP, "kind": "EnvoyProxy", "name": "kod-test",
                                    "namespace": EG_NAMESPACE}}},
        {"apiVersion": f"{GW_GROUP}/v1", "kind": "Gateway", "metadata": {"name": gateway, "namespace": namespace},
         "spec": {"gatewayClassName": GATEWAY_CLASS,
                  "listeners": [{"name": "http", "protocol": "HTTP", "port": port,
                                 "allowedRoutes": {"namespaces": {"from": "All"}}}]}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "envoy", "namespace": EG_NAMESPACE},
         "type": "kubernetes.io/tls", "data": _b64({"tls.crt": envoy_tls[0], "tls.key": envoy_tls[1]})},
    ]


def app_route(*, namespace: str, gateway: str, host: str, address: str, port: int) -> list[dict]:
    """Another application on the same Gateway: an HTTPRoute for ``host`` to a plain backend."""
    return [
        {"apiVersion": f"{EG_GROUP}/v1alpha1", "kind": "Backend", "metadata": {"name": "app", "namespace": namespace},
         "spec": {"endpoints": [{"ip": {"address": address, "port": port}}]}},
        {"apiVersion": f"{GW_GROUP}/v1", "kind": "HTTPRoute", "metadata": {"name": "app", "namespace": namespace},
         "spec": {"parentRefs": [{"name": gateway}], "hostnames": [host],
                  "rules": [{"backendRefs": [{"group": EG_GROUP, "kind": "Backend", "name": "app", "port": port}]}]}},
    ]


def dump(objs: list[dict]) -> str:
    return yaml.safe_dump_all(objs, sort_keys=False)
