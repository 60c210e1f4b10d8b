"""Which of the filter's metrics an Istio gateway exports. Istio's own bootstrap code
(istio.io/istio/pkg/bootstrap at the version tests/monitoring/istio_stats/go.mod pins, run by
tests/monitoring/istio_stats/main.go as pilot-agent runs it) generates the gateway's stats_config:
a stats_matcher inclusion list and its own tag extractors. Real Envoy running the filter with
that stats_config exports exactly the names it exports without it (Istio's required inclusion
prefix `wasm` covers the custom `wasmcustom.` namespace), also when a user sets
proxyStatsMatcher, while the matcher does drop Envoy's other stats. pilot-agent's merged
endpoint (:15020/stats/prometheus) copies Envoy's /stats/prometheus as it is
(pilot/cmd/pilot-agent/status/server.go, handleStats)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from harness.checks import poll
from harness import CACHE, config
from harness import pki as _pki
from harness.fake_apiserver import DEFAULT_ISSUER
from harness.stack import Stack

pytestmark = pytest.mark.timeout(180)

MODULE = Path(__file__).with_name("istio_stats")
BIN = Path(os.environ.get("KOD_ISTIO_STATS_BIN") or CACHE / "istio-stats" / "istio_stats")
# an `issuers` entry whose name has a `-`: Prometheus shows it as `_`
PLUGIN = {"issuers": [{"name": "prod-1", "issuer": DEFAULT_ISSUER, "cluster": "kubernetes"}]}
OTHER_ENVOY_STAT = "envoy_cluster_upstream_cx_total"


@pytest.fixture(scope="module")
def istio_stats_config():
    """``istio_stats_config(inclusion_prefixes="")`` -> Istio's stats_config for a gateway."""
    if not BIN.exists():
        pytest.fail(f"{BIN} is missing: run `make tools-istio-stats`")
    istio_dir = subprocess.run(["go", "list", "-m", "-f", "{{.Dir}}", "istio.io/istio"], cwd=MODULE,
                               capture_output=True, text=True, check=True, timeout=120).stdout.strip()
    template = Path(istio_dir) / "tools" / "packaging" / "common" / "envoy_bootstrap.json"

    def make(inclusion_prefixes: str = "") -> dict:
        r = subprocess.run([str(BIN), "-template", str(template), "-inclusion-prefixes", inclusion_prefixes],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    return make


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return _pki.generate(tmp_path_factory.mktemp("pki"))


def exported(tmp_path: Path, pki, wasm, stats_config: dict | None) -> tuple[dict[str, str], set[str]]:
    """(the filter's metric -> its sample lines, every metric name) of /stats/prometheus."""
    s = Stack(tmp_path / f"stack-{len(list(tmp_path.iterdir()))}", pki, wasm, "pod.yaml", plugin=PLUGIN)
    if stats_config is not None:
        s.cfg["stats_config"] = stats_config
    s.cfg["stats_flush_interval"] = "1s"  # histograms reach /stats/prometheus after a flush
    config.dump(s.cfg, s.envoy.config_path)
    with s:
        poll(lambda: "kube_oidc_discovery_prod_1_upstream_jwks_latency_ms_count{} 1" in s.envoy.prometheus(),
             15, what="the prefetch, in the histogram")
        text = s.envoy.prometheus()
    names = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    ours = {n: "\n".join(l for l in text.splitlines() if l.startswith(n) and not l.startswith("#"))
            for n in names if n.startswith("kube_oidc_discovery")}
    return ours, names


def test_istios_stats_config_keeps_every_metric_of_the_filter_under_its_name(tmp_path, pki, wasm, istio_stats_config):
    istio = istio_stats_config()
    prefixes = [p.get("prefix") for p in istio["stats_matcher"]["inclusion_list"]["patterns"]]
    assert "wasm" in prefixes, prefixes
    plain, plain_all = exported(tmp_path, pki, wasm, None)
    assert len(plain) == 2 + 2 * (4 + 7 + 2), sorted(plain)
    assert all(n.startswith("kube_oidc_discovery_prod_1_") or "requests_not_found" in n
               or "method_not_allowed" in n for n in plain), sorted(plain)
    on_istio, istio_all = exported(tmp_path, pki, wasm, istio)
    assert set(on_istio) == set(plain)
    assert "kube_oidc_discovery_prod_1_upstream_jwks_ok{} 1" in on_istio["kube_oidc_discovery_prod_1_upstream_jwks_ok"]
    # no tag extractor of Istio's turned a part of a name into a label
    assert all("{}" in line or "{le=" in line for lines in on_istio.values() for line in lines.splitlines()), on_istio
    # the matcher is in force: Envoy's own cluster stats are gone
    assert OTHER_ENVOY_STAT in plain_all and OTHER_ENVOY_STAT not in istio_all


def test_a_users_proxy_stats_matcher_keeps_them_too(tmp_path, pki, wasm, istio_stats_config):
    istio = istio_stats_config("cluster.outbound")
    on_istio, _ = exported(tmp_path, pki, wasm, istio)
    assert len(on_istio) == 2 + 2 * (4 + 7 + 2)
