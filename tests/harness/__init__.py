"""Shared test harness of kube-oidc-discovery: test PKI, fake kube-apiserver, a kubelet-style
token directory, the loader/patcher of the shipped Envoy configs and the Envoy launcher.

Used by the e2e tests (tests/e2e), `make run` (tools/run_local.py) and the benchmark.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
