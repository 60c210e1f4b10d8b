"""Shared test harness of kube-oidc-discovery: the names every tier shares (constants.py), test
PKI, fake and real kube-apiserver, a kubelet-style token directory, the loader/patcher of the
shipped Envoy configs and the Envoy launcher (tests/README.md lists every module).

Used by every Python test tier, `make run` (tools/run_local.py) and the benchmark.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
