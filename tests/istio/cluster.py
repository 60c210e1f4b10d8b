"""The Kubernetes objects a cluster has besides the chart's, as istiod reads them: this cluster's
API server (Service default/kubernetes and its EndpointSlice, here the test's API server on
127.0.0.1), the Secrets the gateway's SDS serves, and for Gateway API mode the GatewayClass and
the Gateway the chart's targetRefs name."""

from __future__ import annotations

import base64
from datetime import datetime

from istio.istiod import NAMESPACE

GATEWAY_NAME = "public"  # the Gateway of Gateway API mode and of the classic own-Gateway case
GATEWAY_API_LABELS = {"gateway.networking.k8s.io/gateway-name": GATEWAY_NAME}


def api_server(port: int, address: str = "127.0.0.1") -> list[dict]:
    """Service default/kubernetes (443 -> ``port``) and the EndpointSlice istiod builds EDS from."""
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kubernetes", "namespace": "default"},
         "spec": {"clusterIP": "10.96.0.1", "type": "ClusterIP",
                  "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "kubernetes", "namespace": "default",
                      "labels": {"kubernetes.io/service-name": "kubernetes"}},
         "addressType": "IPv4",
         "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
         "ports": [{"name": "https", "port": port, "protocol": "TCP"}]},
    ]


def created_at(objs: list[dict], when: datetime) -> list[dict]:
    """``objs`` with ``metadata.creationTimestamp`` as the API server sets it on creation (whole
    seconds, UTC). istiod orders a gateway's VirtualServices by it (then by name); an object
    without one gets the time of the run, the same for every object of it (tests/istio/xds.go)."""
    for o in objs:
        o["metadata"]["creationTimestamp"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return objs


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def tls_secret(name: str, cert: bytes, key: bytes, namespace: str = NAMESPACE) -> dict:
    """A gateway server's certificate (credentialName)."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "type": "kubernetes.io/tls", "data": {"tls.crt": _b64(cert), "tls.key": _b64(key)}}


def ca_secret(name: str, ca: bytes, namespace: str = NAMESPACE) -> dict:
    """A DestinationRule's credentialName holding only a CA (key ca.crt)."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "type": "Opaque", "data": {"ca.crt": _b64(ca)}}


def gateway_api(hosts: list[str], credential: str, port: int = 443, namespace: str = NAMESPACE) -> list[dict]:
    """GatewayClass istio and Gateway `public`: one HTTPS listener per OIDC host."""
    return [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "istio"},
         "spec": {"controllerName": "istio.io/gateway-controller"}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": GATEWAY_NAME, "namespace": namespace},
         "spec": {"gatewayClassName": "istio", "listeners": [
             {"name": f"https-{i}", "hostname": h, "port": port, "protocol": "HTTPS",
              "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": credential}]},
              "allowedRoutes": {"namespaces": {"from": "Same"}}} for i, h in enumerate(hosts)]}},
    ]


def istio_gateway(hosts: list[str], credential: str, labels: dict[str, str], port: int = 443,
                  namespace: str = NAMESPACE) -> dict:
    """An Istio Gateway of the cluster's own (classic mode with publicGateway.gateways)."""
    return {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": {"name": GATEWAY_NAME, "namespace": namespace},
            "spec": {"selector": labels, "servers": [
                {"port": {"number": port, "name": "https", "protocol": "HTTPS"}, "hosts": hosts,
                 "tls": {"mode": "SIMPLE", "credentialName": credential}}]}}


def gateway_api_deployment(ip: str, namespace: str = NAMESPACE, port: int = 443) -> list[dict]:
    """What Istio's deployment controller and the kubelet make of Gateway `public` (class istio):
    Service `public-istio` selecting the gateway's pods, and one Ready pod at ``ip``. istiod binds
    a Gateway API gateway to the proxies behind that Service (push_context.go mergeGateways,
    internal.istio.io/gateway-service), never by labels alone."""
    name = f"{GATEWAY_NAME}-istio"
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace, "labels": GATEWAY_API_LABELS},
         "spec": {"clusterIP": "10.96.0.30", "selector": GATEWAY_API_LABELS,
                  "ports": [{"name": f"https-{port}", "port": port, "protocol": "TCP", "targetPort": port}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": name, "namespace": namespace, "labels": {"kubernetes.io/service-name": name}},
         "addressType": "IPv4",
         "endpoints": [{"addresses": [ip], "conditions": {"ready": True},
                        "targetRef": {"kind": "Pod", "name": f"{name}-0", "namespace": namespace}}],
         "ports": [{"name": f"https-{port}", "port": port, "protocol": "TCP"}]},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{name}-0", "namespace": namespace, "labels": GATEWAY_API_LABELS},
         "spec": {"serviceAccountName": name, "containers": [{"name": "istio-proxy", "image": "proxy"}]},
         "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                    "conditions": [{"type": "Ready", "status": "True"}]}},
    ]
