"""What a user has and does on top of Envoy Gateway (control.py), as docs/envoy-gateway.md says:
a GatewayClass and an HTTPS Gateway, a user's application routed through it, the registry's CA
in a ConfigMap, `helm install` of charts/kube-oidc-discovery-envoy-gateway, the NOTES' token
command run as printed; then the Envoy that Envoy Gateway's Kubernetes infrastructure deploys for
the Gateway, run as its pod's kubelet would run it (harness.kubelet) in the pod's own network
and mount namespaces (harness.netns.PodNamespaces), and every status read back from the API
server."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import helm  # tools/helm.py
from e2e.test_other_hosts import STREAM_CALLBACK
from envoygatewayreal import control
from harness import child, client, kubelet, netns, pki as pkimod
from harness.checks import poll
from harness.constants import DISCOVERY, HOST, OTHER_HOST
from harness.envoy import envoy_bin
from harness.kube import Kube, KubeError

CHART = helm.CHART.parent / "kube-oidc-discovery-envoy-gateway"
NAMESPACE = "oidc"  # the docs' `helm install kod ... -n oidc`
RELEASE = "kod"
FULLNAME = f"{RELEASE}-kube-oidc-discovery-envoy-gateway"
ROUTE = FULLNAME
# the account whose token the filter's calls carry, as the API server's audit log names it: token
# mode projected (the default), the Envoy pods' account the chart's EnvoyProxy names; inject, the
# chart's dedicated account the NOTES' token is for
ENVOY_ACCOUNT = f"{FULLNAME}-envoy"
TOKEN_USER = f"system:serviceaccount:{control.NAMESPACE}:{ENVOY_ACCOUNT}"
INJECT_USER = f"system:serviceaccount:{NAMESPACE}:{FULLNAME}"
TOKEN_VOLUME = "kube-oidc-discovery-token"  # the chart's EnvoyProxy's volume
GATEWAY_CLASS = GATEWAY = "eg"  # Envoy Gateway's quickstart names; the docs' gateway.name=eg
GATEWAY_NS = control.NAMESPACE  # the docs' gateway.namespace=envoy-gateway-system
CREDENTIAL = "eg-https"  # the Gateway listener's certificate
PUBLIC_HOSTS = [HOST, OTHER_HOST]
HTTPS = 443
# Envoy Gateway shifts a privileged listener port by 10000 (internal/gatewayapi/listener.go,
# servicePortToContainerPort): Envoy listens on 10443 for the Gateway's 443
ENVOY_HTTPS = HTTPS + 10000
ENVOY_ADMIN = 19000  # the bootstrap's admin, 127.0.0.1 of the Envoy pod
# the Envoy pod's network: the pod and the node's end of its veth pair
ENVOY_POD_IP, ENVOY_POD_GATEWAY = "10.244.1.2", "10.244.1.1"
RESOLV_CONF = (f"nameserver 127.0.0.1\nsearch {GATEWAY_NS}.svc.cluster.local svc.cluster.local cluster.local\n"
               "options ndots:5\n")
APP = "app"
APP_NS = "apps"


def create_gateway(kube: Kube, workdir: Path) -> Path:
    """GatewayClass `eg` of Envoy Gateway's controller and Gateway `eg` in envoy-gateway-system:
    one HTTPS listener (port 443, the certificate for both public hosts), routes from every
    namespace. Returns the CA file a client trusts."""
    ca = pkimod.make_ca("public hosts CA")
    cert, key = pkimod.make_leaf(ca, "gateway", PUBLIC_HOSTS)
    kube.create(f"/api/v1/namespaces/{GATEWAY_NS}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": CREDENTIAL, "namespace": GATEWAY_NS},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": base64.b64encode(cert).decode(), "tls.key": base64.b64encode(key).decode()}})
    kube.create("/apis/gateway.networking.k8s.io/v1/gatewayclasses", {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": GATEWAY_CLASS},
        "spec": {"controllerName": "gateway.envoyproxy.io/gatewayclass-controller"}})
    kube.create(f"/apis/gateway.networking.k8s.io/v1/namespaces/{GATEWAY_NS}/gateways", {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": GATEWAY, "namespace": GATEWAY_NS},
        "spec": {"gatewayClassName": GATEWAY_CLASS, "listeners": [
            {"name": "https", "port": HTTPS, "protocol": "HTTPS",
             "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": CREDENTIAL}]},
             "allowedRoutes": {"namespaces": {"from": "All"}}}]}})
    f = workdir / "public-ca.crt"
    f.write_bytes(ca.cert.public_bytes(pkimod.serialization.Encoding.PEM))
    return f


def user_app(kube: Kube, backend_port: int) -> None:
    """A user's application on the same Gateway: Service `app` in namespace `apps` (its endpoint
    the test's backend, on the node) and an HTTPRoute for app.example.com."""
    kube.create_namespace(APP_NS)
    kube.create(f"/api/v1/namespaces/{APP_NS}/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": APP, "namespace": APP_NS},
        "spec": {"ports": [{"name": "http", "port": 8080, "targetPort": backend_port}]}})
    kubelet.publish_endpoints(kube, APP_NS, APP)
    kube.create(f"/apis/gateway.networking.k8s.io/v1/namespaces/{APP_NS}/httproutes", {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": APP, "namespace": APP_NS},
        "spec": {"parentRefs": [{"name": GATEWAY, "namespace": GATEWAY_NS}], "hostnames": [OTHER_HOST],
                 "rules": [{"backendRefs": [{"name": APP, "port": 8080}]}]}})


