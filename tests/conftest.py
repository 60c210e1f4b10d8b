"""Fixtures every test tier shares: the built filter, the test PKI, an application backend, Envoy
stacks (the filter in real Envoy with a shipped config, against the fake kube-apiserver) and the
ports of `make run`; and each tier's default timeout. A tier's own fixtures are in its folder's
conftest.py. Paths (tests/, tools/, charts/image/) come from pytest.ini."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import make_run
from harness import pki as _pki
from harness.backend import Backend
from harness.constants import WASM
from harness.stack import Stack

# Timeout of a test that sets none (pytest.mark.timeout), by folder under tests/: a hang in Envoy,
# an API server or a test fails that test instead of blocking CI. The real tier starts and
# restarts control planes. Folders not named here get pytest.ini's `timeout`, a backstop.
DEFAULT_TIMEOUT_S = {"e2e": 60, "shipped": 60, "real": 120}


def pytest_collection_modifyitems(config, items):
    tests = Path(__file__).parent
    for item in items:
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
def pki(tmp_path_factory) -> _pki.Pki:
    return _pki.generate(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def backend():
    """An application behind the same Envoy (the shipped configs' ``app`` cluster)."""
    b = Backend().start()
    yield b
    b.stop()


@pytest.fixture
def make_stack(tmp_path, pki, wasm):
    """``make_stack(config="pod.yaml", start=True, **kw)`` -> a Stack (harness.stack): a fake
    API server and Envoy running envoy/<config>; all of them stopped at teardown."""
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


@pytest.fixture
def ports_free():
    """`make run` listens on fixed ports: fail early if something else holds one."""
    busy = make_run.busy_ports()
    if busy:
        pytest.fail(f"127.0.0.1 ports {busy} are in use (another `make run`?)")
