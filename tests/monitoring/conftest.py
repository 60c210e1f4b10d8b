"""Fixtures of the monitoring tests: Debian's Prometheus 2.42 and promtool (`make
tools-prometheus`), the rules rendered from the chart, the dashboard."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# tools/helm.py and tools/monitoring_rules.py
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from harness import REPO_ROOT  # noqa: E402
from harness import prometheus as _prometheus  # noqa: E402

MONITORING = REPO_ROOT / "monitoring"
RULES = MONITORING / "kube-oidc-discovery.rules.yaml"
RULES_TEST = MONITORING / "kube-oidc-discovery.rules.test.yaml"
DASHBOARD = MONITORING / "dashboard.json"


@pytest.fixture(scope="session")
def promtool() -> Path:
    try:
        return _prometheus.binary("promtool")
    except FileNotFoundError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="session")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel."""
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]


def as_promql(expr: str, rate_interval: str = "1m") -> str:
    """A dashboard expression as Grafana sends it: $__rate_interval a duration, $issuer all."""
    return expr.replace("$__rate_interval", rate_interval).replace('"$issuer"', '".*"')


@pytest.fixture(scope="session")
def wasm() -> Path:
    path = REPO_ROOT / "dist" / "kube_oidc_discovery.wasm"
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make build`")
    return path
