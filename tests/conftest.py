"""Fixtures every test tier shares: the built filter, the test PKI, an application backend, Envoy
stacks (the filter in real Envoy with a shipped config, against the fake kube-apiserver), several
API servers behind one Envoy (the `issuers` form), a registry and skopeo, and the ports of
`make run`; and each tier's default timeout. A tier's own fixtures are in its folder's
conftest.py. Paths (tests/, tools/, charts/image/) come from pytest.ini."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.issuers import CLUSTERS, Cluster, plugin_config, three_clusters
from harness import envoy, make_run
from harness import kube as _kube
from harness import pki as _pki
from harness.backend import Backend
from harness.constants import WASM
from harness.fake_apiserver import FakeApiServer
from harness.fleet import Fleet, Upstream
from harness.registry import INSTALL_HINT, Registry, https_registry, push_filter_image
from harness.stack import Stack, new_token

# Timeout of a test that sets none (pytest.mark.timeout), by folder under tests/: a hang in Envoy,
# an API server or a test fails that test instead of blocking CI. The real tier starts and
# restarts control planes. Folders not named here get pytest.ini's `timeout`, a backstop.
DEFAULT_TIMEOUT_S = {"e2e": 60, "shipped": 60, "real": 120, "istio": 120, "istioreal": 240, "envoygatewayreal": 240}


def pytest_collection_modifyitems(config, items):
    tests = Path(__file__).parent
    for item in items:
        # the rotating token's "Bearer " needs an Envoy that knows header_value_prefix; in an
        # older one (make envoy-matrix) the refusal itself is what the shipped tests check
        if item.get_closest_marker("needs_header_value_prefix") and not envoy.has_header_value_prefix():
            item.add_marker(pytest.mark.skip(reason=(
                f"Envoy {envoy.version()} has no header_value_prefix (docs/support.md)")))
        if not item.path.is_relative_to(tests) or item.get_closest_marker("timeout") is not None:
            continue
        seconds = DEFAULT_TIMEOUT_S.get(item.path.relative_to(tests).parts[0])
        if seconds:
            item.add_marker(pytest.mark.timeout(seconds))


@pytest.fixture(scope="session")
def wasm() -> Path:
    """dist/kube_oidc_discovery.wasm, as `make build` wrote it."""
    if not WASM.exists():
        pytest.fail(f"{WASM} is missing: run `make build` (make e2e does)")
    return WASM


@pytest.fixture(scope="session")
def wasm_bytes(wasm: Path) -> bytes:
    data = wasm.read_bytes()
    if data[:4] != b"\0asm":
        pytest.fail(f"{wasm} is not a Wasm module: run `make build`")
    return data


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> _pki.Pki:
    return _pki.generate(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def anonymous_kube(tmp_path_factory, pki):
    """A real kube-apiserver (harness.kube, `make kube-tools`) that serves the two documents to
    anonymous requests (KEP-4633), for a module's tests; whether the discovery role is bound to
    system:unauthenticated is each test's to say."""
    missing = _kube.missing_binaries()
    if missing:
        pytest.fail(f"{', '.join(missing)} missing in {_kube.default_bin_dir()}: run `make kube-tools`")
    with _kube.Kube(tmp_path_factory.mktemp("anonymous-kube"), pki, anonymous_discovery=True) as k:
        yield k


@pytest.fixture(scope="session")
def backend():
    """An application behind the same Envoy (the shipped configs' ``app`` cluster)."""
    b = Backend().start()
    yield b
    b.stop()


@pytest.fixture
def make_stack(tmp_path, pki, wasm):
    """``make_stack(config=None, start=True, **kw)`` -> a Stack (harness.stack): a fake API
    server and Envoy running envoy/<config> (default: envoy/pod.yaml, or what this Envoy runs
    instead, harness.envoy.pod_config); all of them stopped at teardown."""
    stacks: list[Stack] = []

    def make(config: str | None = None, start: bool = True, **kw) -> Stack:
        s = Stack(tmp_path / f"stack{len(stacks)}", pki, wasm, config, **kw)
        stacks.append(s)
        if start:
            s.start()
        return s

    yield make
    for s in stacks:
        s.stop()


