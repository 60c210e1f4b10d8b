"""`helm lint --strict` and `helm template` without a helm binary (Helm 4's engine, helm-python-sdk).

    python tools/helm.py lint charts/kube-oidc-discovery       (make chart-lint)
    python tools/helm.py template charts/kube-oidc-discovery [-f values.yaml]... [--set k=v]...

Importable (stable; the chart tests and the Istio e2e tests use it, tools/ on their sys.path):

    render(chart_dir=CHART, values=None, *, release="kod", namespace="istio-ingress") -> list[dict]
        the objects an install would create, NOTES.txt excluded; `values` are user values merged
        over values.yaml like `helm install -f`. Raises helm_python.HelmError (HelmValuesError for
        a values.schema.json violation, naming the field) before rendering anything.
    notes(chart_dir=CHART, values=None, *, release=..., namespace=...) -> str   NOTES.txt
    merged_values(chart_dir=CHART, values=None) -> dict   values.yaml with `values` over it
    install(kubeconfig, values=None, *, chart_dir=CHART, release=..., namespace=...) -> dict
        `helm install` into a real API server (tests/istioreal)
    lint(chart_dir=CHART, values=None) -> list[str]   strict lint findings; [] when clean
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

CHART = Path(__file__).resolve().parents[1] / "charts" / "kube-oidc-discovery"
KUBE_VERSION = "v1.33.0"
RELEASE = "kod"
NAMESPACE = "istio-ingress"


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def merged_values(chart_dir: Path | str = CHART, values: dict[str, Any] | None = None) -> dict:
    """The values a template sees: values.yaml with ``values`` merged over it."""
    return helm.Chart.load(str(chart_dir)).merge_values(values or {})


def render_files(chart_dir: Path | str = CHART, values: dict[str, Any] | None = None, *,
                 release: str = RELEASE, namespace: str = NAMESPACE) -> dict[str, str]:
    """Template path -> rendered text. Raises helm_python.HelmValuesError on a schema violation."""
    chart = helm.Chart.load(str(chart_dir))
    chart.validate_schema(chart.merge_values(values or {}))
    return chart.render(values or {}, name=release, namespace=namespace, is_install=True)


def render(chart_dir: Path | str = CHART, values: dict[str, Any] | None = None, *,
           release: str = RELEASE, namespace: str = NAMESPACE) -> list[dict]:
    """The rendered objects (NOTES.txt excluded), in template order."""
    objs = []
    for path, text in sorted(render_files(chart_dir, values, release=release, namespace=namespace).items()):
        if path.endswith("NOTES.txt"):
            continue
        objs += [o for o in yaml.safe_load_all(text) if o]
    return objs


def notes(chart_dir: Path | str = CHART, values: dict[str, Any] | None = None, *,
          release: str = RELEASE, namespace: str = NAMESPACE) -> str:
    """The rendered NOTES.txt."""
    files = render_files(chart_dir, values, release=release, namespace=namespace)
    return next(text for path, text in files.items() if path.endswith("NOTES.txt"))


def install(kubeconfig: Path | str, values: dict[str, Any] | None = None, *, chart_dir: Path | str = CHART,
            release: str = RELEASE, namespace: str = NAMESPACE, timeout: int = 60) -> dict:
    """`helm install` into the cluster of ``kubeconfig`` (Helm 4's install action: the release
    Secret, then the objects in Helm's kind order), creating the namespace; returns the release.
    Raises helm_python.HelmError when the API server (or an admission webhook) refuses an object."""
    with helm.Config(kubeconfig_path=str(kubeconfig), namespace=namespace) as cfg:
        return cfg.install(str(chart_dir), release, values or {}, namespace=namespace,
                           create_namespace=True, timeout=timeout)


def upgrade(kubeconfig: Path | str, values: dict[str, Any] | None = None, *, chart_dir: Path | str = CHART,
            release: str = RELEASE, namespace: str = NAMESPACE, timeout: int = 60) -> dict:
    """`helm upgrade` of a release installed by install(): objects missing from the cluster are
    created again (Helm's three-way merge)."""
    with helm.Config(kubeconfig_path=str(kubeconfig), namespace=namespace) as cfg:
        return cfg.upgrade(str(chart_dir), release, values or {}, namespace=namespace, timeout=timeout)


def lint(chart_dir: Path | str = CHART, values: dict[str, Any] | None = None) -> list[str]:
    """Strict lint: warnings and errors (not infos such as "icon is recommended"); empty when clean."""
    report = helm.lint(str(chart_dir), values, strict=True, kube_version=KUBE_VERSION,
                       namespace=NAMESPACE)
    return [f"{m.get('path', '')}: {m.get('error', '')}" for m in report.get("messages", [])
            if m.get("severity", 0) >= 2] + list(report.get("errors") or [])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("lint", "template"):
        p = sub.add_parser(name)
        p.add_argument("chart", type=Path)
        p.add_argument("-f", "--values", action="append", default=[], type=Path)
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    values: dict[str, Any] = {}
    for f in args.values:
        values = _merge(values, yaml.safe_load(f.read_text()) or {})
    for s in args.set:
        values = _merge(values, helm.parse_set_string(s))
    try:
        if args.cmd == "lint":
            findings = lint(args.chart, values)
            for line in findings:
                print(line, file=sys.stderr)
            print(f"{args.chart}: {'FAILED' if findings else 'ok'} (strict, kube {KUBE_VERSION})")
            return 1 if findings else 0
        for path, text in sorted(render_files(args.chart, values).items()):
            if text.strip() and not path.endswith("NOTES.txt"):
                print(f"---\n# Source: {path}\n{text.strip()}")
        return 0
    except helm.HelmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
