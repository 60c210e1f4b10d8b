"""Fixtures of the Istio tests: the chart's objects through istiod's and pilot-agent's own code
(target/istio-xds, `make istio-xds`), and what istiod produced in real Envoy."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS.parent / "tools"))  # tools/helm.py

from e2e.conftest import backend, default_timeout, pki, wasm  # noqa: E402,F401  (shared fixtures)
from istio import istiod  # noqa: E402

# The image tests' local OCI registry (Debian's docker-registry), loaded under its own name: the
# filter is pushed there and pilot-agent's pkg/wasm pulls it as in a cluster.
_spec = importlib.util.spec_from_file_location("image_conftest", TESTS / "image" / "conftest.py")
_image = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_image)
registry = _image.registry

DEFAULT_TIMEOUT_S = 120


def pytest_collection_modifyitems(config, items):
    default_timeout(items, Path(__file__).parent, DEFAULT_TIMEOUT_S)


@pytest.fixture(scope="session", autouse=True)
def istio_xds() -> Path:
    try:
        return istiod.binary()
    except FileNotFoundError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="session")
def image(tmp_path_factory, wasm, registry):
    """The filter as `make oci` + `make push` publish it, in the local registry; the WasmPlugin's
    url and sha256 (the manifest digest) for it."""
    import shutil
    import subprocess
    sys.path.insert(0, str(TESTS.parent / "charts" / "image"))
    import build_oci
    from istio.gateway import Image
    out = tmp_path_factory.mktemp("oci") / "layout"
    digests = build_oci.build(Path(wasm).read_bytes(), out)
    ref = f"{registry}/kube-oidc-discovery:test"
    skopeo = shutil.which("skopeo") or pytest.fail("skopeo is not installed: run `make tools-apt`")
    subprocess.run([skopeo, "copy", "--dest-tls-verify=false", f"oci:{out}:latest", f"docker://{ref}"],
                   check=True, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    return Image(registry, f"oci://{ref}", digests["manifest"].split(":", 1)[1])
