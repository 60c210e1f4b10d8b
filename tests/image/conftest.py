"""Fixtures of the image tests: the built filter, the tools, and Debian's docker-registry on
127.0.0.1 (plain HTTP, no auth, storage in a temp dir), started for the session and always
stopped."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "charts" / "image"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO_ROOT / "tests"))

from harness.registry import INSTALL_HINT, Registry  # noqa: E402

WASM = REPO_ROOT / "dist" / "kube_oidc_discovery.wasm"


@pytest.fixture(scope="session")
def wasm_path() -> Path:
    if not WASM.is_file():
        pytest.fail(f"{WASM} is missing: run `make build` first (`make oci-test` and `make test` do)")
    return WASM


@pytest.fixture(scope="session")
def wasm(wasm_path) -> bytes:
    data = wasm_path.read_bytes()
    if data[:4] != b"\0asm":
        pytest.fail(f"{wasm_path} is not a Wasm module: run `make build`")
    return data


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
    """``host:port`` of a plain-HTTP registry on 127.0.0.1."""
    _tool("docker-registry")
    with Registry(tmp_path_factory.mktemp("registry")) as r:
        yield r.addr
