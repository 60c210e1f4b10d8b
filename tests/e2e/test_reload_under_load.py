"""Reload under load: the listener of envoy/pod.yaml comes from a file-based LDS source, and
while wrk loads the documents the file is replaced (moved into place, as a config management
tool or a ConfigMap update does). A changed plugin configuration (jwks_uri, refresh interval,
another API server) is in effect within seconds with no failed request, and a changed upstream
gets its own copy; a second listener with the same plugin serves the same copy; a plugin
configuration the filter refuses is rejected by Envoy, which keeps the previous listener serving
and logs why."""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

import pytest

from harness.checks import plugin_log_lines, poll, served_discovery
from harness import client, config
from harness.child import free_port
from harness.constants import DISCOVERY, FASTEST_REFRESH_S, HOST, JWKS
from harness.fake_apiserver import FakeApiServer, make_jwk
from harness.load import wrk_finish, wrk_start
from harness.stack import new_token

pytestmark = pytest.mark.timeout(120)

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
NEW_JWKS_URI = "https://keys.example.org/openid/v1/jwks"
OTHER_CLUSTER = "kubernetes-other"
# Envoy reads a moved-in LDS file at once; the new listener's plugin then prefetches.
IN_EFFECT_S = 5
LOAD_S = 12


class Lds:
    """Envoy's listeners in a watched LDS file, replaced by moving a new file into place."""

    def __init__(self, stack, directory: Path):
        self.stack = stack
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "lds.yaml"
        cfg = stack.cfg
        (listener,) = cfg["static_resources"].pop("listeners")
        listener["address"]["socket_address"]["port_value"] = free_port()
        self.listeners = [listener]
        cfg["dynamic_resources"] = {"lds_config": {"resource_api_version": "V3", "path_config_source": {
            "path": str(self.path), "watched_directory": {"path": str(self.dir)}}}}
        self.write()
        config.dump(cfg, stack.envoy.config_path)

    def write(self) -> None:
        resources = [{"@type": LISTENER_TYPE, **lst} for lst in self.listeners]
        tmp = self.dir / ".lds.yaml.tmp"
        tmp.write_text(json.dumps({"resources": resources}))
        os.rename(tmp, self.path)

    @staticmethod
    def view(listener: dict) -> dict:
        """A config around one listener, for the harness's config helpers."""
        return {"static_resources": {"listeners": [listener]}}

    def plugin(self, i: int = 0) -> dict:
        return config.plugin_config(self.view(self.listeners[i]))

    def port(self, i: int = 0) -> int:
        return self.listeners[i]["address"]["socket_address"]["port_value"]

    def update(self, listeners: list[dict]) -> float:
        """Moves the new listeners into place; returns when Envoy accepted or rejected them."""
        before = self.counts()
        self.listeners = listeners
        self.write()
        at = time.monotonic()
        poll(lambda: self.counts() != before, 10, 0.05, "Envoy to read the LDS file")
        return at

    def counts(self) -> tuple[int, int]:
        stats = self.stack.envoy.stats("listener_manager.lds")
        return (stats.get("listener_manager.lds.update_success", 0),
                stats.get("listener_manager.lds.update_rejected", 0))

    def with_plugin(self, i: int = 0, **changes) -> dict:
        """A copy of listener i with plugin configuration keys changed (None removes one)."""
        lst = copy.deepcopy(self.listeners[i])
        plugin = {k: v for k, v in {**self.plugin(i), **changes}.items() if v is not None}
        config.set_plugin_config(self.view(lst), plugin)
        return lst


@pytest.fixture
def reloadable(make_stack, tmp_path):
    """``reloadable(other=None, **stack_options)`` -> (Stack, Lds): envoy/pod.yaml with 2
    workers, its listener served by LDS from a file, started, both documents served. ``other``:
    a second fake API server behind a second cluster, ``kubernetes-other``, like the first."""
    def make(other: FakeApiServer | None = None, **kw):
        s = make_stack(start=False, concurrency=2, **kw)
        if other is not None:
            twin = copy.deepcopy(config.cluster(s.cfg, config.API_CLUSTER))
            twin["name"] = OTHER_CLUSTER
            s.cfg["static_resources"]["clusters"].append(twin)
            config.set_cluster_endpoint(s.cfg, OTHER_CLUSTER, "127.0.0.1", other.port)
        lds = Lds(s, tmp_path / f"lds{len(made)}")
        # As Istio runs it: a draining listener answers every request with `connection: close`,
        # so keep-alive clients move to the new one between requests. (Gradual, over the test
        # harness's 1 s drain time, it closes nearly every connection under a client instead.)
        s.envoy.args += ["--drain-strategy", "immediate"]
        made.append(s)
        s.start()
        poll(lambda: all(client.get(lds.port(), p).status == 200 for p in (DISCOVERY, JWKS)), 10,
             what="both documents served")
        return s, lds

    made = []
    return make


def load(port: int, workdir: Path, paths=(DISCOVERY, JWKS)):
    return [wrk_start(f"http://127.0.0.1:{port}{p}", workdir, duration_s=LOAD_S, connections=8,
                      threads=1, host=HOST, statuses=True, delay_ms=2) for p in paths]


def assert_no_failed_request(procs) -> None:
    for p in procs:
        r = wrk_finish(p, timeout=LOAD_S + 30)
        assert r.requests > 100, r.output
        assert r.statuses == {200: r.requests} and r.socket_errors == 0, (r.statuses, r.errors, r.output)


def discovery_jwks_uri(port: int) -> str | None:
    r = client.get(port, DISCOVERY)
    assert r.status == 200, (r.status, r.body)
    return json.loads(r.body)["jwks_uri"]


