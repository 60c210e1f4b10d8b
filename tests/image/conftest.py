"""Fixtures of the image tests: the built filter's bytes, the tools, and Debian's docker-registry
on 127.0.0.1 (plain HTTP, no auth, storage in a temp dir), started for the session and always
stopped. ``wasm`` (its path) is tests/conftest.py's."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness.registry import INSTALL_HINT, Registry


@pytest.fixture(scope="session")
def wasm_bytes(wasm: Path) -> bytes:
    data = wasm.read_bytes()
    if data[:4] != b"\0asm":
        pytest.fail(f"{wasm} is not a Wasm module: run `make build`")
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
