"""Shared test harness of kube-oidc-discovery: the names every tier shares (constants.py), test
PKI, fake and real kube-apiserver, a kubelet-style token directory, the loader/patcher of the
shipped Envoy configs and the Envoy launcher (tests/README.md lists every module).

Used by every Python test tier, `make run` (tools/run_local.py) and the benchmark.
"""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# Where the Makefile caches what is slow to build or fetch, outside the work tree.
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kube-oidc-discovery"


def pinned(go_mod: Path, module: str) -> str:
    """The version ``go_mod`` requires of ``module`` (what `make` builds it at)."""
    for line in go_mod.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == module:
            return parts[1]
    raise RuntimeError(f"{module} is not pinned in {go_mod}")
