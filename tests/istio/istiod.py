"""istiod's and pilot-agent's own code on a chart render: drives the Go program of this directory
(`istio-xds`, built by `make istio-xds` into target/istio-xds; istio.io/istio at the version
go.mod pins).

    generate(config, kube, proxy=..., env=..., agent=...) -> Result

``config``: the Istio and Gateway API objects (the chart's render, what the cluster adds);
``kube``: the Kubernetes objects (Services, EndpointSlices, Secrets); ``env``: istiod's feature
flags as istiod reads them (PILOT_FILTER_GATEWAY_CLUSTER_CONFIG=true, ...). The result holds what
istiod's validating webhook answered for each object and what istiod sends the gateway over ADS
(listeners, clusters, routes, extensions (ECDS), endpoints, secrets), each resource as protojson
with Envoy's field names; with ``agent``, the ECDS config after pilot-agent's Wasm conversion and
the file-root: secrets as pilot-agent's SDS serves them.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

import helm  # tools/helm.py
from harness import REPO_ROOT

BINARY = Path(os.environ.get("ISTIO_XDS_BIN", REPO_ROOT / "target" / "istio-xds"))
# The one warning istiod's webhook gives every EnvoyFilter (pkg/config/validation/envoyfilter).
GENERIC_WARNING = "EnvoyFilter exposes internal implementation details"
# The chart installs into this namespace (tools/helm.py) and the gateway runs there.
NAMESPACE = helm.NAMESPACE
CLASSIC_LABELS = {"istio": "ingressgateway"}
ISTIO_GROUPS = ("istio.io", "gateway.networking.k8s.io")


def binary() -> Path:
    if not BINARY.is_file():
        raise FileNotFoundError(f"{BINARY} is missing: run `make istio-xds`")
    return BINARY


@dataclass
class Proxy:
    """The gateway pod istiod generates for (a router)."""
    labels: dict[str, str] = field(default_factory=lambda: dict(CLASSIC_LABELS))
    namespace: str = NAMESPACE
    name: str = "istio-ingressgateway-0"
    ip: str = "10.0.0.10"
    service_account: str = "istio-ingressgateway"


@dataclass
class Result:
    validation: list[dict]
    xds: dict[str, list[dict]]
    agent_ecds: list[dict]
    agent_secrets: list[dict]
    errors: list[str]

    def problems(self) -> list[str]:
        """Every validation error, and every warning but the generic EnvoyFilter one."""
        out = []
        for v in self.validation:
            what = f"{v['kind']} {v['namespace']}/{v['name']}"
            if not v["allowed"]:
                out.append(f"{what}: {v.get('error', 'refused')}")
            out += [f"{what}: warning: {w}" for w in v.get("warnings") or [] if GENERIC_WARNING not in w]
        return out

    def resource(self, kind: str, name: str) -> dict:
        found = [r for r in self.xds.get(kind, []) if name_of(r) == name]
        if not found:
            raise KeyError(f"istiod sent no {kind} {name!r}; it sent {self.names(kind)}")
        return found[0]

    def names(self, kind: str) -> list[str]:
        return [name_of(r) for r in self.xds.get(kind, [])]


def name_of(resource: dict) -> str:
    """An xDS resource's name (a ClusterLoadAssignment's is its cluster_name)."""
    return resource.get("name") or resource["cluster_name"]


def is_istio_kind(obj: dict) -> bool:
    return obj["apiVersion"].split("/")[0].endswith(ISTIO_GROUPS)


def generate(config: list[dict], kube: list[dict], *, proxy: Proxy | None = None,
             env: dict[str, str] | None = None, agent: dict | None = None, timeout: float = 120) -> Result:
    proxy = proxy or Proxy()
    # istiod reads Gateway API objects from Kubernetes (its gateway controller's informers), as
    # Istio's own tests give them: in both the config store and the Kubernetes client.
    kube = kube + [o for o in config if o["apiVersion"].startswith("gateway.networking.k8s.io/")]
    req = {"config": yaml.safe_dump_all(config, sort_keys=False), "kube": yaml.safe_dump_all(kube, sort_keys=False),
           "proxy": {"namespace": proxy.namespace, "name": proxy.name, "ip": proxy.ip, "labels": proxy.labels,
                     "service_account": proxy.service_account}}
    if agent is not None:
        req["agent"] = agent
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("PILOT_")} | (env or {})
    p = subprocess.run([str(binary()), "generate"], input=json.dumps(req), capture_output=True, text=True,
                       env=run_env, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"istio-xds failed ({p.returncode}):\n{p.stderr[-4000:]}")
    if os.environ.get("ISTIO_XDS_LOG"):
        Path(os.environ["ISTIO_XDS_LOG"]).write_text(p.stderr)
    out = json.loads(p.stdout)
    return Result(out["validation"], out.get("xds") or {}, out.get("agent_ecds") or [],
                  out.get("agent_secrets") or [], out.get("errors") or [])


def split(objs: list[dict]) -> tuple[list[dict], list[dict]]:
    """A render's objects: (Istio and Gateway API kinds, for istiod's config store; the rest)."""
    return [o for o in objs if is_istio_kind(o)], [o for o in objs if not is_istio_kind(o)]


def encode(jobs: list[tuple[str, dict, Path]]) -> None:
    """Each ``(message, protojson, out)`` written as the binary proto of ``message`` (a full name,
    e.g. envoy.config.bootstrap.v3.Bootstrap) by the Go protos istiod uses, checked against
    Envoy's field constraints first."""
    req = [{"message": m, "json": obj, "out": str(out)} for m, obj, out in jobs]
    p = subprocess.run([str(binary()), "encode"], input=json.dumps(req), capture_output=True, text=True,
                       timeout=120)
    if p.returncode != 0:
        raise RuntimeError(f"istio-xds encode failed:\n{p.stderr}")