def test_changed_plugin_configuration_is_in_effect_within_seconds_under_load(reloadable, tmp_path):
    s, lds = reloadable()  # the shipped configuration: refresh every 60 s
    assert lds.plugin()["jwks_uri"] != NEW_JWKS_URI
    procs = load(lds.port(), tmp_path)
    time.sleep(2)
    calls = {p: s.fake.count(p) for p in (DISCOVERY, JWKS)}
    at = lds.update([lds.with_plugin(jwks_uri=NEW_JWKS_URI, refresh_interval_s=FASTEST_REFRESH_S)])
    assert lds.counts()[1] == 0, "the new configuration was rejected"
    poll(lambda: discovery_jwks_uri(lds.port()) == NEW_JWKS_URI, IN_EFFECT_S, 0.1,
         "the new jwks_uri served")
    took = time.monotonic() - at
    # from then on, every new connection gets the new configuration: no way back to the old one
    for _ in range(20):
        assert discovery_jwks_uri(lds.port()) == NEW_JWKS_URI
    assert client.get(lds.port(), DISCOVERY).body == served_discovery(s.fake, NEW_JWKS_URI)
    # a changed jwks_uri is a changed upstream configuration: the new plugin fetched its own copy
    assert all(s.fake.count(p) > calls[p] for p in calls), (calls, s.fake.counts)
    # the new refresh interval runs: a refresh within 5 s and a tick, where the old 60 s has none
    first = {p: s.fake.count(p) for p in calls}
    time.sleep(FASTEST_REFRESH_S + 2.5)
    assert all(s.fake.count(p) > first[p] for p in calls), (first, s.fake.counts)
    assert_no_failed_request(procs)
    print(f"new configuration served {took:.2f}s after the LDS file was moved into place")


def test_another_api_server_gets_its_own_copy_never_a_mix(reloadable, tmp_path, pki):
    token = new_token()
    other = FakeApiServer(pki.server_cert, pki.server_key, token=token,
                          issuer="https://other.example.org", keys=[make_jwk()])
    other.start()
    try:
        s, lds = reloadable(other=other, token=token)
        uri = lds.plugin()["jwks_uri"]
        mine = {DISCOVERY: served_discovery(s.fake, uri), JWKS: s.fake.jwks_body()}
        theirs = {DISCOVERY: served_discovery(other, uri), JWKS: other.jwks_body()}
        assert all(mine[p] != theirs[p] for p in mine)
        assert all(client.get(lds.port(), p).body == mine[p] for p in mine)
        procs = load(lds.port(), tmp_path)
        time.sleep(2)
        lds.update([lds.with_plugin(cluster=OTHER_CLUSTER)])
        assert lds.counts()[1] == 0, "the new configuration was rejected"
        poll(lambda: client.get(lds.port(), JWKS).body == theirs[JWKS], IN_EFFECT_S, 0.1,
             "the other API server's JWKS")
        # from then on both documents come from the other server, on every new connection
        for _ in range(20):
            for p in (DISCOVERY, JWKS):
                r = client.get(lds.port(), p)
                assert (r.status, r.body) == (200, theirs[p]), (p, r.status, r.body[:200])
        assert_no_failed_request(procs)
        # its own copy: one fetch per document, however many requests came in meanwhile
        assert (other.count(DISCOVERY), other.count(JWKS)) == (1, 1), other.counts
    finally:
        other.stop()


def test_a_second_listener_with_the_same_plugin_serves_the_same_copy(reloadable, tmp_path):
    s, lds = reloadable()
    first = {p: client.get(lds.port(), p) for p in (DISCOVERY, JWKS)}
    procs = load(lds.port(), tmp_path)
    time.sleep(2)
    calls = dict(s.fake.counts)
    second = copy.deepcopy(lds.listeners[0])
    second["name"] = "second"
    second["address"]["socket_address"]["port_value"] = port = free_port()
    config.hcm(Lds.view(second))["stat_prefix"] = "second"
    added = s.envoy.stat("listener_manager.listener_added")
    lds.update([lds.listeners[0], second])

    def served(p):
        try:
            r = client.get(port, p)
        except OSError:  # not listening yet
            return None
        return r if r.status == 200 else None

    for p, r0 in first.items():
        r = poll(lambda: served(p), IN_EFFECT_S, 0.1, f"{p} on the second listener")
        assert (r.body, r.header("etag")) == (r0.body, r0.header("etag")), p
    assert s.envoy.stat("listener_manager.listener_added") == added + 1
    # the first listener was left alone (not drained and rebuilt) and nothing was fetched again
    assert s.envoy.stat("listener_manager.listener_modified") == 0
    assert_no_failed_request(procs)
    assert s.fake.counts == calls, (calls, s.fake.counts)


def test_a_refused_plugin_configuration_leaves_the_previous_one_serving(reloadable, tmp_path):
    s, lds = reloadable()
    procs = load(lds.port(), tmp_path)
    time.sleep(2)
    previous = lds.listeners
    lds.update([lds.with_plugin(refresh_interval_s=1, jwks_uri=NEW_JWKS_URI)])
    assert lds.counts() == (1, 1), "Envoy accepted a configuration the filter refuses"
    lds.listeners = previous
    for _ in range(20):
        assert discovery_jwks_uri(lds.port()) != NEW_JWKS_URI
    assert_no_failed_request(procs)
    # why, in the log: the filter's own line naming the key, and Envoy's rejection of the update
    log = s.envoy.log_text()
    lines = [ln for ln in plugin_log_lines(log) if "refresh_interval_s" in ln]
    assert len(lines) == 1 and "[error]" in lines[0], plugin_log_lines(log)
    assert "lds: listener 'public' config rejected: Unable to create Wasm plugin kube-oidc-discovery" in log
    assert s.envoy.running
