"""One version everywhere: the crate (Cargo.toml, Cargo.lock), every chart's version and
appVersion (charts/*/Chart.yaml: the Istio chart and any other), the image tag of every image
url in a chart's values, and the filter's start line in real Envoy. tools/versions.py finds the
places; a place that differs fails here (and stops `make release`)."""

from __future__ import annotations

import shutil

import pytest

import versions
from harness.checks import poll
from harness import pki as _pki
from harness.stack import Stack

pytestmark = pytest.mark.timeout(120)


def test_every_place_names_the_crates_version():
    found = versions.places()
    charts = sorted(versions.REPO.glob("charts/*/Chart.yaml"))
    assert charts
    for chart in charts:
        rel = chart.relative_to(versions.REPO)
        assert f"{rel} version" in found and f"{rel} appVersion" in found, found
    assert any("image tag" in place for place in found), found
    assert versions.mismatches() == {}, f"the crate is {versions.crate_version()}: {versions.mismatches()}"


@pytest.mark.parametrize("edit", ["chart-version", "app-version", "image-tag", "lock", "second-chart"])
def test_a_place_that_differs_is_found(tmp_path, monkeypatch, edit):
    repo = tmp_path / "repo"
    for rel in ("Cargo.toml", "Cargo.lock", "charts/kube-oidc-discovery/Chart.yaml",
                "charts/kube-oidc-discovery/values.yaml"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(versions.REPO / rel, repo / rel)
    v = versions.crate_version()
    chart = repo / "charts/kube-oidc-discovery/Chart.yaml"
    if edit == "chart-version":
        chart.write_text(chart.read_text().replace(f"version: {v}", "version: 9.9.9", 1))
    elif edit == "app-version":
        chart.write_text(chart.read_text().replace(f'appVersion: "{v}"', 'appVersion: "9.9.9"'))
    elif edit == "image-tag":
        values = chart.with_name("values.yaml")
        values.write_text(values.read_text().replace(f"kube-oidc-discovery:{v}", "kube-oidc-discovery:9.9.9"))
    elif edit == "lock":
        lock = repo / "Cargo.lock"
        lock.write_text(lock.read_text().replace(f'name = "kube-oidc-discovery"\nversion = "{v}"',
                                                 'name = "kube-oidc-discovery"\nversion = "9.9.9"'))
    else:
        other = repo / "charts/another/Chart.yaml"
        other.parent.mkdir(parents=True)
        other.write_text(f"apiVersion: v2\nname: another\nversion: 9.9.9\nappVersion: \"{v}\"\n")
    monkeypatch.setattr(versions, "REPO", repo)
    assert list(versions.mismatches().values()) == ["9.9.9"], versions.places()


def test_the_filters_start_line_names_the_crates_version(tmp_path, wasm):
    pki = _pki.generate(tmp_path / "pki")
    with Stack(tmp_path / "stack", pki, wasm, "pod.yaml") as s:
        line = f"kube-oidc-discovery {versions.crate_version()} started"
        poll(lambda: line in s.envoy.log_text(), 10, what=f"'{line}' in Envoy's log")