DOCS_FILE = helm.CHART.parents[1] / "docs" / "envoy-gateway.md"


def docs_install_steps() -> tuple[list[str], str, str, dict]:
    """Step 2 of docs/envoy-gateway.md's "Step by step", read from the docs: the kubectl lines
    before the install (each a shell command), and the `helm install` line's release, namespace
    and `--set` values (strings, `{a,b}` lists)."""
    text = DOCS_FILE.read_text()
    step = text[text.index("## Step by step"):text.index("3. Let the Gateway name")]
    block = re.search(r"```sh\n(.*?)```", step, re.S).group(1)
    lines = [re.sub(r"\s+#.*$", "", ln).strip() for ln in block.splitlines() if not ln.strip().startswith("#")]
    cmds = re.sub(r"\\\n\s*", " ", "\n".join(lines)).splitlines()
    (helm_cmd,) = [c for c in cmds if c.startswith("helm install ")]
    m = re.match(r"helm install (\S+) charts/kube-oidc-discovery-envoy-gateway -n (\S+) ", helm_cmd)
    values: dict = {}
    for key, value in re.findall(r"--set '?([\w.]+)=(<[^>]*>|[^'\s]+)'?", helm_cmd):
        *parents, leaf = key.split(".")
        d = values
        for k in parents:
            d = d.setdefault(k, {})
        d[leaf] = value[1:-1].split(",") if value.startswith("{") else value
    return [c for c in cmds if c.startswith("kubectl ")], m.group(1), m.group(2), values


def run_as_printed(kube: Kube, command: str, cwd: Path | None = None) -> None:
    """A command line of the docs or NOTES.txt, as the user runs it (Kube.shell)."""
    r = kube.shell(command, cwd)
    if r.returncode:
        raise KubeError(f"{command!r}: {r.stderr}")


def registry_ca(kube: Kube, ca: Path, workdir: Path) -> None:
    """The docs' kubectl lines before the install (the release's namespace, and the registry's CA
    ConfigMap from `registry-ca.pem`, here the test registry's CA), run as printed; then the
    namespace's kube-root-ca.crt, which the controller-manager writes into every namespace (the
    BackendTLSPolicy's CA)."""
    cmds, _, namespace, _ = docs_install_steps()
    (workdir / "registry-ca.pem").write_bytes(ca.read_bytes())
    for cmd in cmds:
        run_as_printed(kube, cmd, workdir)
    kubelet.publish_root_ca(kube, namespace)


def chart_values(kube: Kube, image: dict, values: dict) -> dict:
    """The docs' install values (docs_install_steps), the image and its digest the test
    registry's; and apiServer.port, the API server's own: its Backend's name,
    kubernetes.default.svc.cluster.local, resolves to the API server itself here, where no
    kube-proxy turns the Service's 443 into its port; then ``values``."""
    _, release, namespace, docs = docs_install_steps()
    assert (release, namespace) == (RELEASE, NAMESPACE), (release, namespace)
    assert (docs["gateway"], docs["hosts"]) == ({"name": GATEWAY, "namespace": GATEWAY_NS}, [HOST]), docs
    return helm._merge(helm._merge(docs, {"apiServer": {"port": kube.port},
                                          "image": {"url": image["url"], "sha256": image["sha256"]}}), values)


