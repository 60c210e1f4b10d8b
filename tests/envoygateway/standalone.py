"""What Envoy Gateway reads in standalone mode: the chart's render, changed only where standalone
differs from a cluster (to_standalone), plus what a cluster would already hold (cluster_objects)
and the test's own Gateway (gateway_objects). Envoy Gateway's file provider reads them all from
one YAML file."""

from __future__ import annotations

import base64
import copy
from dataclasses import dataclass

import yaml

EG_GROUP = "gateway.envoyproxy.io"
GW_GROUP = "gateway.networking.k8s.io"
CONTROLLER = "gateway.envoyproxy.io/gatewayclass-controller"
# Envoy Gateway's namespace in standalone mode (config.Server's default, ENVOY_GATEWAY_NAMESPACE).
EG_NAMESPACE = "envoy-gateway-system"
GATEWAY_CLASS = "eg"


@dataclass(frozen=True)
class ServiceAddress:
    """Where a Kubernetes Service of the cluster is reachable in the test: a Service
    ``namespace/name`` the chart refers to, and the address of what stands in for it."""
    namespace: str
    name: str
    address: str
    port: int


def _is_service_ref(ref: dict, namespace: str, svc: ServiceAddress) -> bool:
    return (ref.get("group", "") == "" and ref.get("kind", "Service") == "Service"
            and ref.get("name") == svc.name and ref.get("namespace", namespace) == svc.namespace)


def _to_backend(ref: dict) -> None:
    ref["group"], ref["kind"] = EG_GROUP, "Backend"


def to_standalone(objs: list[dict], services: list[ServiceAddress]) -> list[dict]:
    """The chart's objects as Envoy Gateway's file provider must see them. The one difference
    from a cluster: it has no Service discovery (no Service or EndpointSlice objects to resolve
    a Service backendRef to endpoints), so each Service in ``services`` (the API server's
    `kubernetes` in `default`) becomes an Envoy Gateway ``Backend`` of the same name and namespace
    with the stand-in's address, and every reference to it names that Backend instead: HTTPRoute
    backendRefs, the ReferenceGrant's ``to``, the BackendTLSPolicy's ``targetRefs``. Nothing else
    changes: names, ports, filters, TLS settings and the policy are the chart's. (ConfigMaps and
    Secrets a cluster holds come as objects too: cluster_objects.)"""
    out = copy.deepcopy(objs)
    for o in out:
        ns = o["metadata"].get("namespace", "")
        spec = o.get("spec", {})
        for svc in services:
            if o["kind"] == "HTTPRoute":
                for rule in spec.get("rules", []):
                    for ref in rule.get("backendRefs", []):
                        if _is_service_ref(ref, ns, svc):
                            _to_backend(ref)
            elif o["kind"] == "ReferenceGrant" and ns == svc.namespace:
                for to in spec.get("to", []):
                    if to.get("group", "") == "" and to.get("kind") == "Service" and to.get("name") == svc.name:
                        _to_backend(to)
            elif o["kind"] == "BackendTLSPolicy":
                for ref in spec.get("targetRefs", []):
                    if _is_service_ref({**ref, "namespace": ns}, ns, svc):
                        _to_backend(ref)
    for svc in services:
        out.append({
            "apiVersion": f"{EG_GROUP}/v1alpha1", "kind": "Backend",
            "metadata": {"name": svc.name, "namespace": svc.namespace},
            "spec": {"endpoints": [{"ip": {"address": svc.address, "port": svc.port}}]},
        })
    return out


def _b64(data: dict[str, str]) -> dict[str, str]:
    # `data`, not `stringData`: the file provider decodes objects as they are, and only the API
    # server turns stringData into data
    return {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}


def cluster_objects(*, ca_pem: str, secrets: dict[tuple[str, str], dict[str, str]],
                    configmaps: dict[tuple[str, str], dict[str, str]] | None = None) -> list[dict]:
    """What the cluster holds that the chart refers to: the ConfigMap `kube-root-ca.crt` in
    `default` (the cluster CA, as every namespace has it), and the Secrets and ConfigMaps the user
    creates ((namespace, name) -> string data)."""
    objs = [{"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "kube-root-ca.crt", "namespace": "default"}, "data": {"ca.crt": ca_pem}}]
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
