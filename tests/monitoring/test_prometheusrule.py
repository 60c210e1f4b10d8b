"""The chart's optional PrometheusRule: off by default; when on, valid against prometheus-operator's
CRD schema (@kubernetes-models/prometheus-operator, tests/chart/validate_crds.mjs), labelled for
the user's ruleSelector, its stale threshold following the refresh interval, its durations
checked by the values schema. What the rules do: test_rules.py and test_prometheus_e2e.py."""

from __future__ import annotations

import helm_python
import pytest

import helm
import monitoring_rules
from chart.test_chart import crd_errors

pytestmark = pytest.mark.timeout(120)


def prometheus_rules(values: dict) -> list[dict]:
    return [o for o in helm.render(values=values) if o["kind"] == "PrometheusRule"]


def alert(rule: dict, name: str) -> dict:
    (found,) = [r for g in rule["spec"]["groups"] for r in g["rules"] if r.get("alert") == name]
    return found


def test_off_by_default():
    assert prometheus_rules({}) == []


def test_strict_lint_is_clean_with_it():
    assert helm.lint(values={"prometheusRule": {"enabled": True, "labels": {"release": "kps"}}}) == []


@pytest.mark.parametrize("values", [{}, {"issuers": [
    {"name": "prod", "issuer": "https://oidc.example.com/clusters/prod", "apiServer": {"host": "api.prod.example.internal"}}]}],
    ids=["single", "issuers"])
def test_valid_against_prometheus_operators_schema(values):
    rule = monitoring_rules.prometheus_rule(values)
    assert crd_errors([rule]) == [None]
    broken = monitoring_rules.prometheus_rule(values)
    broken["spec"]["groups"][1]["rules"][0]["for"] = "two minutes"
    (err,) = crd_errors([broken])
    assert err and "for" in err, "the validator checks PrometheusRules"


def test_labels_select_it_and_the_stale_threshold_follows_the_refresh_interval():
    (rule,) = prometheus_rules({"plugin": {"refreshIntervalS": 30},
                                "prometheusRule": {"enabled": True, "labels": {"release": "kps"},
                                                   "staleMarginS": 60, "window": "15m", "for": "1m"}})
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert rule["metadata"]["namespace"] == "istio-ingress"
    stale = alert(rule, "KubeOidcDiscoveryCopyStale")
    assert stale["expr"] == "kube_oidc_discovery:copy_age_seconds > 90"
    assert stale["for"] == "1m"
    assert "[15m]" in alert(rule, "KubeOidcDiscoveryUpstreamRejected")["expr"]
    assert alert(rule, "KubeOidcDiscoveryNeverFetched")["for"] == "15m"


@pytest.mark.parametrize("bad", [{"window": "5 minutes"}, {"for": "2"}, {"staleMarginS": -1}, {"severity": "x"}])
def test_the_values_schema_rejects(bad):
    with pytest.raises(helm_python.HelmValuesError):
        prometheus_rules({"prometheusRule": {"enabled": True, **bad}})
