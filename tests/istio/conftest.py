"""Fixtures of the Istio tests: the chart's objects through istiod's and pilot-agent's own code
(target/istio-xds, `make istio-xds`), and what istiod produced in real Envoy."""

from __future__ import annotations

from pathlib import Path

import pytest

from istio import istiod
from istio.gateway import Gateway, issuer_servers

# wasm, pki, backend and image are the shared fixtures of tests/conftest.py; the image's registry
# is where pilot-agent's pkg/wasm pulls the filter from, as in a cluster.


@pytest.fixture(scope="session", autouse=True)
def istio_xds() -> Path:
    try:
        return istiod.binary()
    except FileNotFoundError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """The three API servers of the `issuers` cases, shared by a module's tests."""
    with issuer_servers(tmp_path_factory.mktemp("servers")) as made:
        yield made


@pytest.fixture
def make_gateway(tmp_path, image, backend):
    """``make_gateway(case, servers, image=..., **kw)``: a gateway on istiod's output for a matrix
    case, not yet started; every one is stopped at teardown."""
    made: list[Gateway] = []

    def make(case, servers, image=image, **kw) -> Gateway:
        g = Gateway(tmp_path / f"gw{len(made) or ''}", case, servers=servers, image=image,
                    backend_port=backend.port, **kw)
        made.append(g)
        return g

    yield make
    for g in made:
        g.stop()
