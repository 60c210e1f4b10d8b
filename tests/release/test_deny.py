"""`make deny`: cargo-deny's licenses, bans and sources checks of every dependency (deny.toml),
offline. Each check is shown to fail on a policy the dependencies break. (Advisories need the
RustSec database, which this machine cannot fetch: docs/release.md.)"""

from __future__ import annotations

import subprocess
import tomllib

import pytest

from versions import REPO

pytestmark = pytest.mark.timeout(300)


def deny(config, *checks: str) -> subprocess.CompletedProcess:
    return subprocess.run(["cargo", "deny", "--offline", "--config", str(config), "check", *checks],
                          cwd=REPO, capture_output=True, text=True, timeout=240)


def test_make_deny_passes():
    r = subprocess.run(["make", "-s", "deny"], cwd=REPO, capture_output=True, text=True, timeout=280)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "bans ok, licenses ok, sources ok" in r.stderr + r.stdout


@pytest.mark.parametrize("check,edit,named", [
    ("licenses", lambda t: t.replace('"Zlib", ', ""), "foldhash"),
    ("bans", lambda t: t.replace('deny = [', 'deny = [\n    { crate = "serde_json" },'), "serde_json"),
    ("sources", lambda t: t.replace('allow-registry = ["https://github.com/rust-lang/crates.io-index"]',
                                    'allow-registry = []'), "crates.io"),
])
def test_each_check_fails_on_a_policy_the_dependencies_break(tmp_path, check, edit, named):
    text = (REPO / "deny.toml").read_text()
    changed = edit(text)
    assert changed != text
    tomllib.loads(changed)
    config = tmp_path / "deny.toml"
    config.write_text(changed)
    r = deny(config, check)
    assert r.returncode != 0, f"{check} passed: {r.stderr[-2000:]}"
    assert named in r.stderr, r.stderr[-3000:]
