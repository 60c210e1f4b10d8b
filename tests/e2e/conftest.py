"""Fixtures of the end-to-end tests in real Envoy against fake API servers. The shared ones
(``wasm``, ``pki``, ``backend``, ``make_stack``) are in tests/conftest.py; here are those of the
`issuers` form: three fake API servers of different clusters behind one Envoy (issuers.py)."""

from __future__ import annotations

import pytest

from e2e.issuers import CLUSTERS, Cluster, plugin_config, three_clusters
from harness import pki as pkimod
from harness.fake_apiserver import FakeApiServer
from harness.fleet import Fleet, Upstream
from harness.stack import new_token


@pytest.fixture(scope="session")
def cluster_pkis(tmp_path_factory) -> dict[str, pkimod.Pki]:
    """A PKI per certificate name: prod's (also edge's) and dev's, each with its own CA."""
    names = {n for _, _, n in CLUSTERS.values()}
    return {n: pkimod.generate(tmp_path_factory.mktemp(n), [n]) for n in sorted(names)}


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
