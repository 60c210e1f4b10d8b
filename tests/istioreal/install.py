"""A cluster as this project's users have it, then the chart installed into it with Helm: the real
kube-apiserver (harness.kube) with Istio's control plane (control.py), the endpoints the
controller-manager would publish (harness/kubelet.py), the gateway (classic mode: Istio's own gateway
chart; Gateway API mode: Gateway `public`, whose Deployment istiod's controller creates), and
kube-oidc-discovery's chart with `helm install` (tools/helm.py), then the NOTES' token patch
applied with kubectl as the NOTES print it."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Callable

import helm  # tools/helm.py
from harness import client, kubelet, pki as pkimod
from harness.checks import poll
from harness.constants import DISCOVERY, HOST, JWKS, OTHER_HOST
from harness.kube import Kube, KubeError
from e2e.test_other_hosts import STREAM_CALLBACK
from istioreal import control

GATEWAY_NS = helm.NAMESPACE  # istio-ingress, the chart's default namespace
CLASSIC_GATEWAY = "istio-ingressgateway"  # istio/gateway's release: labels istio=ingressgateway
CREDENTIAL = "kube-oidc-discovery-tls"  # publicGateway.credentialName's default
PUBLIC_HOSTS = [HOST, OTHER_HOST, "oidc2.example.com"]  # the OIDC host, the application's, a second OIDC host
# the user the API server sees for the static token: the chart's service account (release kod)
TOKEN_USER = f"system:serviceaccount:{GATEWAY_NS}:kod-kube-oidc-discovery"


def gateway_chart() -> Path:
    return control.module_dir("istio.io/istio") / "manifests" / "charts" / "gateway"


def install_classic_gateway(kube: Kube) -> None:
    """Istio's gateway chart (istio/gateway) as its README installs it; a ClusterIP Service (no
    load balancer here)."""
    helm.install(kube.kubeconfig, values={"service": {"type": "ClusterIP"}}, chart_dir=gateway_chart(),
                 release=CLASSIC_GATEWAY, namespace=GATEWAY_NS)


def tls_secret(kube: Kube, workdir: Path) -> Path:
    """The gateway's certificate for every public host (credentialName); returns the CA file a
    client trusts."""
    ca = pkimod.make_ca("public hosts CA")
    cert, key = pkimod.make_leaf(ca, "gateway", PUBLIC_HOSTS)
    kube.create_namespace(GATEWAY_NS)
    kube.create(f"/api/v1/namespaces/{GATEWAY_NS}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": CREDENTIAL, "namespace": GATEWAY_NS},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": base64.b64encode(cert).decode(), "tls.key": base64.b64encode(key).decode()}})
    f = workdir / "public-ca.crt"
    f.write_bytes(ca.cert.public_bytes(pkimod.serialization.Encoding.PEM))
    return f


def install_chart(kube: Kube, values: dict) -> str:
    """`helm install kod charts/kube-oidc-discovery -n istio-ingress`; returns NOTES.txt as
    printed."""
    helm.install(kube.kubeconfig, values=values)
    return helm.notes(values=values)


def create_remote_secrets(kube: Kube, notes: str, files: dict[str, Path]) -> list[str]:
    """Runs the `kubectl -n NS create secret generic NAME --from-file=KEY=FILE` lines NOTES.txt
    prints for other clusters' CAs and tokens, FILE taken from ``files`` (the printed name ->
    its path here); returns the Secrets' names."""
    made = []
    for ns, name, key, f in re.findall(r"kubectl -n (\S+) create secret generic (\S+) --from-file=([\w.]+)=(\S+)", notes):
        r = kube.kubectl("-n", ns, "create", "secret", "generic", name, f"--from-file={key}={files[f]}")
        if r.returncode:
            raise KubeError(f"{name}: {r.stderr}")
        made.append(name)
    return made


