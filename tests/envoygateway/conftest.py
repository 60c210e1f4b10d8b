"""Fixtures of the Envoy Gateway tests: Envoy Gateway itself (built by `make tools-envoy-gateway`
from github.com/envoyproxy/gateway at the tag tests/envoygateway/go.mod pins) in standalone mode,
fed the chart charts/kube-oidc-discovery-envoy-gateway as rendered by Helm's engine, pulling the
filter's OCI image from a local registry over HTTPS, driving the Envoy that Envoy Gateway v1.9
deploys by default (1.39.0, harness.releases) against the fake kube-apiserver (token mode none:
a real kube-apiserver, harness.kube). Everything runs in private network and mount namespaces (sandbox.py), one
Envoy Gateway at a time (its ports are fixed); run this directory as a pytest invocation of its
own (`make eg-test`)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import eg as egmod  # this folder's modules: pytest puts it on sys.path (it has no __init__.py)
import helm  # tools/helm.py
import sandbox
import standalone
from names import API_SERVER_FQDN, APP_HOST, CHART, GATEWAY, HERE, NAMESPACE, RELEASE, TOKEN
from harness import child, client, pki as _pki
from harness.backend import Backend
from harness.fake_apiserver import FakeApiServer
from harness.tokendir import TokenDir

DEFAULT_TIMEOUT_S = 240

# Every Envoy of this session, func-e's and harness.envoy's, is Envoy Gateway's default one.
os.environ.setdefault("KOD_ENVOY_VERSION", egmod.ENVOY_VERSION)


@pytest.fixture(scope="session", autouse=True)
def isolated(tmp_path_factory):
    """Before anything listens: this process in its own network and mount namespaces."""
    sandbox.enter(tmp_path_factory.mktemp("sandbox"),
                  {f"envoy-gateway.{standalone.EG_NAMESPACE}.svc.cluster.local": "127.0.0.1",
                   API_SERVER_FQDN: "127.0.0.1"})


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return _pki.generate(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def app():
    b = Backend().start()
    yield b
    b.stop()


@dataclass
class Env:
    """One Envoy Gateway running the chart's render."""
    eg: egmod.EnvoyGateway
    port: int
    objs: list[dict]
    fed: list[dict]
    fakes: dict[str, FakeApiServer] = field(default_factory=dict)

    def get(self, path: str, host: str, **kw) -> client.Response:
        return client.request(self.port, path, host=host, **kw)

    def chart(self, kind: str) -> list[dict]:
        return [o for o in self.objs if o["kind"] == kind]


