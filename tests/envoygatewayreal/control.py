"""Envoy Gateway's control plane as a cluster runs it, on the real kube-apiserver (harness.kube):
its own chart (`gateway-helm` of the github.com/envoyproxy/gateway module tests/envoygateway/go.mod
pins, with its CRD subchart: Gateway API's and Envoy Gateway's CRDs) installed with Helm, its
certgen Job done as the Job controller and the kubelet would do it, and `envoy-gateway server`
(`make tools-envoy-gateway`) run outside the cluster as the chart's Deployment runs it: its args,
its env, the ConfigMap and Secret it mounts at /config and /certs (a mount namespace of its own),
the node's network (its Service's endpoints: the node's address), and its ServiceAccount's token
in a kubeconfig (for the in-cluster credential its pod would have: the chart's RBAC is what it
gets)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import helm  # tools/helm.py
from harness import CACHE, REPO_ROOT, child, kubelet, netns, pinned
from harness.checks import poll
from harness.kube import Kube, KubeError

EG_MOD = REPO_ROOT / "tests" / "envoygateway"  # the Go module whose go.mod pins Envoy Gateway
VERSION = pinned(EG_MOD / "go.mod", "github.com/envoyproxy/gateway")
NAMESPACE = "envoy-gateway-system"  # the namespace of Envoy Gateway's install guide
RELEASE = "eg"  # `helm install eg oci://docker.io/envoyproxy/gateway-helm ...`
FULLNAME = f"{RELEASE}-gateway-helm"
DEPLOYMENT = "envoy-gateway"
SERVICE_HOST = f"envoy-gateway.{NAMESPACE}.svc.cluster.local"
READY_TIMEOUT_S = 60
SERVICE_ACCOUNT_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
HEALTH_PORT = 8081  # the Deployment's probes: /healthz and /readyz


def binary() -> Path:
    """`envoy-gateway` as `make tools-envoy-gateway` built it (KOD_ENVOY_GATEWAY_BIN, else the
    default cache path for the pin)."""
    p = Path(os.environ.get("KOD_ENVOY_GATEWAY_BIN") or CACHE / "envoy-gateway" / VERSION / "envoy-gateway")
    if not os.access(p, os.X_OK):
        raise FileNotFoundError(f"{p} is missing: run `make tools-envoy-gateway`")
    return p


def module_dir() -> Path:
    """The Envoy Gateway module in the Go module cache, at the pinned version."""
    out = subprocess.run(["go", "list", "-mod=readonly", "-m", "-f", "{{.Dir}}", "github.com/envoyproxy/gateway"],
                         cwd=EG_MOD, check=True, capture_output=True, text=True, timeout=120).stdout.strip()
    if not out:
        raise RuntimeError("github.com/envoyproxy/gateway is not in the module cache: run `make tools-envoy-gateway`")
    return Path(out)


def chart(workdir: Path) -> Path:
    """charts/gateway-helm of the module as its release publishes it: values.yaml is
    values.tmpl.yaml with the image filled in (the module has only the template)."""
    src = module_dir() / "charts" / "gateway-helm"
    dst = workdir / "gateway-helm"
    if not dst.exists():
        shutil.copytree(src, dst)
        dst.chmod(0o755)
        for p in dst.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)  # the module cache is read-only
        text = (src / "values.tmpl.yaml").read_text()
        text = text.replace("${GatewayImage}", f"docker.io/envoyproxy/gateway:{VERSION}")
        text = text.replace("${GatewayImagePullPolicy}", "IfNotPresent")
        (dst / "values.yaml").write_text(text)
    return dst


def values() -> dict:
    """Envoy Gateway's configuration as this project's docs ask for it (docs/envoy-gateway.md):
    Backend resources, and EnvoyPatchPolicy (off by default too), for the token modes that need
    them."""
    return {"config": {"envoyGateway": {"extensionApis": {"enableBackend": True, "enableEnvoyPatchPolicy": True}}}}


def account_kubeconfig(kube: Kube, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig with a token of ServiceAccount ``namespace/account``: the identity its pod's
    in-cluster config would have."""
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "pod",
        "clusters": [{"name": "c", "cluster": {"server": kube.url, "certificate-authority": str(kube.pki.ca_cert)}}],
        "users": [{"name": account, "user": {"token": kube.token(namespace, account, seconds=86400)}}],
        "contexts": [{"name": "pod", "context": {"cluster": "c", "user": account, "namespace": namespace}}]}))
    path.chmod(0o600)
    return path


