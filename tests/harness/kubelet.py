"""What a node's kubelet and the controller-manager's endpoint controllers do for the install
tiers (tests/istioreal, tests/envoygatewayreal), and nothing more: a Deployment's pod created in
the API server (admission runs: istiod's injection webhook fills in the gateway's istio-proxy
container in classic mode), its status set Running and Ready at its address, the EndpointSlices
and Endpoints of the Services that select it, one container's volumes written and its env
resolved as the kubelet resolves them (field, resource, Secret and ConfigMap references), and
that container run: the binary standing for its image's, with the container's command and args,
in a directory that stands for the container's filesystem."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Sequence

from harness import child
from harness.checks import poll
from harness.kube import Kube, KubeError
from harness.tokendir import TokenDir

# the node's address, and the pod's (the API server refuses 127.0.0.0/8 in endpoints): on the
# private namespace's loopback (harness.netns.add_address)
POD_IP = "10.244.0.1"
NODE = "node-0"


def publish_endpoints(kube: Kube, namespace: str, service: str, ip: str = POD_IP,
                      pod: str | None = None) -> None:
    """An EndpointSlice and an Endpoints for ``service``: one ready address, the Service's
    target ports (numeric ones; a named targetPort is its port number here)."""
    svc = kube.get(f"/api/v1/namespaces/{namespace}/services/{service}")
    ports = [{"name": p.get("name", ""), "port": p["targetPort"] if isinstance(p.get("targetPort"), int) else p["port"],
              "protocol": p.get("protocol", "TCP")} for p in svc["spec"]["ports"]]
    ref = {"kind": "Pod", "name": pod, "namespace": namespace} if pod else None
    kube.create(f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices", {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{service}-kod", "namespace": namespace,
                     "labels": {"kubernetes.io/service-name": service,
                                "endpointslice.kubernetes.io/managed-by": "kube-oidc-discovery-tests"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, **({"targetRef": ref} if ref else {})}],
        "ports": ports})
    address = {"ip": ip, **({"targetRef": ref} if ref else {})}
    kube.create(f"/api/v1/namespaces/{namespace}/endpoints", {
        "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": service, "namespace": namespace},
        "subsets": [{"addresses": [address], "ports": ports}]}, exists_ok=True)


def publish_root_ca(kube: Kube, namespace: str) -> None:
    """ConfigMap kube-root-ca.crt, as the controller-manager's root-ca-cert-publisher writes it
    in every namespace (pods mount it with their service-account token)."""
    kube.create(f"/api/v1/namespaces/{namespace}/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt", "namespace": namespace},
        "data": {"ca.crt": kube.pki.ca_cert.read_text()}}, exists_ok=True)


def _selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


class Pod:
    """The single pod of Deployment ``namespace/deployment``, scheduled on this machine at ``ip``;
    ``container_name``: the container run() runs."""

    def __init__(self, kube: Kube, namespace: str, deployment: str, workdir: Path,
                 container_name: str = "istio-proxy", ip: str = POD_IP):
        self.kube, self.namespace, self.deployment = kube, namespace, deployment
        self.container_name, self.ip = container_name, ip
        self.root = workdir / "root"  # the container's filesystem, its working directory
        self.root.mkdir(parents=True, exist_ok=True)
        self.dir = workdir
        self.proc: subprocess.Popen | None = None
        self.pod: dict = {}

    @property
    def name(self) -> str:
        return f"{self.deployment}-0"

    def schedule(self) -> dict:
        """The pod created from the Deployment's template (admission, webhooks included), Running
        and Ready at its address, behind every Service of its namespace that selects it."""
        ns = self.namespace
        publish_root_ca(self.kube, ns)
        dep = self.kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{self.deployment}")
        tmpl = dep["spec"]["template"]
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {**tmpl.get("metadata", {}), "name": self.name, "namespace": ns},
               "spec": {**tmpl["spec"], "nodeName": NODE}}
        created = self.kube.create(f"/api/v1/namespaces/{ns}/pods", pod)
        status = {"status": {"phase": "Running", "podIP": self.ip, "podIPs": [{"ip": self.ip}], "hostIP": POD_IP,
                             "conditions": [{"type": t, "status": "True"} for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]}}
        code, _, body = self.kube.request("PATCH", f"/api/v1/namespaces/{ns}/pods/{self.name}/status", admin=True,
                                          headers={"Content-Type": "application/merge-patch+json"},
                                          body=json.dumps(status).encode())
        if code != 200:
            raise KubeError(f"pod status: {code} {body[:300]}")
        labels = created["metadata"].get("labels", {})
        for svc in self.kube.get(f"/api/v1/namespaces/{ns}/services")["items"]:
            if _selects(svc["spec"].get("selector", {}), labels):
                publish_endpoints(self.kube, ns, svc["metadata"]["name"], ip=self.ip, pod=self.name)
        self.pod = self.kube.get(f"/api/v1/namespaces/{ns}/pods/{self.name}")
        return self.pod

    def container(self, name: str | None = None) -> dict:
        name = name or self.container_name
        return next(c for c in self.pod["spec"]["containers"] if c["name"] == name)

    # ------------------------------------------------------------------ the kubelet's part
    def host_path(self, mount_path: str) -> Path:
        """Where a container path is on this machine: under the pod's root, unless the test gave
        the chart a path already on this machine (an absolute path under its workdir)."""
        p = Path(mount_path)
        return p if p.is_relative_to(self.dir) else self.root / mount_path.lstrip("/")

    def mount_volumes(self, container: dict) -> None:
        for m in container.get("volumeMounts", []):
            self.sync_volume(m["name"], container)

    def sync_volume(self, name: str, container: dict | None = None) -> None:
        """Volume ``name`` written (again) at its mounts as the kubelet's AtomicWriter writes
        Secret, ConfigMap, projected and downward-API volumes: a timestamped directory, ``..data``
        swapped to it in one rename, each file a link through ``..data`` (harness.tokendir). The
        kubelet does this again when the source changes (its periodic sync)."""
        vol = next(v for v in self.pod["spec"].get("volumes", []) if v["name"] == name)
        for m in (container or self.container()).get("volumeMounts", []):
            if m["name"] != name:
                continue
            target = self.host_path(m["mountPath"])
            target.mkdir(parents=True, exist_ok=True)
            files = self._volume_files(vol)
            if files:
                assert not any("/" in f for f in files), f"nested paths in volume {name}: {sorted(files)}"
                TokenDir(target).write(files)

    def _volume_files(self, vol: dict) -> dict[str, bytes]:
        """A volume's files by relative path; a projected volume's sources are volumes of their
        own (a token among them)."""
        ns = self.namespace
        if "projected" in vol:
            out: dict[str, bytes] = {}
            for src in vol["projected"]["sources"]:
                out |= self._volume_files(src)
            return out
        if "serviceAccountToken" in vol:
            t = vol["serviceAccountToken"]
            aud = [t["audience"]] if t.get("audience") else None
            return {t["path"]: self.kube.token(ns, self.pod["spec"]["serviceAccountName"], aud,
                                               seconds=t.get("expirationSeconds", 3600)).encode()}
        if "secret" in vol:
            ref = vol["secret"]
            s = self.kube.get(f"/api/v1/namespaces/{ns}/secrets/{ref.get('secretName') or ref['name']}")
            data = {k: base64.b64decode(v) for k, v in s.get("data", {}).items()}
        elif "configMap" in vol:
            cm = self.kube.get(f"/api/v1/namespaces/{ns}/configmaps/{vol['configMap']['name']}")
            data = {k: v.encode() for k, v in cm.get("data", {}).items()}
            ref = vol["configMap"]
        elif "downwardAPI" in vol:
            return {i["path"]: self._downward(i["fieldRef"]["fieldPath"]).encode()
                    for i in vol["downwardAPI"]["items"] if "fieldRef" in i}
        else:
            return {}  # emptyDir and the like: the directory itself
        if ref.get("items"):
            return {i["path"]: data[i["key"]] for i in ref["items"] if i["key"] in data}
        return data

    def _downward(self, path: str) -> str:
        meta = self.pod["metadata"]
        if path in ("metadata.labels", "metadata.annotations"):
            kv = meta.get(path.split(".")[1], {})
            # the kubelet's fieldpath.FormatMap: key=%q per line, which JSON's escaping matches
            return "\n".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(kv.items()))
        m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if m:
            return meta.get(m.group(1), {}).get(m.group(2), "")
        obj: object = self.pod
        for part in path.split("."):
            obj = obj.get(part, "") if isinstance(obj, dict) else ""
        return str(obj)

    def env(self, container: dict) -> dict[str, str]:
        env: dict[str, str] = {}
        for e in container.get("env", []):
            if "value" in e:
                env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), e["value"])
                continue
            src = e.get("valueFrom", {})
            if "fieldRef" in src:
                env[e["name"]] = self._downward(src["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in src:  # no limits: the node's allocatable
                res = src["resourceFieldRef"]["resource"]
                env[e["name"]] = str(os.cpu_count()) if res.endswith("cpu") else str(
                    os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
            elif "secretKeyRef" in src:  # the kubelet waits for the key (the token controller fills it)
                ref = src["secretKeyRef"]
                path = f"/api/v1/namespaces/{self.namespace}/secrets/{ref['name']}"
                data = poll(lambda: self.kube.get(path).get("data", {}).get(ref["key"]), 30, what=f"{path} {ref['key']}")
                env[e["name"]] = base64.b64decode(data).decode()
            elif "configMapKeyRef" in src:
                ref = src["configMapKeyRef"]
                env[e["name"]] = self.kube.get(f"/api/v1/namespaces/{self.namespace}/configmaps/{ref['name']}")["data"][ref["key"]]
        return env

    def write_files(self, files: dict[str, bytes]) -> None:
        """What the container's image holds (container path -> content), under the pod's root."""
        for path, data in files.items():
            p = self.host_path(path)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)

    def run(self, binary: Path, files: dict[str, bytes] | None = None, env: dict[str, str] | None = None,
            prefix: Sequence[str | Path] = ()) -> subprocess.Popen:
        """The container: its volumes, env, command and args. ``binary`` stands for the image's:
        the command's first word if the container has a command, else the image's entrypoint;
        ``files``: what its image holds (container path -> content); ``env``: over the
        container's own (what this machine needs, such as a kubeconfig); ``prefix``: what the
        process is started through (a namespace's nsenter), exec'ing it in place."""
        c = self.container()
        self.mount_volumes(c)
        self.write_files(files or {})
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.root)} | self.env(c) | (env or {})
        expand = lambda a: re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), a)
        argv = [*map(expand, c.get("command", [])[1:]), *map(expand, c.get("args", []))]
        self.proc = child.spawn([*prefix, binary, *argv], self.log_path, env=env, cwd=self.root)
        return self.proc

    @property
    def log_path(self) -> Path:
        return self.dir / f"{self.container_name}.log"

    def log_text(self) -> str:
        """The container's log (istio-proxy: pilot-agent's and Envoy's)."""
        p = self.log_path
        return p.read_text(errors="replace") if p.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def processes(self) -> list[int]:
        """The container's processes: pilot-agent, then its descendants (Envoy)."""
        return [self.proc.pid, *_descendants(self.proc.pid)] if self.proc else []

    def stop(self, grace: float = 1) -> None:
        """The container stopped as the kubelet stops it: SIGTERM to pilot-agent, and at the end
        of the grace period SIGKILL to every process of the container (pilot-agent drains for
        its terminationDrainDuration, 5 s, before it stops Envoy; Envoy would outlive a
        pilot-agent killed alone)."""
        if self.proc is None:
            return
        procs = self.processes()[1:]
        child.stop(self.proc, grace)
        for pid in procs:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        poll(lambda: not any(map(_running, procs)), 10, what="the container's processes gone")
        self.proc = None


def _running(pid: int) -> bool:
    """Neither gone nor a zombie (an orphan's reaper may be slow to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _descendants(pid: int) -> list[int]:
    """The children of ``pid``, theirs, and so on (/proc/<pid>/task/*/children)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
        for k in kids:
            out += [k, *_descendants(k)]
    return out