def install_chart(kube: Kube, values: dict) -> str:
    """`helm install kod charts/kube-oidc-discovery-envoy-gateway -n oidc --create-namespace`;
    returns NOTES.txt as printed."""
    helm.install(kube.kubeconfig, values=values, chart_dir=CHART, release=RELEASE, namespace=NAMESPACE)
    return helm.notes(CHART, values, release=RELEASE, namespace=NAMESPACE)


def run_notes_token_command(kube: Kube, notes: str) -> str:
    """The NOTES' `kubectl -n ... create secret generic ... | kubectl apply -f -` run as printed,
    by a shell (its `$(kubectl create token ...)` included), kubectl being v1.37.2's; returns the
    Secret's name."""
    m = re.search(r"^ *(kubectl -n \S+ create secret generic (\S+) \\\n.*?kubectl apply -f -)$", notes, re.S | re.M)
    if not m:
        raise AssertionError(f"no token command in NOTES.txt:\n{notes}")
    run_as_printed(kube, m.group(1))
    return m.group(2)


def run_notes_remote_commands(kube: Kube, notes: str, cwd: Path) -> None:
    """The NOTES' commands for other clusters' API servers (`issuers` entries with apiServer):
    per entry, the token Secret's `kubectl ... create secret generic ... $(cat <name>-token) ...
    | kubectl apply -f -` and the CA's `kubectl ... create configmap ... --from-file=ca.crt=<name>-ca.crt`,
    run as printed by a shell in ``cwd``, where the user keeps those files."""
    cmds = re.findall(r"^ *(kubectl -n \S+ create (?:secret generic \S+ \\\n *--from-literal=credential="
                      r"\"Bearer \$\(cat \S+\)\" --dry-run=client -o yaml \| kubectl apply -f -"
                      r"|configmap \S+ --from-file=ca\.crt=\S+))$", notes, re.M)
    if not cmds:
        raise AssertionError(f"no command for another cluster in NOTES.txt:\n{notes}")
    for cmd in cmds:
        run_as_printed(kube, cmd, cwd)


def apply_notes_gateway_patch(kube: Kube, notes: str) -> str:
    """The NOTES' `kubectl -n NS patch gateway NAME --type merge -p '...'` (token mode
    projected: the Gateway names the chart's EnvoyProxy), run as printed; returns the Gateway's
    name."""
    m = re.search(r"^ *(kubectl -n \S+ patch gateway (\S+) --type merge -p '.*')$", notes, re.M)
    if not m:
        raise AssertionError(f"no Gateway patch in NOTES.txt:\n{notes}")
    run_as_printed(kube, m.group(1))
    return m.group(2)


# ---------------------------------------------------------------------- the Gateway's Envoy
OWNER_LABELS = {"gateway.envoyproxy.io/owning-gateway-name": GATEWAY,
                "gateway.envoyproxy.io/owning-gateway-namespace": GATEWAY_NS}


def _owned(kind_path: str, kube: Kube) -> list[dict]:
    selector = ",".join(f"{k}={v}" for k, v in OWNER_LABELS.items())
    return kube.get(f"{kind_path}?labelSelector={selector}")["items"]


def envoy_deployment(kube: Kube, volume: str | None = None) -> dict:
    """The Deployment Envoy Gateway's Kubernetes infrastructure made for Gateway eg (with
    ``volume`` in its pod template, once Envoy Gateway has applied an EnvoyProxy that adds it)."""
    path = f"/apis/apps/v1/namespaces/{GATEWAY_NS}/deployments"

    def ready():
        dep = (_owned(path, kube) or [None])[0]
        vols = [v["name"] for v in (dep or {}).get("spec", {}).get("template", {}).get("spec", {}).get("volumes", [])]
        return dep if dep and (volume is None or volume in vols) else None
    return poll(ready, 60, interval=0.5, what=f"Envoy Gateway's Envoy Deployment{' with ' + volume if volume else ''}")


def envoy_service(kube: Kube) -> dict:
    return poll(lambda: (_owned(f"/api/v1/namespaces/{GATEWAY_NS}/services", kube) or [None])[0], 60,
                interval=0.5, what="Envoy Gateway's Envoy Service")


