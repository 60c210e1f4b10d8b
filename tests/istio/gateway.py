"""An Istio ingress gateway in a test, from end to end: the chart rendered with a matrix case's
values (tools/helm.py), the cluster's own objects (tests/istio/cluster.py), istiod's validation
and config for the gateway plus pilot-agent's part (tests/istio/istiod.py, istio.io/istio's own
code), and that config in real Envoy 1.40 (tests/istio/gateway_envoy.py) against fake API servers
(or a real kube-apiserver: RealApiServer) and an application backend, the filter pulled by
pilot-agent's pkg/wasm from a local OCI registry.

    gw = Gateway(tmp_path, case, image=image, wasm=..., clusters=..., backend=backend)
    gw.generate()            # istiod's Result in gw.result (validation, xDS)
    gw.start()               # Envoy on it
    gw.get(JWKS, host=HOST)  # over TLS, SNI = host
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography.hazmat.primitives.serialization import Encoding

import helm  # tools/helm.py
from harness import client
from harness import pki as pkimod
from harness.envoy import Envoy
from harness.fake_apiserver import FakeApiServer
from harness.kube import Kube
from harness.stack import new_token
from harness.tokendir import TokenDir
from istio import cluster, gateway_envoy, istiod
from istio.matrix import Case

# the HCM server_name istiod gives a gateway: Envoy's `server` header on what the gateway answers
ISTIOD_SERVER = "istio-envoy"
APP_SERVICE = "app"  # the user's application: Service app in the gateway's namespace -> backend
# every host a test asks the gateway for: one certificate names them all
TLS_HOSTS = ["oidc.example.com", "oidc2.example.com", "edge-oidc.example.com", "app.example.com",
             "a-app.example.com"]


@dataclass
class Image:
    """The filter pushed to the local registry: what the WasmPlugin names."""
    registry: str
    url: str
    sha256: str  # hex manifest digest (pkg/wasm's check for an oci:// url)


class ApiServer:
    """One cluster's API server (a fake): its CA, server certificate, token and issuer."""

    def __init__(self, workdir: Path, name: str, issuer: str, sans: list[str], *, signed_by: "ApiServer | None" = None):
        self.dir = workdir / f"apiserver-{name}"
        self.dir.mkdir(parents=True)
        self.name = name
        self.ca = pkimod.make_ca(f"{name} cluster CA")
        cert, key = pkimod.make_leaf((signed_by or self).ca, "kube-apiserver", sans, ["127.0.0.1"])
        (self.dir / "server.crt").write_bytes(cert)
        (self.dir / "server.key").write_bytes(key)
        self.ca_file = self.dir / "ca.crt"
        self.ca_file.write_bytes(self.ca.cert.public_bytes(Encoding.PEM))
        self.token = new_token()
        self.issuer = issuer
        self.fake = FakeApiServer(self.dir / "server.crt", self.dir / "server.key", token=self.token,
                                  issuer=issuer).start()

    @property
    def port(self) -> int:
        return self.fake.port

    def stop(self):
        self.fake.stop()


class RealApiServer:
    """A real kube-apiserver (harness.kube.Kube, started and stopped by the test) as this
    cluster's API server of a Gateway: what the Gateway reads of one (its port on 127.0.0.1, the
    CA file of its serving certificate, its issuer, and the token static and rotating modes hand
    the gateway; None in token mode none)."""

    def __init__(self, kube: Kube, token: str | None = None):
        self.kube, self.name = kube, "local"
        self.ca_file, self.issuer, self.token = kube.pki.ca_cert, kube.issuer, token

    @property
    def port(self) -> int:
        return self.kube.port

    def stop(self):
        pass


def issuers_values(servers: dict[str, ApiServer]) -> dict:
    """This cluster's `local` (static token); `prod` at a fixed address with a rotating token;
    `edge` at a fixed address, static token, checked as kubernetes.default.svc. (Not by DNS: no
    dotted name resolves to 127.0.0.1 here, and istiod gives a dotless host such as `localhost`
    no TLS: test_generation.py.)"""
    return {"issuers": [
        {"name": "local", "issuer": servers["local"].issuer},
        {"name": "prod", "issuer": servers["prod"].issuer, "tokenMode": "rotating",
         "apiServer": {"host": "api.prod.example.internal", "port": servers["prod"].fake.port,
                       "addresses": ["127.0.0.1"]}},
        {"name": "edge", "issuer": servers["edge"].issuer,
         "apiServer": {"host": "api.edge.example.internal", "port": servers["edge"].fake.port,
                       "addresses": ["127.0.0.1"], "sni": "kubernetes.default.svc"}},
    ]}