class JobController:
    """The Job controller and the kubelet for the chart's pre-install hook, the certgen Job: Helm
    creates it and waits for it to complete, so while `helm install` runs, a thread waits for the
    Job, runs its container (`envoy-gateway certgen`, out of cluster, with its env and its
    ServiceAccount's token), then sets the Job's status Complete as the Job controller does."""

    def __init__(self, kube: Kube, workdir: Path, job: str = f"{FULLNAME}-certgen"):
        self.kube, self.dir, self.job = kube, workdir, job
        self.dir.mkdir(parents=True, exist_ok=True)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "JobController":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.thread.join(READY_TIMEOUT_S)
        if self.error is not None and exc[0] is None:
            raise self.error

    def _run(self) -> None:
        try:
            path = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{self.job}"
            job = poll(lambda: self.kube.api("GET", path)[1] if self.kube.api("GET", path)[0] == 200 else None,
                       READY_TIMEOUT_S, interval=0.2, what=f"Job {self.job}")
            spec = job["spec"]["template"]["spec"]
            (c,) = spec["containers"]
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.dir)}
            for e in c.get("env", []):
                if "value" in e:
                    env[e["name"]] = e["value"]
                elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
                    env[e["name"]] = NAMESPACE
            env["KUBECONFIG"] = str(account_kubeconfig(self.kube, NAMESPACE, spec["serviceAccountName"],
                                                       self.dir / "kubeconfig"))
            argv = [str(binary()), *c["command"][1:], *c.get("args", [])]
            r = subprocess.run(argv, env=env, cwd=self.dir, capture_output=True, text=True, timeout=120)
            (self.dir / "certgen.log").write_text(r.stdout + r.stderr)
            if r.returncode:
                raise KubeError(f"{' '.join(argv)}: {r.returncode}\n{r.stdout}{r.stderr}")
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            cond = lambda t: {"type": t, "status": "True", "lastProbeTime": now, "lastTransitionTime": now}
            status = {"status": {"startTime": now, "completionTime": now, "succeeded": 1, "active": 0,
                                 "ready": 0, "terminating": 0, "uncountedTerminatedPods": {},
                                 "conditions": [cond("SuccessCriteriaMet"), cond("Complete")]}}
            code, _, body = self.kube.request("PATCH", path + "/status", admin=True,
                                              headers={"Content-Type": "application/merge-patch+json"},
                                              body=json.dumps(status).encode())
            if code != 200:
                raise KubeError(f"Job {self.job} status: {code} {body[:400]!r}")
        except BaseException as e:  # noqa: BLE001 - reported by __exit__
            self.error = e


def install(kube: Kube, workdir: Path) -> None:
    """`helm install eg gateway-helm -n envoy-gateway-system --create-namespace` with values():
    its CRDs, its certgen Job run (JobController) before the rest, then its objects."""
    with JobController(kube, workdir / "certgen"):
        helm.install(kube.kubeconfig, values=values(), chart_dir=chart(workdir), release=RELEASE,
                     namespace=NAMESPACE, timeout=READY_TIMEOUT_S)
    r = kube.kubectl("wait", "--for", "condition=Established", "crd", "--all", "--timeout=60s")
    if r.returncode:
        raise KubeError(r.stderr)


class EnvoyGateway:
    """The chart's envoy-gateway Deployment: its pod scheduled (harness.kubelet, at the node's
    address: Service envoy-gateway's endpoints, xDS and the Wasm HTTP server for every Envoy), and
    its container run in a mount namespace of its own where /config, /certs and /var/lib/eg/wasm
    are the volumes the kubelet wrote."""

    def __init__(self, kube: Kube, workdir: Path):
        self.kube, self.dir = kube, workdir
        self.pod = kubelet.Pod(kube, NAMESPACE, DEPLOYMENT, workdir, container_name="envoy-gateway")
        self.ns: netns.PodNamespaces | None = None

    def start(self) -> "EnvoyGateway":
        self.pod.schedule()
        c = self.pod.container()
        self.pod.mount_volumes(c)
        self.ns = netns.PodNamespaces(self.dir / "pause")
        for m in c.get("volumeMounts", []):
            # not the account's token mount: the kubeconfig below carries that identity, and its
            # mount point would be an empty /run/secrets/kubernetes.io on this machine
            if m["mountPath"] != SERVICE_ACCOUNT_MOUNT:
                self.ns.bind(self.pod.host_path(m["mountPath"]), m["mountPath"])
        kubeconfig = account_kubeconfig(self.kube, NAMESPACE, self.pod.pod["spec"]["serviceAccountName"],
                                        self.dir / "kubeconfig")
        proc = self.pod.run(binary(), env={"KUBECONFIG": str(kubeconfig)}, prefix=self.ns.prefix)
        child.wait_http_ok(proc, f"http://127.0.0.1:{HEALTH_PORT}/readyz", READY_TIMEOUT_S, "envoy-gateway",
                           self.pod.log_tail)
        return self

    @property
    def running(self) -> bool:
        return self.pod.proc is not None and self.pod.proc.poll() is None

    def log_text(self) -> str:
        return self.pod.log_text()

    def stop(self) -> None:
        if self.pod.proc is not None:
            child.stop(self.pod.proc, 10)  # the Deployment's terminationGracePeriodSeconds
            self.pod.proc = None
        if self.ns is not None:
            self.ns.stop()
            self.ns = None