def wait_serving(env: Env, host: str, path: str, timeout: float = 120) -> None:
    """Until the Envoy that Envoy Gateway started answers on the Gateway's port for ``host``
    with something other than a connection error or the 404 of a Gateway without the route."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if not env.eg.running:
            raise AssertionError(f"envoy-gateway exited:\n{env.eg.log_text()[-6000:]}")
        try:
            last = env.get(path, host, timeout=5)
            if last.status != 404:
                return
        except OSError as e:
            last = e
        time.sleep(0.5)
    raise AssertionError(f"not serving {host}{path} after {timeout}s (last: {last}):\n{env.eg.log_text()[-6000:]}")


class Envs:
    """One Envoy Gateway at a time (its ports are fixed): ``get(key, start)`` returns the running
    environment ``key``, or stops the running one and starts ``key`` with ``start()``. Test
    modules declare the environment they use (``EG_ENV``) and run grouped by it."""

    def __init__(self):
        self.key: str | None = None
        self.env: Env | None = None

    def get(self, key: str, start) -> Env:
        if self.key != key:
            self.stop()
            self.key = key
            self.env = start()
        return self.env

    def stop(self) -> None:
        if self.env is not None:
            self.env.eg.stop()
        self.key, self.env = None, None


def pytest_collection_modifyitems(config, items):
    order: dict[str, int] = {}
    for item in items:
        if Path(str(item.fspath)).is_relative_to(HERE) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT_S))
        order.setdefault(getattr(item.module, "EG_ENV", ""), len(order))
    items.sort(key=lambda i: order[getattr(i.module, "EG_ENV", "")])


@pytest.fixture(scope="session")
def envs():
    e = Envs()
    yield e
    e.stop()


@pytest.fixture(scope="session")
def start_eg(tmp_path_factory, pki, tls_image, tls_registry, app):
    """start_eg(values, api_server=..., secrets=..., configmaps=..., wait=(host, path), eg_env=...,
    enable_backend=True, enable_envoy_patch_policy=True, trust_registry=True) -> Env
    (api_server: the port of what stands in for this cluster's API server, at 127.0.0.1 where
    the chart's Backend names kubernetes.default.svc.cluster.local; eg_env: Envoy Gateway's, and
    so its Envoy's, extra environment variables; enable_*: its extensionApis; trust_registry: the
    registry's CA in Envoy Gateway's system trust store, SSL_CERT_FILE): the chart rendered with
    ``values`` (over the image, Gateway and API server port the test provides) and fed as
    rendered, in a fresh Envoy Gateway (stop it with env.eg.stop(); Envs does). The projected
    token's directory holds TOKEN, as the kubelet writes it."""

    def start(values: dict, *, api_server: int | None = None, secrets: dict,
              configmaps: dict | None = None, fakes: dict | None = None,
              wait: tuple[str, str] | None = None, eg_env: dict[str, str] | None = None,
              enable_backend: bool = True, enable_envoy_patch_policy: bool = True,
              trust_registry: bool = True) -> Env:
        work = tmp_path_factory.mktemp("eg")
        gw = egmod.EnvoyGateway(work)
        gw.certgen()
        sandbox.install_ca(gw.cert("envoy", "ca.crt").encode())
        port, admin_port = child.free_port(), child.free_port()
        vals = helm._merge({"gateway": {"name": GATEWAY}, "image": dict(tls_image)}, values)
        if api_server is not None:
            vals = helm._merge(vals, {"apiServer": {"port": api_server}})
        objs = helm.render(CHART, vals, release=RELEASE, namespace=NAMESPACE)
        TokenDir(sandbox.PROJECTED).write({"token": TOKEN})
        fed = (objs
               + standalone.cluster_objects(namespace=NAMESPACE, ca_pem=pki.ca_cert.read_text(), secrets=secrets, configmaps=configmaps)
               + standalone.gateway_objects(namespace=NAMESPACE, gateway=GATEWAY, port=port, admin_port=admin_port,
                                            envoy_version=egmod.ENVOY_VERSION,
                                            envoy_tls=(gw.cert("envoy", "tls.crt"), gw.cert("envoy", "tls.key")))
               + standalone.app_route(namespace=NAMESPACE, gateway=GATEWAY, host=APP_HOST,
                                      address="127.0.0.1", port=app.port))
        # without the registry's CA, the system trust store is the host's own bundle alone
        trust = ({"SSL_CERT_FILE": str(tls_registry.ca)} if trust_registry
                 else {"SSL_CERT_FILE": None, "SSL_CERT_DIR": None})
        gw.start(standalone.dump(fed), admin_port, env={**trust, **(eg_env or {})}, enable_backend=enable_backend,
                 enable_envoy_patch_policy=enable_envoy_patch_policy)
        env = Env(gw, port, objs, fed, dict(fakes or {}))
        try:
            wait_serving(env, APP_HOST, "/")
            if wait:
                wait_serving(env, *wait)
        except BaseException:
            gw.stop()
            raise
        return env

    return start


# ---------------------------------------------------------------------- the single-issuer form


@pytest.fixture(scope="session")
def fake(pki):
    """The fake kube-apiserver behind the `kubernetes` Service of the single-issuer form."""
    f = FakeApiServer(pki.server_cert, pki.server_key, token=TOKEN).start()
    yield f
    f.stop()


@pytest.fixture
def single(envs, start_eg, fake) -> Env:
    """The chart's defaults (single-issuer form, token mode projected) on host oidc.example.com."""
    from harness.constants import HOST, JWKS
    return envs.get("single", lambda: start_eg(
        {"hosts": [HOST]}, api_server=fake.port, secrets={},
        fakes={"local": fake}, wait=(HOST, JWKS)))
