"""docs/support.md says what the suite runs: its tables are held to the pins and test sets the
suite runs them from (tests/harness/releases.py, tools/kube/go.mod, tests/envoygateway/go.mod),
and every cell that says how a release was checked says `make test` or "read from source"."""

from __future__ import annotations

import re

import pytest

from harness import REPO_ROOT, releases
from harness import kube

DOC = REPO_ROOT / "docs" / "support.md"
SETS = {"filter": releases.FILTER_TESTS, "shipped": releases.SHIPPED_TESTS, "istio": releases.ISTIO_TESTS,
        "smoke": releases.SMOKE_TESTS}


def tables() -> dict[str, list[dict[str, str]]]:
    """The first table under each `## ` heading, as rows of {header: cell}."""
    found: dict[str, list[dict[str, str]]] = {}
    heading, header, done = None, None, set()
    for line in DOC.read_text().splitlines():
        if line.startswith("## "):
            heading, header = line[3:].strip(), None
        elif heading and heading not in done and line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = cells
            elif not set("".join(cells)) <= set("-: "):
                found.setdefault(heading, []).append(dict(zip(header, cells)))
        elif header is not None:
            done.add(heading)
            header = None
    return found


def named_sets(cell: str) -> set[str]:
    return {s.strip() for s in cell.split(",")}


def files_of(names: set[str]) -> set[str]:
    return {f for n in names if n in SETS for f in SETS[n]}


def envoy_rows() -> dict[str, dict[str, str]]:
    return {row["Envoy"]: row for row in tables()["Envoy"]}


def test_the_envoy_table_lists_exactly_the_pinned_releases():
    rows = envoy_rows()
    assert list(rows) == [e.minor for e in releases.ENVOYS]
    for e in releases.ENVOYS:
        row = rows[e.minor]
        assert row["wheel"] == e.wheel, e.minor
        assert row["whose gateway runs it"].startswith(", ".join(e.shipped_by) or "plain Envoy"), e.minor


@pytest.mark.parametrize("column, all_tests", [("`make test`", False), ("`make test ENVOYS=all`", True)])
def test_the_envoy_table_says_which_tests_run_in_which_envoy(column, all_tests):
    set_files = {f for files in SETS.values() for f in files}
    for e in releases.ENVOYS:
        names = named_sets(envoy_rows()[e.minor][column])
        if e.minor == releases.DEFAULT:
            assert names == {"every tier"}
            continue
        want = e.all_tests if all_tests else e.make_test
        assert files_of(names) == set(want), (e.minor, column)
        # every file a set names is one the suite has, and no file runs unnamed
        assert set(want) <= set_files
        assert ("envoy-gateway" in names) == (e is releases.envoy_gateway_envoy()), e.minor


def test_the_test_sets_name_the_files_they_run():
    text = " ".join(DOC.read_text().split())
    for name, files in SETS.items():
        m = re.search(rf"- \*\*{name}\*\*: (.*?)(?:;|$)", text)
        assert m, name
        assert set(re.findall(r"`(tests/[^`]+)`", m.group(1))) == set(files), name
    for files in SETS.values():
        for f in files:
            assert (REPO_ROOT / f).is_file(), f


def test_envoy_gateways_envoy_is_the_one_its_tier_runs():
    import importlib.util
    spec = importlib.util.spec_from_file_location("eg", REPO_ROOT / "tests" / "envoygateway" / "eg.py")
    eg = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(eg)
    (row,) = tables()["Envoy Gateway"]
    assert row["Envoy Gateway"] == "v" + ".".join(eg.VERSION.lstrip("v").split(".")[:2])
    assert row["its default Envoy"] == releases.envoy_gateway_envoy().minor
    assert f"Envoy Gateway {eg.VERSION} itself" in row["checked"]
    assert f"Envoy {eg.ENVOY_VERSION}" in row["checked"]


def test_the_kubernetes_table_names_the_pinned_control_plane():
    rows = tables()["Kubernetes"]
    run = [r for r in rows if "`make test`" in r["checked"]]
    assert len(run) == 1
    minor = ".".join(kube.VERSION.lstrip("v").split(".")[:2])
    assert run[0]["Kubernetes"] == minor
    assert kube.VERSION in run[0]["checked"] and f"etcd {kube.ETCD_VERSION}" in run[0]["checked"]


def test_every_release_says_whether_make_test_runs_it_or_it_was_read_from_source():
    for heading in ("Istio", "Envoy Gateway", "Kubernetes"):
        for row in tables()[heading]:
            checked = row["checked"]
            assert "`make test`" in checked or "read from source" in checked, (heading, row)


def test_the_istio_table_pairs_each_release_with_the_envoy_the_matrix_runs_for_it():
    rows = {r["Istio"]: r for r in tables()["Istio"]}
    for e in releases.ENVOYS:
        for istio in (s.removeprefix("Istio ") for s in e.shipped_by if s.startswith("Istio")):
            assert rows[istio]["its gateway's Envoy"] == e.minor
            assert "Envoy: `make test`" in rows[istio]["checked"]


def test_the_documented_refusal_is_what_the_harness_checks():
    text = " ".join(DOC.read_text().split())
    assert f"`{releases.HEADER_VALUE_PREFIX_REFUSAL}`" in text
    assert releases.HEADER_VALUE_PREFIX_REFUSAL in text.split("Envoy 1.36 prints the whole refusal as")[1]
    minor = releases.HEADER_VALUE_PREFIX_SINCE
    assert f"Envoy {minor}: the generic injector's `header_value_prefix`" in text


def test_the_documented_xds_refusal_is_what_the_istio_tier_checks():
    text = " ".join(DOC.read_text().split()).replace("\\|", "|")
    assert (f"Error adding/updating cluster(s) outbound|443||kubernetes.default.svc.cluster.local: "
            f"{releases.HEADER_VALUE_PREFIX_XDS_REFUSAL}") in text
