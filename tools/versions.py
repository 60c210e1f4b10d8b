"""One version everywhere: where the release's version is written, and what each place says.

    python tools/versions.py          prints the crate's version; exits 1 (listing them) if any
                                      place says another

Places: the crate (Cargo.toml, and its entry in Cargo.lock), every chart's `version` and
`appVersion` (charts/*/Chart.yaml), and the image tag of every url of the filter's image in a
chart's values.yaml. The filter's start line prints the crate's version (env!("CARGO_PKG_VERSION"),
src/startup.rs); tests/release/test_versions.py reads it from real Envoy.

Importable (tools/ on sys.path): crate_version() -> str; places() -> {place: version};
mismatches() -> {place: version} of the places that differ from the crate.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CRATE = "kube-oidc-discovery"
# with oci:// (Istio's WasmPlugin) or without (Envoy Gateway's image code source)
IMAGE_URL = re.compile(r"[^\s\"'#]*/kube-oidc-discovery:([0-9A-Za-z._+-]+)")


def crate_version() -> str:
    return tomllib.loads((REPO / "Cargo.toml").read_text())["package"]["version"]


def places() -> dict[str, str]:
    found = {"Cargo.toml": crate_version()}
    lock = tomllib.loads((REPO / "Cargo.lock").read_text())
    for pkg in lock.get("package", []):
        if pkg["name"] == CRATE:
            found["Cargo.lock"] = pkg["version"]
    for chart in sorted((REPO / "charts").glob("*/Chart.yaml")):
        meta = yaml.safe_load(chart.read_text())
        rel = chart.relative_to(REPO)
        found[f"{rel} version"] = str(meta.get("version"))
        found[f"{rel} appVersion"] = str(meta.get("appVersion"))
        values = chart.with_name("values.yaml")
        if values.exists():
            for n, tag in enumerate(IMAGE_URL.findall(values.read_text())):
                found[f"{values.relative_to(REPO)} image tag #{n + 1}"] = tag
    return found


def mismatches() -> dict[str, str]:
    want = crate_version()
    return {place: v for place, v in places().items() if v != want}


def main() -> int:
    bad = mismatches()
    if bad:
        print(f"the crate is {crate_version()}, but:", file=sys.stderr)
        for place, v in bad.items():
            print(f"  {place}: {v}", file=sys.stderr)
        return 1
    print(crate_version())
    return 0


if __name__ == "__main__":
    sys.exit(main())
