"""The alerting and recording rules with promtool itself: the committed rules file is the chart's
PrometheusRule rendered with its defaults, `promtool check rules` accepts it (lint included), and
`promtool test rules` passes the unit tests of monitoring/, which cover every alert: a mutated
rule that never fires, or always fires, fails them. The rules against a real Prometheus scraping
the real filter: test_prometheus_e2e.py."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

import monitoring_rules
from monitoring.conftest import RULES, RULES_TEST

pytestmark = pytest.mark.timeout(120)


def run(promtool, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(promtool), *map(str, args)], capture_output=True, text=True, timeout=60)


def alert_names(rules: dict) -> list[str]:
    return [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]


def test_the_rules_file_is_the_charts_prometheusrule_with_its_defaults():
    assert monitoring_rules.main(["--check"]) == 0
    assert yaml.safe_load(RULES.read_text()) == monitoring_rules.rules()


def test_promtool_accepts_the_rules_without_lint_findings(promtool):
    r = run(promtool, "check", "rules", RULES)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 11 rules found" in r.stdout, r.stdout


def test_the_unit_tests_pass(promtool):
    r = run(promtool, "test", "rules", RULES_TEST)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_recording_rules_are_evaluated_before_the_alerts_that_read_them():
    """promtool evaluates the groups of one timestamp in random order unless `group_eval_order`
    names them all; the alerts read the recorded series, so a test file without it passes or fails
    by chance (it failed CI once)."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    order = yaml.safe_load(RULES_TEST.read_text()).get("group_eval_order") or []
    assert sorted(order) == sorted(g["name"] for g in groups), order
    records = [g["name"] for g in groups if any("record" in r for r in g["rules"])]
    alerts = [g["name"] for g in groups if any("alert" in r for r in g["rules"])]
    assert max(map(order.index, records)) < min(map(order.index, alerts)), order


def test_every_alert_has_a_firing_and_a_silent_case():
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    cases = [c for t in tests for c in t.get("alert_rule_test", [])]
    for name in alert_names(yaml.safe_load(RULES.read_text())):
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c["exp_alerts"] for c in mine), f"{name}: no case where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{name}: no case where it stays silent"


@pytest.mark.parametrize("mutation", ["never", "always"])
def test_the_unit_tests_fail_for_each_alert_broken(promtool, tmp_path, mutation):
    """For each alert in turn: its expression replaced by one that never (always) fires makes
    `promtool test rules` fail on that alert."""
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    rules = yaml.safe_load(RULES.read_text())
    for name in alert_names(rules):
        broken = yaml.safe_load(RULES.read_text())
        for g in broken["groups"]:
            for r in g["rules"]:
                if r.get("alert") == name:
                    r["expr"] = "vector(1) == 0" if mutation == "never" else f"({r['expr']}) or vector(1)"
        (tmp_path / RULES.name).write_text(yaml.safe_dump(broken))
        r = run(promtool, "test", "rules", tmp_path / RULES_TEST.name)
        assert r.returncode != 0, f"{name} {mutation}: the unit tests still pass"
        assert f"alertname: {name}," in r.stdout + r.stderr, (name, r.stdout[-2000:])