def apply_notes_patch(kube: Kube, notes: str) -> str:
    """Runs the `kubectl -n NS patch deployment NAME --type strategic -p '...'` that NOTES.txt
    prints; returns the Deployment's name."""
    m = re.search(r"kubectl -n (\S+) patch deployment (\S+) --type strategic -p '(.*?)'", notes, re.S)
    if not m:
        raise AssertionError(f"no token patch in NOTES.txt:\n{notes}")
    ns, name, patch = m.groups()
    r = kube.kubectl("-n", ns, "patch", "deployment", name, "--type", "strategic", "-p", patch)
    if r.returncode:
        raise KubeError(f"the NOTES patch: {r.stderr}")
    return name


def reissue_steps(notes: str) -> tuple[list[list[str]], tuple[str, str]]:
    """The steps NOTES.txt prints to re-issue this cluster's rotating token: the arguments of its
    `kubectl -n NS delete KIND NAME` lines, in order, and the namespace and release of the
    `helm -n NS upgrade RELEASE <chart> --reuse-values` line after them (the caller upgrades with
    the chart and values it installed)."""
    m = re.search(r"A re-issued token in a mounted Secret reaches Envoy without a restart\. This cluster's:"
                  r".*?\n\n((?:   kubectl -n \S+ delete \S+ \S+\n)+)   helm -n (\S+) upgrade (\S+) <chart> --reuse-values\n",
                  notes, re.S)
    if not m:
        raise AssertionError(f"no steps to re-issue the token in NOTES.txt:\n{notes}")
    deletes = [line.split()[1:] for line in m.group(1).splitlines()]
    return deletes, (m.group(2), m.group(3))


def bootstrap_template() -> bytes:
    """What istio-proxy's image holds at /var/lib/istio/envoy/envoy_bootstrap_tmpl.json."""
    return (control.module_dir("istio.io/istio") / "tools" / "packaging" / "common" / "envoy_bootstrap.json").read_bytes()


ENVOY_ADMIN = 15000  # pilot-agent's default proxyAdminPort


def set_envoy_log_level(level: str, component: str = "wasm") -> None:
    """Envoy's admin /logging, as `istioctl proxy-config log` does."""
    import urllib.request
    req = urllib.request.Request(f"http://127.0.0.1:{ENVOY_ADMIN}/logging?{component}={level}", method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200


def start_gateway(kube: Kube, deployment: str, workdir: Path) -> kubelet.Pod:
    """The Deployment's pod scheduled and its istio-proxy container run: pilot-agent, which asks
    istiod for its certificate and config and starts Envoy."""
    pod = kubelet.Pod(kube, GATEWAY_NS, deployment, workdir)
    pod.schedule()
    pod.run(control.binary("pilot-agent"),
            files={"/var/lib/istio/envoy/envoy_bootstrap_tmpl.json": bootstrap_template()})
    return pod


APP = "app"  # a user's application behind the same gateway, on OTHER_HOST


def user_app(kube: Kube, backend_port: int, gateway_api: bool = False) -> None:
    """A user's application on the gateway: Service `app` (its endpoint the test's backend) and
    its route for app.example.com: classic mode, a Gateway of the user's own and a
    VirtualService; Gateway API mode, an HTTPRoute on Gateway `public` (its listener for the
    host: create_gateway_api_gateway)."""
    ns = GATEWAY_NS
    kube.create_namespace(ns)
    kube.create(f"/api/v1/namespaces/{ns}/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": APP, "namespace": ns},
        "spec": {"ports": [{"name": "http", "port": 8080, "targetPort": backend_port}]}})
    kubelet.publish_endpoints(kube, ns, APP)
    if gateway_api:
        kube.create(f"/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes", {
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": APP, "namespace": ns},
            "spec": {"parentRefs": [{"name": GATEWAY_API_NAME}], "hostnames": [PUBLIC_HOSTS[1]],
                     "rules": [{"backendRefs": [{"name": APP, "port": 8080}]}]}})
        return
    kube.create(f"/apis/networking.istio.io/v1/namespaces/{ns}/gateways", {
        "apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "apps", "namespace": ns},
        "spec": {"selector": {"istio": "ingressgateway"}, "servers": [
            {"port": {"number": 443, "name": "https-apps", "protocol": "HTTPS"}, "hosts": [PUBLIC_HOSTS[1]],
             "tls": {"mode": "SIMPLE", "credentialName": CREDENTIAL}}]}})
    kube.create(f"/apis/networking.istio.io/v1/namespaces/{ns}/virtualservices", {
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": APP, "namespace": ns},
        "spec": {"hosts": [PUBLIC_HOSTS[1]], "gateways": ["apps"],
                 "http": [{"route": [{"destination": {"host": f"{APP}.{ns}.svc.cluster.local", "port": {"number": 8080}}}]}]}})


