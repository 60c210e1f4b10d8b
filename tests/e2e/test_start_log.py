"""What the operator sees when the plugin starts: one info line per Envoy process, whatever the
number of worker VMs, naming the hosts, the token's variable (never the token) and the refresh
interval."""

from __future__ import annotations

from harness.checks import plugin_log_lines
from harness.constants import JWKS


def _start_lines(s) -> list[str]:
    return [ln for ln in plugin_log_lines(s.envoy.log_text()) if " started: " in ln]


def test_one_start_line_per_process_with_several_workers(make_stack):
    s = make_stack("pod-static-token.yaml", concurrency=3)
    assert s.get(JWKS).status == 200
    lines = _start_lines(s)
    assert len(lines) == 1, lines
    line = lines[0]
    assert "[info]" in line, line
    assert "hosts oidc.example.com;" in line, line
    assert "token from VM env KUBE_OIDC_TOKEN;" in line, line
    assert "refresh every 60 s" in line, line
    assert s.token not in s.envoy.log_text()


def test_the_start_line_without_a_token(make_stack):
    s = make_stack("pod.yaml")
    lines = _start_lines(s)
    assert len(lines) == 1, lines
    assert "no token (the cluster may inject one)" in lines[0], lines