@contextmanager
def issuer_servers(workdir: Path) -> Iterator[dict[str, ApiServer]]:
    """The three API servers of the `issuers` cases, by issuer name; stopped on leaving."""
    made = {
        "local": ApiServer(workdir, "local", "https://oidc.example.com/clusters/local", pkimod.API_SERVER_SANS),
        "prod": ApiServer(workdir, "prod", "https://oidc.example.com/clusters/prod", ["api.prod.example.internal"]),
        "edge": ApiServer(workdir, "edge", "https://edge-oidc.example.com", pkimod.API_SERVER_SANS),
    }
    try:
        yield made
    finally:
        for s in made.values():
            s.stop()


class Gateway:
    def __init__(self, workdir: Path, case: Case, *, servers: dict[str, ApiServer], image: Image | None = None,
                 backend_port: int = 9, values: dict | None = None, ca_of: dict[str, str] | None = None):
        """``servers``: the API servers by issuer name (`local` is this cluster's, the only one
        in the single form). ``ca_of``: the server whose CA each server's CA file/Secret holds
        (default its own; another's = a wrong CA)."""
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.case, self.servers, self.image = case, servers, image
        self.ca_of = ca_of or {}
        self.token_dirs: dict[str, TokenDir] = {}
        self.envoy: Envoy | None = None
        self.result: istiod.Result | None = None
        # the gateway's certificate for every public host, and the CA the test client trusts
        tls_ca = pkimod.make_ca("public hosts CA")
        self.tls_cert, self.tls_key = pkimod.make_leaf(tls_ca, "gateway", TLS_HOSTS)
        self.client_ca = self.dir / "public-ca.crt"
        self.client_ca.write_bytes(tls_ca.cert.public_bytes(Encoding.PEM))
        self.values = self._values(values or {})
        self.objects = helm.render(values=self.values)
        self.config, self.kube = self._world(backend_port)
        self.proxy = istiod.Proxy(labels=dict(istiod.CLASSIC_LABELS))
        if case.gateway_api:
            self.proxy = istiod.Proxy(labels=dict(cluster.GATEWAY_API_LABELS), name=f"{cluster.GATEWAY_NAME}-istio-0",
                                      service_account=f"{cluster.GATEWAY_NAME}-istio")
            self.kube += cluster.gateway_api_deployment(self.proxy.ip)

    # ------------------------------------------------------------------ the chart and the cluster
    def _values(self, extra: dict) -> dict:
        local_ca = self.servers[self.ca_of.get("local", "local")].ca_file
        v = {"apiServer": {"caCertificates": str(local_ca)},
             # the pod's mounts are the test's directories (rotating mode)
             "token": {"mountPath": str(self.dir / "mounts" / "token"), "sdsMountPath": str(self.dir / "mounts" / "sds")}}
        if not self.case.gateway_api and not self.case.own_gateway:
            v["publicGateway"] = {"create": True}
        if self.image:
            v["image"] = {"url": self.image.url, "sha256": self.image.sha256}
        if self.case.issuers:
            v = helm._merge(v, issuers_values(self.servers))
        return helm._merge(helm._merge(v, self.case.values), extra)

    def public_hosts(self) -> list[str]:
        if self.case.issuers:
            return sorted({e["issuer"].split("/")[2] for e in self.values["issuers"]})
        return list(self.values.get("hosts") or ["oidc.example.com"])

    def _world(self, backend_port: int) -> tuple[list[dict], list[dict]]:
        config, kube = istiod.split(self.objects)
        credential = "kube-oidc-discovery-tls"  # publicGateway.credentialName's default
        kube += cluster.api_server(self.servers["local"].port)
        kube.append(cluster.tls_secret(credential, self.tls_cert, self.tls_key))
        kube += _app_service(backend_port)
        # each remote issuer's CA Secret (the DestinationRule's credentialName)
        by_host = {e["apiServer"]["host"]: e["name"] for e in self.values.get("issuers", []) if "apiServer" in e}
        for o in config:
            tls = o["spec"].get("trafficPolicy", {}).get("tls", {}) if o["kind"] == "DestinationRule" else {}
            if "credentialName" in tls:
                name = by_host[o["spec"]["host"]]
                kube.append(cluster.ca_secret(tls["credentialName"],
                                              self.servers[self.ca_of.get(name, name)].ca_file.read_bytes()))
        hosts, app = self.public_hosts(), list(self.case.app_hosts)
        if self.case.gateway_api:
            config += cluster.gateway_api(hosts + [h for h in app if h not in hosts], credential)
            config.append(_app_route(app))
        else:
            labels = dict(istiod.CLASSIC_LABELS)
            if self.case.own_gateway:
                config.append(cluster.istio_gateway(hosts + [h for h in app if h not in hosts], credential, labels))
                config.append(_app_virtual_service(app, cluster.GATEWAY_NAME))
            else:
                config.append({**cluster.istio_gateway(app, credential, labels), "metadata": {
                    "name": "apps", "namespace": istiod.NAMESPACE}})
                config.append(_app_virtual_service(app, "apps"))
        return config, kube

    # ------------------------------------------------------------------ istiod
    def generate(self, *, agent: bool = False) -> istiod.Result:
        a = None
        if agent:
            (self.dir / "sds").mkdir(exist_ok=True)
            a = {"wasm_cache_dir": str(self.dir / "wasm-cache"), "insecure_registries": [self.image.registry],
                 "sds_dir": str(self.dir / "sds")}
        self.result = istiod.generate(self.config, self.kube, proxy=self.proxy, env=self.case.env, agent=a)
        assert not self.result.errors, self.result.errors
        return self.result

    # ------------------------------------------------------------------ Envoy
    def start(self, *, wasm_trace: bool = False, module_fetched: bool = True) -> "Gateway":
        """``module_fetched``: pilot-agent must have pulled the filter (else its FAIL_OPEN
        stand-in, an allow-all RBAC filter, is what Envoy runs)."""
        if self.result is None or not self.result.agent_ecds:
            self.generate(agent=True)
        types = {e["typed_config"]["@type"].rsplit(".", 1)[1] for e in self.result.agent_ecds}
        assert types == ({"Wasm"} if module_fetched else {"RBAC"}), self.result.agent_ecds
        node = f"router~{self.proxy.ip}~{self.proxy.name}.{self.proxy.namespace}~{self.proxy.namespace}.svc.cluster.local"
        boot, self.removed = gateway_envoy.bootstrap(self.result, self.dir / "envoy-files", node_id=node)
        self._mount_tokens()
        env = dict(os.environ) | self.static_tokens()
        self.envoy = Envoy(boot, self.dir / "envoy", wasm_trace=wasm_trace, env=env).start()
        return self

    def static_tokens(self) -> dict[str, str]:
        """The gateway container's environment: each HOST env key of the WasmPlugin -> the token
        of its API server (the chart's Secret, through the Deployment's env in a cluster)."""
        (wp,) = [o for o in self.objects if o["kind"] == "WasmPlugin"]
        pc = wp["spec"]["pluginConfig"]
        entries = pc.get("issuers") or [{"name": "local", **pc}]
        return {e["token_env"]: self.servers[e["name"]].token for e in entries if e.get("token_env")}

    def _mount_tokens(self) -> None:
        """Rotating mode: the chart's ConfigMap and token Secret as the kubelet mounts them."""
        for cm in (o for o in self.objects if o["kind"] == "ConfigMap"):
            sds = Path(self.values["token"]["sdsMountPath"])
            sds.mkdir(parents=True, exist_ok=True)
            for name, text in cm["data"].items():
                (sds / name).write_text(text)
                for res in yaml.safe_load(text)["resources"]:
                    token_file = Path(res["generic_secret"]["secret"]["filename"])
                    issuer = next((n for n in self.servers if token_file.parent.name.endswith("-" + n)), "local")
                    td = TokenDir(token_file.parent)
                    td.write_token(self.servers[issuer].token)
                    self.token_dirs[issuer] = td

    def port(self, listener_port: int = 443) -> int:
        """Envoy's port for istiod's listener of ``listener_port`` (named 0.0.0.0_<port>)."""
        status, body = self.envoy.admin_get("/listeners?format=json")
        for ls in json.loads(body)["listener_statuses"]:
            if ls["name"].endswith(f"_{listener_port}"):
                return int(ls["local_address"]["socket_address"]["port_value"])
        raise KeyError(f"no listener for port {listener_port}: {body}")

    def get(self, path: str, *, host: str, **kw) -> client.Response:
        return client.get(self.port(), path, host=host, tls_ca=str(self.client_ca), **kw)

    def request(self, path: str, *, host: str, **kw) -> client.Response:
        return client.request(self.port(), path, host=host, tls_ca=str(self.client_ca), **kw)

    def stop(self) -> None:
        if self.envoy:
            self.envoy.stop()


def _app_service(port: int) -> list[dict]:
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": APP_SERVICE, "namespace": istiod.NAMESPACE},
         "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 8080, "targetPort": port}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": APP_SERVICE, "namespace": istiod.NAMESPACE,
                      "labels": {"kubernetes.io/service-name": APP_SERVICE}},
         "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
         "ports": [{"name": "http", "port": port, "protocol": "TCP"}]},
    ]


APP_HOST = f"{APP_SERVICE}.{istiod.NAMESPACE}.svc.cluster.local"


def _app_virtual_service(hosts: list[str], gateway: str) -> dict:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "app", "namespace": istiod.NAMESPACE},
            "spec": {"hosts": hosts, "gateways": [gateway],
                     "http": [{"name": "app", "route": [{"destination": {"host": APP_HOST, "port": {"number": 8080}}}]}]}}


def _app_route(hosts: list[str]) -> dict:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "app", "namespace": istiod.NAMESPACE},
            "spec": {"parentRefs": [{"name": cluster.GATEWAY_NAME}], "hostnames": hosts,
                     "rules": [{"backendRefs": [{"name": APP_SERVICE, "port": 8080}]}]}}