HTTPS = 443  # publicGateway.port's default, on the node's address


def status_of(get: Callable[..., client.Response], path: str, **kw) -> int:
    """The gateway's status for ``path``; 0 while nothing listens (no listener from istiod yet)."""
    try:
        return get(path, **kw).status
    except OSError:
        return 0


def chart_values(kube: Kube, image, values: dict) -> dict:
    """The chart's values of the tier's installs: the API server's CA file, the image, then
    ``values``."""
    return helm._merge({"apiServer": {"caCertificates": str(kube.pki.ca_cert)},
                        "image": {"url": image.url, "sha256": image.sha256}}, values)


def _serve(kube: Kube, notes: str, workdir: Path, ca: Path, ready: Callable[[int], bool], ready_path: str = DISCOVERY):
    """The NOTES' token patch on the gateway's Deployment, its pod run, and a wait until the OIDC
    host's ``ready_path`` answers a status that ``ready`` accepts. Returns the pod and a GET
    on the gateway (path, host=HOST, ...) trusting ``ca``, its certificate's."""
    pod = start_gateway(kube, apply_notes_patch(kube, notes), workdir)
    get = lambda path, host=HOST, **kw: client.get(HTTPS, path, host=host, tls_ca=str(ca), **kw)
    try:
        poll(lambda: ready(status_of(get, ready_path)), 60, interval=0.5, what="the gateway answering the OIDC host")
    except AssertionError:
        pod.stop()
        raise AssertionError(pod.log_tail(60))
    return pod, get


def assert_other_host_never_enters_the_filter(pod: kubelet.Pod, get: Callable[..., client.Response], backend) -> None:
    """The application's host reaches its backend, the request as sent, and the filter's stream
    callback (Wasm trace log, as tests/e2e/test_other_hosts.py counts it) never runs for it; it
    does for the OIDC host's."""
    set_envoy_log_level("trace")
    callbacks = lambda: len(STREAM_CALLBACK.findall(pod.log_text()))
    try:
        before = callbacks()
        r = get(JWKS + "?q=1", host=OTHER_HOST)
        assert r.status == 200 and r.header("x-backend") == "app", (r.status, r.body[:200])
        assert backend.last().path == JWKS + "?q=1"
        assert callbacks() == before
        get(JWKS)  # the OIDC host's request enters it: the count would see one
        poll(lambda: callbacks() > before, 5, what="the filter's callback on the OIDC host")
    finally:
        set_envoy_log_level("warning")


def unpullable(image):
    """``image`` with a sha256 that is not its own: pilot-agent fetches it and refuses it."""
    return type(image)(image.registry, image.url, "0" * 64)


def classic_gateway(kube: Kube, workdir: Path, image, backend, values: dict,
                    ready: Callable[[int], bool] = lambda status: status == 200, ready_path: str = DISCOVERY,
                    before_pod: Callable[[str], None] = lambda notes: None):
    """Classic mode installed as a user installs it: the gateway's TLS Secret, Istio's gateway
    chart, a user's application, `helm install` of the chart with publicGateway.create and
    ``values``, ``before_pod(notes)`` (the NOTES' steps before the patch), then _serve. The
    caller stops the pod."""
    ca = tls_secret(kube, workdir)
    install_classic_gateway(kube)
    user_app(kube, backend.port)
    notes = install_chart(kube, chart_values(kube, image, mode_values("classic", values)))
    before_pod(notes)
    return _serve(kube, notes, workdir, ca, ready, ready_path)