class EnvoyPod:
    """The Envoy Deployment's pod: scheduled (harness.kubelet), its `envoy` container run with
    the container's command and args (Envoy Gateway's bootstrap) by the suite's Envoy 1.39.0, in a
    network namespace of its own at ENVOY_POD_IP and a mount namespace where /certs (Secret
    `envoy`) and /sds (the ConfigMap) are the volumes the kubelet wrote. Then what the deployment
    controller and a load balancer would report: the Deployment's replicas available, the
    Service's load-balancer address (the pod's), which Envoy Gateway reads into the Gateway's
    Programmed condition and addresses. (Its shutdown-manager sidecar, which only delays Envoy's
    exit for draining, is not run.)"""

    def __init__(self, kube: Kube, workdir: Path, volume: str | None = None):
        self.kube, self.dir = kube, workdir
        self.deployment = envoy_deployment(kube, volume)
        name = self.deployment["metadata"]["name"]
        self.pod = kubelet.Pod(kube, GATEWAY_NS, name, workdir, container_name="envoy", ip=ENVOY_POD_IP)
        self.ns: netns.PodNamespaces | None = None

    def start(self) -> "EnvoyPod":
        self.pod.schedule()
        c = self.pod.container()
        self.pod.mount_volumes(c)
        self.ns = netns.PodNamespaces(self.dir / "pause", ip=ENVOY_POD_IP, gateway=ENVOY_POD_GATEWAY)
        for m in c.get("volumeMounts", []):
            self.ns.bind(self.pod.host_path(m["mountPath"]), m["mountPath"])
        # the pod's resolv.conf, which the kubelet writes (cluster DNS, its search path): no DNS
        # server here (the Services' names are in the hosts file), so a nameserver on the pod's
        # loopback, which refuses at once; the machine's own is unreachable from the pod and
        # Envoy's resolver would wait for it
        self.pod.write_files({"/etc/resolv.conf": RESOLV_CONF.encode()})
        self.ns.bind(self.pod.host_path("/etc/resolv.conf"), "/etc/resolv.conf")
        self.pod.run(envoy_bin(), prefix=self.ns.prefix)
        self._report_available()
        return self

    def _report_available(self) -> None:
        name = self.deployment["metadata"]["name"]
        self._status(f"/apis/apps/v1/namespaces/{GATEWAY_NS}/deployments/{name}/status", {
            "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1,
            "observedGeneration": self.deployment["metadata"]["generation"]})
        svc = envoy_service(self.kube)
        if svc["spec"].get("type") == "LoadBalancer":
            self._status(f"/api/v1/namespaces/{GATEWAY_NS}/services/{svc['metadata']['name']}/status",
                         {"loadBalancer": {"ingress": [{"ip": ENVOY_POD_IP, "ipMode": "VIP"}]}})

    def _status(self, path: str, status: dict) -> None:
        code, _, body = self.kube.request("PATCH", path, admin=True,
                                          headers={"Content-Type": "application/merge-patch+json"},
                                          body=json.dumps({"status": status}).encode())
        if code != 200:
            raise KubeError(f"PATCH {path}: {code} {body[:300]!r}")

    def admin(self, path: str, method: str = "GET") -> str:
        """Envoy's admin API, on 127.0.0.1 of the pod's network (entered by nsenter)."""
        assert self.ns is not None
        r = subprocess.run(["nsenter", "-t", str(self.ns.pid), "-n", "curl", "-sf", "-X", method,
                            f"http://127.0.0.1:{ENVOY_ADMIN}{path}"], capture_output=True, text=True, timeout=10)
        if r.returncode:
            raise RuntimeError(f"{method} {path}: curl exit {r.returncode} {r.stderr}")
        return r.stdout

    def log_text(self) -> str:
        return self.pod.log_text()

    def filter_callbacks(self) -> int:
        """How often the filter's stream callback has run (Envoy's Wasm trace log, as
        tests/e2e/test_other_hosts.py counts it; trace_wasm() turns it on)."""
        return len(STREAM_CALLBACK.findall(self.log_text()))

    @contextmanager
    def trace_wasm(self):
        self.admin("/logging?wasm=trace", "POST")
        try:
            yield
        finally:
            self.admin("/logging?wasm=warning", "POST")

    def log_tail(self, lines: int = 40) -> str:
        return self.pod.log_tail(lines)

    def stop(self) -> None:
        if self.pod.proc is not None:
            child.stop(self.pod.proc, 5)
            self.pod.proc = None
        if self.ns is not None:
            self.ns.stop()
            self.ns = None


