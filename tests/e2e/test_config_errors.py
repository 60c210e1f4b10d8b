"""A wrong plugin configuration stops Envoy from starting, with one log line naming the key.

What Envoy 1.40 does when the plugin's on_configure returns false (fail-closed plugin, the
default): "Wasm VM failed Failed to configure base Wasm plugin", "Plugin kube-oidc-discovery
failed to load", then the listener cannot be created ("Unable to create Wasm plugin
kube-oidc-discovery") and Envoy exits with status 1, in serve mode at startup as in
`--mode validate`. The filter's own line comes first, as `wasm log kube-oidc-discovery: ...`.
"""

from __future__ import annotations

import pytest

from harness.checks import plugin_log_lines
from harness import config as cfgmod
from harness import envoy as envoymod
from harness.constants import PLUGIN_NAME
from harness.stack import STATIC_TOKEN_ENV

ENVOY_SAYS = f"Unable to create Wasm plugin {PLUGIN_NAME}"

# id: (config, plugin changes, environment of Envoy (None: leave as is), key the line must name)
CASES = {
    "unknown-key": ("pod.yaml", {"bogus_key": True}, None, "bogus_key"),
    "unknown-key-typo": ("pod.yaml", {"host": ["oidc.example.com"]}, None, "host"),
    "wrong-type-timeout": ("pod.yaml", {"timeout_ms": "5000"}, None, "timeout_ms"),
    "wrong-type-hosts": ("pod.yaml", {"hosts": "oidc.example.com"}, None, "hosts"),
    "wrong-type-refresh": ("pod.yaml", {"refresh_interval_s": 1.5}, None, "refresh_interval_s"),
    "negative-max-stale": ("pod.yaml", {"max_stale_s": -1}, None, "max_stale_s"),
    "timeout-0": ("pod.yaml", {"timeout_ms": 0}, None, "timeout_ms"),
    "timeout-60001": ("pod.yaml", {"timeout_ms": 60001}, None, "timeout_ms"),
    "refresh-4": ("pod.yaml", {"refresh_interval_s": 4}, None, "refresh_interval_s"),
    "refresh-86401": ("pod.yaml", {"refresh_interval_s": 86401}, None, "refresh_interval_s"),
    "max-stale-0": ("pod.yaml", {"max_stale_s": 0}, None, "max_stale_s"),
    "jwks-uri-http": ("pod.yaml", {"jwks_uri": "http://oidc.example.com/openid/v1/jwks"}, None, "jwks_uri"),
    "jwks-uri-no-host": ("pod.yaml", {"jwks_uri": "https:///openid/v1/jwks"}, None, "jwks_uri"),
    "empty-cluster": ("pod.yaml", {"cluster": ""}, None, "cluster"),
    "empty-host": ("pod.yaml", {"hosts": [""]}, None, "hosts"),
    "issuers-next-to-hosts": ("pod.yaml", {"issuers": [
        {"name": "a", "issuer": "https://oidc.example.com/a", "cluster": "kubernetes"}]}, None, "hosts"),
    "issuers-entry-without-cluster": ("pod.yaml", {"hosts": None, "jwks_uri": None, "issuers": [
        {"name": "a", "issuer": "https://oidc.example.com/a", "cluster": "kubernetes"},
        {"name": "b", "issuer": "https://oidc.example.com/b"}]}, None, "issuers[1].cluster"),
    "issuers-same-paths": ("pod.yaml", {"hosts": None, "jwks_uri": None, "issuers": [
        {"name": "a", "issuer": "https://oidc.example.com/a", "cluster": "kubernetes"},
        {"name": "b", "issuer": "https://OIDC.example.com:443/a/", "cluster": "kubernetes"}]},
        None, "issuers[1].issuer"),
    "token-env-missing": ("pod-static-token.yaml", {}, {STATIC_TOKEN_ENV: None}, "token_env"),
    "token-env-empty": ("pod-static-token.yaml", {}, {STATIC_TOKEN_ENV: ""}, "token_env"),
    "token-env-blank": ("pod-static-token.yaml", {}, {STATIC_TOKEN_ENV: " \n"}, "token_env"),
    "token-env-not-passed-to-vm": ("pod-static-token.yaml", {"token_env": "OTHER_TOKEN"},
                                   {"OTHER_TOKEN": "set-in-envoy-but-not-in-host_env_keys"}, "token_env"),
}


def _env_for(s, env_changes):
    env = dict(s.envoy.env)
    for k, v in (env_changes or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


@pytest.mark.parametrize("case", list(CASES))
def test_bad_configuration_stops_envoy_with_one_line_naming_the_key(make_stack, case):
    config, changes, env_changes, key = CASES[case]
    s = make_stack(config, start=False, plugin_changes=changes)
    s.envoy.env = _env_for(s, env_changes)
    s.envoy.start(wait=False)
    code = s.envoy.wait_exit(30)
    log = s.envoy.log_text()
    assert code is not None, "Envoy kept running with a bad plugin configuration"
    assert code != 0
    assert ENVOY_SAYS in log
    assert "starting main dispatch loop" not in log
    assert s.fake.count() == 0
    lines = plugin_log_lines(log)
    assert len(lines) == 1, f"want one line from the filter, got {lines}"
    line = lines[0]
    assert "[error]" in line or "[critical]" in line, line
    assert key in line, f"the line does not name `{key}`: {line}"
    assert s.token not in log
    for v in (env_changes or {}).values():
        if v and v.strip():
            assert v not in log


def test_not_json_stops_envoy(make_stack):
    s = make_stack("pod.yaml", start=False, plugin='{"hosts": ["oidc.example.com"]')
    s.envoy.start(wait=False)
    assert s.envoy.wait_exit(30) not in (None, 0)
    lines = plugin_log_lines(s.envoy.log_text())
    assert len(lines) == 1 and "invalid configuration" in lines[0], lines


@pytest.mark.parametrize("plugin", ["", "{}"])
def test_empty_configuration_means_defaults(make_stack, plugin):
    # defaults: cluster "kubernetes", every host served (given the filter is in every host's path)
    s = make_stack("pod.yaml", plugin=plugin, start=False)
    cfgmod.unscoped(s.cfg)
    cfgmod.dump(s.cfg, s.envoy.config_path)
    s.start()
    r = s.get("/openid/v1/jwks", host="any.host.example")
    assert r.status == 200 and r.body == s.fake.jwks_body()


def test_validate_mode_rejects_a_bad_plugin_configuration(make_stack, tmp_path):
    s = make_stack("pod.yaml", start=False, plugin_changes={"timeout_ms": 0})
    r = envoymod.validate(s.envoy.config_path)
    assert r.returncode != 0
    assert ENVOY_SAYS in r.stdout
    assert any("timeout_ms" in ln for ln in plugin_log_lines(r.stdout))
    good = make_stack("pod.yaml", start=False)
    assert envoymod.validate(good.envoy.config_path).returncode == 0
    assert cfgmod.plugin_config(good.cfg)["hosts"] == ["oidc.example.com"]