@pytest.fixture
def ports_free():
    """`make run` listens on fixed ports: fail early if something else holds one."""
    busy = make_run.busy_ports()
    if busy:
        pytest.fail(f"127.0.0.1 ports {busy} are in use (another `make run`?)")


@pytest.fixture(scope="session")
def cluster_pkis(tmp_path_factory) -> dict[str, _pki.Pki]:
    """A PKI per certificate name: prod's (also edge's) and dev's, each with its own CA."""
    names = {n for _, _, n in CLUSTERS.values()}
    return {n: _pki.generate(tmp_path_factory.mktemp(n), [n]) for n in sorted(names)}


@pytest.fixture
def fleet(tmp_path, wasm, cluster_pkis):
    """``fleet(before_envoy=None, **plugin_globals)`` -> (Fleet, {name:
    Cluster}): three fake API servers started, Envoy started with the three issuers."""
    started: list = []

    def make(before_envoy=None, backend_port=None, concurrency=1,
             wasm_trace=False, **plugin_globals):
        clusters: dict[str, Cluster] = {}
        upstreams: dict[str, Upstream] = {}
        for name, (issuer, cluster, cert_name) in CLUSTERS.items():
            pki = cluster_pkis[cert_name]
            token = new_token()
            fake = FakeApiServer(pki.server_cert, pki.server_key, token=token, issuer=issuer)
            fake.start()
            started.append(fake)
            clusters[name] = Cluster(name, issuer, fake, token)
            upstreams[cluster] = Upstream(fake, pki.ca_cert, token)
        if before_envoy:
            before_envoy(clusters)
        f = Fleet(tmp_path / "fleet", wasm, upstreams, cfg=three_clusters(),
                  plugin=plugin_config(**plugin_globals), backend_port=backend_port,
                  concurrency=concurrency, wasm_trace=wasm_trace)
        started.append(f)
        f.start()
        return f, clusters

    yield make
    for s in reversed(started):
        if isinstance(s, Fleet):
            print(f"---- Envoy log (tail) ----\n{s.envoy.tail(30)}")
        s.stop()


def _tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)
    if not path:
        pytest.fail(f"{name} is not installed: {INSTALL_HINT}")
    return path


@pytest.fixture(scope="session")
def skopeo_bin() -> str:
    return _tool("skopeo")


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """``host:port`` of a plain-HTTP registry on 127.0.0.1 (Debian's docker-registry)."""
    _tool("docker-registry")
    with Registry(tmp_path_factory.mktemp("registry")) as r:
        yield r.addr


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory):
    """A registry on 127.0.0.1 over HTTPS (harness.registry.https_registry; ``.ca`` its CA file),
    for the Envoy Gateway tiers: Envoy Gateway's image fetcher allows no plain HTTP."""
    _tool("docker-registry")
    with https_registry(tmp_path_factory.mktemp("tls-registry")) as r:
        yield r


@pytest.fixture(scope="session")
def tls_image(tmp_path_factory, wasm, tls_registry, skopeo_bin) -> dict:
    """The filter's OCI image in the HTTPS registry, as the Envoy Gateway charts name it:
    {"url": registry/repository:tag, "sha256": manifest digest hex}."""
    return push_filter_image(tls_registry, Path(wasm), "kube-oidc-discovery", tmp_path_factory.mktemp("tls-oci"))


@pytest.fixture(scope="session")
def image(tmp_path_factory, wasm, registry, skopeo_bin):
    """The filter as `make oci` + `make push` publish it, in the local registry: an
    istio.gateway.Image, the WasmPlugin's url and sha256 (the manifest digest) for it (the Istio
    tiers; imported here, not at the top: tests/istioreal loads Helm's Go library only once in
    its namespaces)."""
    import build_oci  # charts/image/build_oci.py
    from istio.gateway import Image
    out = tmp_path_factory.mktemp("oci") / "layout"
    digests = build_oci.build(Path(wasm).read_bytes(), out)
    ref = f"{registry}/kube-oidc-discovery:test"
    subprocess.run([skopeo_bin, "copy", "--dest-tls-verify=false", f"oci:{out}:latest", f"docker://{ref}"],
                   check=True, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    return Image(registry, f"oci://{ref}", digests["manifest"].split(":", 1)[1])
