"""Fixtures of the end-to-end tests: the real filter (dist/kube_oidc_discovery.wasm) in a real
Envoy (.venv/bin/envoy) running the shipped configs of envoy/, against the fake kube-apiserver."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# tools/helm.py (the chart, rendered) and tools/run_local.py (`make run`)
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from harness import REPO_ROOT, pki as _pki  # noqa: E402
from harness.backend import Backend  # noqa: E402
from harness.stack import Stack  # noqa: E402

WASM = REPO_ROOT / "dist" / "kube_oidc_discovery.wasm"
DEFAULT_TIMEOUT_S = 60


def default_timeout(items, directory: Path, seconds: float) -> None:
    """pytest-timeout for the tests under ``directory`` that set none: a hang in Envoy, an API
    server or a test fails that test instead of blocking CI, whatever ini file (or none) the run
    picked up."""
    for item in items:
        if Path(str(item.fspath)).is_relative_to(directory) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(seconds))


def pytest_collection_modifyitems(config, items):
    default_timeout(items, Path(__file__).parent, DEFAULT_TIMEOUT_S)


@pytest.fixture(scope="session")
def wasm() -> Path:
    if not WASM.exists():
        pytest.fail(f"{WASM} is missing: run `make build` (make e2e does)")
    return WASM


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return _pki.generate(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def backend():
    b = Backend().start()
    yield b
    b.stop()


@pytest.fixture
def make_stack(tmp_path, pki, wasm):
    """Starts Stacks for one test and stops them all at teardown."""
    stacks: list[Stack] = []

    def make(config: str = "pod.yaml", start: bool = True, **kw) -> Stack:
        s = Stack(tmp_path / f"stack{len(stacks)}", pki, wasm, config, **kw)
        stacks.append(s)
        if start:
            s.start()
        return s

    yield make
    for s in stacks:
        s.stop()
