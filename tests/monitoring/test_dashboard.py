"""monitoring/dashboard.json, offline: every query parses in Prometheus's own parser (promtool)
and reads only series the recording rules write, and the panels the issue asks for are there.
That every query returns series from the real filter: test_prometheus_e2e.py."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from monitoring.conftest import RULES, as_promql, dashboard_exprs

pytestmark = pytest.mark.timeout(60)


def recorded() -> set[str]:
    rules = yaml.safe_load(RULES.read_text())
    return {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}


def test_every_query_parses_in_prometheus(promtool, tmp_path, dashboard):
    exprs = dashboard_exprs(dashboard)
    assert len(exprs) >= 6
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": as_promql(e)} for i, (_, e) in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump(rules))
    r = subprocess.run([str(promtool), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    bad = dict(rules)
    bad["groups"][0]["rules"][0]["expr"] += ")"
    path.write_text(yaml.safe_dump(bad))
    r = subprocess.run([str(promtool), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0, "promtool parses the queries"


def test_queries_read_the_recorded_series(dashboard):
    used = set()
    for title, expr in dashboard_exprs(dashboard):
        names = set(re.findall(r"kube_oidc_discovery:\w+", expr))
        assert names, f"{title}: reads no recorded series"
        assert names <= recorded(), f"{title}: {names - recorded()} is not recorded by the rules"
        assert '{__name__' not in expr
        used |= names
    assert used == recorded(), f"recorded but not shown: {recorded() - used}"


def test_the_panels_show_outcomes_results_latency_and_age_per_issuer(dashboard):
    by_title = {p["title"]: [t["expr"] for t in p["targets"]] for p in dashboard["panels"]}
    wanted = {"Requests by outcome": "outcome", "Upstream fetches by result": "result",
              "Upstream fetch latency": "histogram_quantile", "Copy age": "copy_age_seconds"}
    for title, word in wanted.items():
        assert any(word in e and 'issuer=~"$issuer"' in e for e in by_title[title]), title
    (issuer,) = [v for v in dashboard["templating"]["list"] if v["name"] == "issuer"]
    assert issuer["includeAll"] and issuer["allValue"] == ".*"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
