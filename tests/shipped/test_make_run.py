"""`make run` (tools/run_local.py): starts, serves what its curl lines promise, and stops
both processes on SIGINT (Ctrl-C) and on SIGTERM. It uses fixed ports (8080, 9901, 6443) and
the repository's .run/ directory."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys

import pytest

from harness import REPO_ROOT, client
from harness.constants import DISCOVERY, HOST, JWKS, OTHER_HOST
from harness.make_run import RUN_LOCAL, run_local, stop_cleanly
from run_local import PORTS  # tools/run_local.py


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_make_run_serves_and_stops_cleanly(ports_free, wasm, sig):
    with run_local() as (proc, out):
        assert f"curl -s -H 'host: {HOST}' http://127.0.0.1:8080{JWKS}" in out
        assert f"curl -s -H 'host: {HOST}' http://127.0.0.1:8080{DISCOVERY}" in out
        r = client.get(8080, JWKS)
        assert r.status == 200 and json.loads(r.body)["keys"]
        r = client.get(8080, DISCOVERY)
        assert r.status == 200
        assert json.loads(r.body)["jwks_uri"] == f"https://{HOST}{JWKS}"
        r = client.get(8080, "/", host=OTHER_HOST)
        assert r.status == 200 and r.body == b"passed through to the default route\n"
        assert (REPO_ROOT / ".run" / "token" / "..data").is_symlink()
        token = (REPO_ROOT / ".run" / "token" / "token").read_text()
        rest = stop_cleanly(proc, sig)
        assert token not in out + rest


def test_make_run_refuses_busy_ports(ports_free, wasm):
    with socket.socket() as s:
        # REUSEADDR: the previous test's connections may still sit in TIME_WAIT on this port
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", PORTS["API server"]))
        s.listen()
        r = subprocess.run([sys.executable, str(RUN_LOCAL)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)
    assert r.returncode == 1
    assert "6443" in r.stdout and "already in use" in r.stdout
