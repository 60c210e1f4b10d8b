"""The rules and the dashboard on a real Prometheus (Debian's 2.42) scraping the real filter in
real Envoy (envoy/multi-cluster.yaml, issuers prod, dev and edge, each its own fake API server):
dev's token is revoked from the start, then prod's API server goes down; the matching alerts of
exactly those issuers go pending and firing through Prometheus's own API, nothing else fires, and
all of them clear once the API servers are back. Every dashboard query returns series.

The rules are the chart's PrometheusRule rendered (tools/monitoring_rules.py) with the filter's
shortest refresh interval (5 s) and windows of seconds instead of minutes: the same expressions
as shipped, the durations scaled (their shipped values are promtool's unit tests, test_rules.py).
"""

from __future__ import annotations

import threading

import pytest
import yaml

import monitoring_rules
from harness.checks import poll
from harness.issuers import host_of, public_path
from harness.constants import JWKS
from harness.prometheus import Prometheus
from harness.stack import new_token
from monitoring.conftest import as_promql, dashboard_exprs

pytestmark = pytest.mark.timeout(240)

PLUGIN = {"refresh_interval_s": 5, "timeout_ms": 1000, "max_stale_s": 10}
VALUES = {"plugin": {"refreshIntervalS": 5, "timeoutMs": 1000, "maxStaleS": 10},
          "prometheusRule": {"staleMarginS": 3, "window": "10s", "for": "3s"}}
# the labels that tell alerts apart here (all have job, instance and severity)
DOCS = ("discovery", "jwks")
KEY_LABELS = ("alertname", "issuer", "document", "result", "outcome")


def key(alert: dict) -> tuple:
    return tuple(alert["labels"].get(k, "") for k in KEY_LABELS)


class AlertWatch:
    """Polls Prometheus's /api/v1/alerts in the background: every alert key seen, by state."""

    def __init__(self, prom: Prometheus):
        self.prom = prom
        self.seen: dict[str, set[tuple]] = {"pending": set(), "firing": set()}
        self.now: dict[tuple, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.3):
            try:
                alerts = self.prom.alerts()
            except OSError:  # a slow answer on a loaded machine: the next poll catches up
                continue
            self.now = {key(a): a["state"] for a in alerts}
            for k, state in self.now.items():
                self.seen[state].add(k)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)

    def wait_firing(self, want: set[tuple], timeout: float, what: str, while_waiting=None):
        def done():
            if while_waiting:
                while_waiting()
            return want <= {k for k, s in self.now.items() if s == "firing"}
        poll(done, timeout, interval=0.5, what=f"{what}: firing {sorted(want)}; now {self.now}")


def alert(name: str, issuer: str, document: str, result: str = "", outcome: str = "") -> tuple:
    return (name, issuer, document, result, outcome)


def test_alerts_fire_for_a_revoked_token_and_an_outage_and_clear_after(fleet, tmp_path, dashboard):
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(monitoring_rules.rules(VALUES)))

    def revoke_dev(clusters):
        clusters["dev"].fake.set_token(new_token())  # the token dev's Envoy cluster sends is refused

    f, clusters = fleet(before_envoy=revoke_dev, **PLUGIN)
    prod, dev = clusters["prod"], clusters["dev"]
    with Prometheus(tmp_path / "prometheus", rules=rules,
                    targets={"gateway": [f"127.0.0.1:{f.envoy.admin_port}"]}) as prom, AlertWatch(prom) as watch:
        # 1. dev's API server refuses its token from the start: dev never gets a copy
        revoked = {alert("KubeOidcDiscoveryUpstreamRejected", "dev", d, "http_error") for d in DOCS} | {
            alert("KubeOidcDiscoveryNeverFetched", "dev", d, "ok") for d in DOCS}
        watch.wait_firing(revoked, 45, "dev's token revoked")
        assert watch.seen["pending"] >= revoked, "each went pending before firing"

        # 2. prod's API server goes down; clients keep asking for prod's JWKS until its copy expires
        prod.fake.stop()
        down = {alert("KubeOidcDiscoveryUpstreamUnreachable", "prod", d, "unavailable") for d in DOCS} | {
            alert("KubeOidcDiscoveryCopyStale", "prod", d) for d in DOCS} | {
            alert("KubeOidcDiscoveryClientErrors", "prod", "jwks", outcome="upstream_error")}
        watch.wait_firing(down, 60, "prod's API server down",
                          while_waiting=lambda: f.get(public_path("prod", JWKS), host=host_of("prod")))
        assert watch.seen["pending"] >= down

        # 3. both back: every alert clears
        prod.fake.start()
        dev.fake.set_token(dev.token)
        poll(lambda: not watch.now, 45, interval=0.5, what=f"all alerts cleared; now {watch.now}")

        unexpected = watch.seen["firing"] - revoked - down
        assert not unexpected, f"alerts that should have stayed silent: {sorted(unexpected)}"
        assert not {k for k in watch.seen["pending"] if k[1] == "edge"}, "edge was healthy all along"

        for name, health, err in prom.rule_health():
            assert health == "ok", (name, err)

        # every dashboard query returns series, and the issuer variable lists the three issuers
        for title, expr in dashboard_exprs(dashboard):
            assert prom.query(as_promql(expr, "2m")), f"{title}: no series for {expr}"
        issuers = prom.api("label/issuer/values", **{"match[]": "kube_oidc_discovery:upstream_fetches_total"})
        assert set(issuers) == {"prod", "dev", "edge"}