GATEWAY_API_NAME = "public"
GATEWAY_API_REFS = [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": GATEWAY_API_NAME}]
GATEWAY_API_DEPLOYMENT = f"{GATEWAY_API_NAME}-istio"  # istiod's name: <gateway>-<gatewayClassName>


def create_gateway_api_gateway(kube: Kube) -> None:
    """Gateway `public` of class istio, an HTTPS listener for the OIDC host and one for the
    application's (the TLS Secret by certificateRefs), its Service ClusterIP (no load balancer here); then what istiod's
    deployment controller makes of it: Deployment, Service and ServiceAccount public-istio."""
    kube.create(f"/apis/gateway.networking.k8s.io/v1/namespaces/{GATEWAY_NS}/gateways", {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": GATEWAY_API_NAME, "namespace": GATEWAY_NS,
                     "annotations": {"networking.istio.io/service-type": "ClusterIP"}},
        "spec": {"gatewayClassName": "istio", "listeners": [
            {"name": f"https-{i}", "hostname": host, "port": HTTPS, "protocol": "HTTPS",
             "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": CREDENTIAL}]},
             "allowedRoutes": {"namespaces": {"from": "Same"}}} for i, host in enumerate(PUBLIC_HOSTS[:2])]}})
    path = f"/apis/apps/v1/namespaces/{GATEWAY_NS}/deployments/{GATEWAY_API_DEPLOYMENT}"
    poll(lambda: kube.api("GET", path)[0] == 200, 30, interval=0.3, what="istiod's Deployment for Gateway public")


def gateway_api_gateway(kube: Kube, workdir: Path, image, backend, values: dict,
                        ready: Callable[[int], bool] = lambda status: status == 200, ready_path: str = DISCOVERY,
                        before_pod: Callable[[str], None] = lambda notes: None):
    """Gateway API mode installed as a user installs it: the TLS Secret, Gateway `public`
    (istiod's controller creates its Deployment), a user's application, `helm install` of the chart with
    gateway.targetRefs and gateway.deploymentName public-istio and ``values``, ``before_pod(notes)``
    (the NOTES' steps before the patch), then _serve: the NOTES' token patch on istiod's
    Deployment, its pod run from the patched spec. The caller stops the pod."""
    ca = tls_secret(kube, workdir)
    create_gateway_api_gateway(kube)
    user_app(kube, backend.port, gateway_api=True)
    notes = install_chart(kube, chart_values(kube, image, mode_values("gateway_api", values)))
    before_pod(notes)
    return _serve(kube, notes, workdir, ca, ready, ready_path)


MODES = ("classic", "gateway_api")  # the params of a module's `mode` fixture (conftest.py)


def mode_values(mode: str, values: dict) -> dict:
    """The chart's values that select ``mode``, then ``values``: classic mode, a Gateway of the
    chart's own; Gateway API mode, gateway.targetRefs (Gateway `public`) and gateway.deploymentName
    (the Deployment istiod's controller creates for it). What `helm upgrade` must be given again."""
    return helm._merge({"classic": {"publicGateway": {"create": True}},
                        "gateway_api": {"gateway": {"targetRefs": GATEWAY_API_REFS,
                                                    "deploymentName": GATEWAY_API_DEPLOYMENT}}}[mode], values)


def gateway(mode: str, kube: Kube, workdir: Path, image, backend, values: dict, **kw):
    """``mode``'s gateway installed as a user installs it (classic_gateway, gateway_api_gateway;
    ``kw``: their ready, ready_path, before_pod). Returns the pod and a GET on it; the caller stops
    the pod."""
    install_mode = {"classic": classic_gateway, "gateway_api": gateway_api_gateway}[mode]
    return install_mode(kube, workdir, image, backend, values, **kw)