def status_of(get: Callable[..., client.Response], path: str, **kw) -> int:
    """The gateway's status for ``path``; 0 while nothing listens (no listener yet)."""
    try:
        return get(path, **kw).status
    except OSError:
        return 0


def getter(ca: Path) -> Callable[..., client.Response]:
    """A request (GET unless method=...) to the Gateway's HTTPS listener at the Envoy pod (path,
    host=HOST, ...), trusting the Gateway certificate's CA ``ca``."""
    return lambda path, host=HOST, **kw: client.request(ENVOY_HTTPS, path, host=host, tls_ca=str(ca),
                                                    address=ENVOY_POD_IP, **kw)


def start_envoy(kube: Kube, workdir: Path, ca: Path, eg: control.EnvoyGateway,
                ready: Callable[[int], bool] = lambda status: status == 200,
                ready_path: str = DISCOVERY, volume: str | None = None) -> tuple[EnvoyPod, Callable[..., client.Response]]:
    """The Envoy pod run (from the Deployment once it has ``volume``), and a wait until the
    OIDC host's ``ready_path`` answers a status that ``ready`` accepts. Returns the pod and the
    getter."""
    pod = EnvoyPod(kube, workdir, volume).start()
    get = getter(ca)
    try:
        poll(lambda: ready(status_of(get, ready_path)), 90, interval=0.5, what="the Gateway answering the OIDC host")
    except AssertionError as e:
        pod.stop()
        raise AssertionError(f"{e}\n--- envoy\n{pod.log_tail(60)}\n--- envoy-gateway\n"
                             + "\n".join(eg.log_text().splitlines()[-60:])) from None
    return pod, get


def install(kube: Kube, workdir: Path, eg: control.EnvoyGateway, image: dict, registry_ca_file: Path,
            backend, values: dict, ready_path: str = DISCOVERY,
            remote_files: Path | None = None) -> tuple[EnvoyPod, Callable[..., client.Response]]:
    """The whole user's install, in the docs' order: Gateway, an application on it, the registry's
    CA, `helm install` of the chart with chart_values(``values``), the NOTES' step of the token
    mode (projected: the Gateway patch naming the chart's EnvoyProxy; inject: the token command),
    and with ``remote_files`` (the directory of other clusters' `<name>-token` and `<name>-ca.crt`)
    the NOTES' commands for those clusters; then the Envoy pod (start_envoy, ready once
    ``ready_path`` answers 200). The caller stops the pod."""
    ca = create_gateway(kube, workdir)
    user_app(kube, backend.port)
    registry_ca(kube, registry_ca_file, workdir)
    vals = chart_values(kube, image, values)
    notes = install_chart(kube, vals)
    mode = helm.merged_values(CHART, vals)["token"]["mode"]
    if mode == "projected":
        apply_notes_gateway_patch(kube, notes)
    elif mode == "inject":
        run_notes_token_command(kube, notes)
    if remote_files is not None:
        run_notes_remote_commands(kube, notes, remote_files)
    return start_envoy(kube, workdir, ca, eg, ready_path=ready_path,
                       volume=TOKEN_VOLUME if mode == "projected" else None)


# ---------------------------------------------------------------------- reading back
def conditions(obj: dict) -> dict[str, tuple[str, str]]:
    """An object's top-level conditions: type -> (status, reason)."""
    return {c["type"]: (c["status"], c["reason"]) for c in obj.get("status", {}).get("conditions", [])}


def _controller_entry(obj: dict) -> dict:
    """A route's (status.parents) or policy's (status.ancestors) only entry written by Envoy
    Gateway's controller."""
    st = obj.get("status", {})
    entries = [e for e in st.get("parents", []) + st.get("ancestors", [])
               if e.get("controllerName") == "gateway.envoyproxy.io/gatewayclass-controller"]
    assert len(entries) == 1, json.dumps(st, indent=1)
    return entries[0]


def ancestor_conditions(obj: dict) -> dict[str, tuple[str, str]]:
    """The conditions of that entry: type -> (status, reason)."""
    return {c["type"]: (c["status"], c["reason"]) for c in _controller_entry(obj)["conditions"]}


def ancestor_condition(obj: dict, ctype: str) -> dict:
    """Condition ``ctype`` of that entry, whole (its message too)."""
    entry = _controller_entry(obj)
    found = [c for c in entry["conditions"] if c["type"] == ctype]
    assert len(found) == 1, (ctype, entry)
    return found[0]
