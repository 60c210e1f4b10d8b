"""docs/configuration.md says what the filter's parser does: its two key tables list exactly the
keys the parser takes, in the parser's order, and the limits it states are the parser's. The
parser is asked through `check_config` (tools/check_config.rs), whose errors are the ones the
filter logs."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
import yaml

from harness import REPO_ROOT
from harness.kube import (ANONYMOUS_DISCOVERY_AUTHENTICATION_CONFIG, ANONYMOUS_DISCOVERY_CLUSTER_ROLE_BINDING,
                          printed_authentication_configuration)

DOC = REPO_ROOT / "docs" / "configuration.md"


def parser_error(config: dict) -> str:
    """The filter's error for a configuration it refuses."""
    r = subprocess.run(["cargo", "run", "-q", "--example", "check_config"], cwd=REPO_ROOT,
                       input=json.dumps(config), capture_output=True, text=True, timeout=600,
                       env={k: v for k, v in os.environ.items() if not k.startswith("KOD_")})
    assert r.returncode == 1, (r.stdout, r.stderr)
    return r.stderr.strip()


def documented_keys(section: str) -> list[str]:
    """The first column of the key table under the heading ``section``."""
    text = DOC.read_text().split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z_]+)` \|", text, re.M)


def expected_keys(message: str) -> list[str]:
    return message.split("expected one of ", 1)[1].split(", ")


def test_the_top_level_table_lists_the_parsers_keys_in_its_order():
    keys = expected_keys(parser_error({"no_such_key": 1}))
    assert documented_keys("The single-issuer form") == keys


def test_the_entry_table_lists_the_parsers_entry_keys_in_its_order():
    keys = expected_keys(parser_error({"issuers": [{"no_such_key": 1}]}))
    assert documented_keys("The `issuers` form") == keys


@pytest.mark.parametrize("key", ["timeout_ms", "refresh_interval_s", "max_stale_s"])
def test_the_documented_range_is_the_parsers(key):
    limits = re.search(r" in (\d+\.\.=\d+), got", parser_error({key: 0})).group(1)
    row = next(ln for ln in DOC.read_text().splitlines() if ln.startswith(f"| `{key}` |"))
    assert f"`{limits}`" in row, (limits, row)


def test_the_documented_number_of_issuers_is_the_parsers():
    most = re.search(r"must have 1 to (\d+) entries", parser_error({"issuers": []})).group(1)
    assert f"`issuers` holds 1 to {most} entries" in DOC.read_text()


def test_the_anonymous_discovery_setup_is_the_one_the_real_api_server_runs():
    """The AuthenticationConfiguration and the ClusterRoleBinding of "No token: anonymous
    discovery" are what harness.kube gives the real kube-apiserver in its anonymous-discovery mode."""
    text = DOC.read_text().split("\n## No token: anonymous discovery\n", 1)[1].split("\n## ", 1)[0]
    assert printed_authentication_configuration(text) == ANONYMOUS_DISCOVERY_AUTHENTICATION_CONFIG
    (binding,) = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "ClusterRoleBinding" in b]
    assert binding == ANONYMOUS_DISCOVERY_CLUSTER_ROLE_BINDING
