"""Fixtures of the real-API-server tier: the filter in real Envoy against a real kube-apiserver
(tools/kube/go.mod's release, v1.37.2; hardened: no anonymous access, RBAC), started on
127.0.0.1 by harness.kube.

`kube` is one control plane for the whole session; tests that stop or restart the API server take
`own_kube`, a control plane of their own; `anonymous_kube` is one whose API server serves the two
documents to anonymous requests, per module. Service accounts are created per test, in a namespace
of the test's own, so no test sees another's tokens. The fixtures shared with the other tiers
(``wasm``, ``pki``, ``make_stack``, ``ports_free``) are in tests/conftest.py."""

from __future__ import annotations

import re

import pytest

from harness import kube as _kube


def _require_binaries() -> None:
    missing = _kube.missing_binaries()
    if missing:
        pytest.fail(f"{', '.join(missing)} missing in {_kube.default_bin_dir()}: run `make kube-tools`")


@pytest.fixture(scope="session")
def kube(tmp_path_factory, pki):
    _require_binaries()
    with _kube.Kube(tmp_path_factory.mktemp("kube"), pki) as k:
        yield k



@pytest.fixture
def own_kube(tmp_path, pki):
    """Starts control planes for one test (which may stop, restart or reconfigure the API
    server); stops them all at teardown. Keyword arguments go to harness.kube.Kube; ``pki``
    replaces the session's (another cluster: another CA and serving certificate)."""
    _require_binaries()
    started: list[_kube.Kube] = []

    def make(pki=pki, **kw) -> _kube.Kube:
        k = _kube.Kube(tmp_path / f"kube{len(started)}", pki, **kw)
        started.append(k)
        return k.start()

    yield make
    for k in started:
        k.stop()


@pytest.fixture
def account(request):
    """(namespace, name) of a service account for this test, made on the kube it is given."""
    ns = "t-" + re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-")

    def make(k: _kube.Kube, name: str = "reader") -> tuple[str, str]:
        k.create_service_account(ns, name)
        return ns, name

    return make
