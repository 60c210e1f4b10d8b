"""Runs a real Envoy (.venv/bin/envoy) as a child of the calling Python process.

- started by harness.child (no shell, PR_SET_PDEATHSIG: it dies with us);
- a unique ``--base-id`` per instance, so parallel instances never share hot-restart state;
- admin and listener on ephemeral ports: the config asks for port 0, the admin address is read
  from ``--admin-address-path`` and the listener port from admin ``/listeners``;
- readiness via admin ``/ready``; log to a file (``--log-path``), stdout/stderr to another;
- ``stop()`` terminates, waits, then kills; use it in a ``finally`` or a fixture teardown.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import REPO_ROOT, child
from . import config as _config
from . import releases as _releases

DEFAULT_ENVOY_BIN = REPO_ROOT / ".venv" / "bin" / "envoy"

_counter = itertools.count(1)


class EnvoyError(RuntimeError):
    pass


def envoy_bin() -> str:
    """The Envoy the tests run: ``ENVOY_BIN`` (any binary); else ``KOD_ENVOY_VERSION``, one of the
    pinned releases of harness.releases (`make envoy-matrix` sets it, tests/envoygateway sets
    Envoy Gateway's); else the suite's default, .venv's. Read per call, so a conftest can choose."""
    explicit, pinned = os.environ.get("ENVOY_BIN"), os.environ.get("KOD_ENVOY_VERSION")
    path = Path(explicit) if explicit else _releases.binary(pinned) if pinned else DEFAULT_ENVOY_BIN
    if path.exists():
        return str(path)
    if not explicit and not pinned and shutil.which("envoy"):
        return shutil.which("envoy")
    raise EnvoyError(f"no Envoy binary at {path}; run `make tools-py` (or `make envoys`)")


def version() -> str:
    """The release of the Envoy the tests run (``1.40.0``): what its ``--version`` says."""
    return _releases.version_of(envoy_bin())


def has_header_value_prefix() -> bool:
    """Whether this Envoy's generic credential injector knows ``header_value_prefix``, which the
    rotating-token configs need (harness.releases: from 1.37)."""
    return _releases.has_header_value_prefix(version())


def pod_config() -> str:
    """The shipped pod config this Envoy runs: envoy/pod.yaml, or envoy/pod-static-token.yaml
    in an Envoy that refuses pod.yaml's ``header_value_prefix`` (Istio 1.28's 1.36)."""
    return "pod.yaml" if has_header_value_prefix() else "pod-static-token.yaml"


def expected_refusal(cfg: dict | str) -> str | None:
    """What this Envoy prints when it refuses ``cfg`` for a field it does not know yet
    (docs/support.md quotes it), or None when it knows every field ``cfg`` uses."""
    text = cfg if isinstance(cfg, str) else json.dumps(cfg)
    if "header_value_prefix" in text and not has_header_value_prefix():
        return _releases.HEADER_VALUE_PREFIX_REFUSAL
    return None


def assert_validates_or_is_refused_as_documented(cfg: dict | str,
                                                  r: subprocess.CompletedProcess) -> None:
    """``envoy --mode validate`` of ``cfg``: valid, or refused with exactly the documented
    message when it uses a field this Envoy does not know."""
    refusal = expected_refusal(cfg)
    if refusal is None:
        assert r.returncode == 0, r.stdout[-3000:]
        assert "OK" in r.stdout, r.stdout[-3000:]
    else:
        # protobuf pads the message with runs of spaces; docs/support.md quotes it collapsed
        assert r.returncode != 0 and refusal in " ".join(r.stdout.split()), r.stdout[-3000:]


def unique_base_id() -> int:
    # pid-based: distinct from every other process's instances; the counter keeps this
    # process's instances apart. Stays far below 2^32 / 10.
    return (os.getpid() % 100_000) * 1000 + next(_counter) % 1000


def validate(config_path: Path | str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``envoy --mode validate -c FILE``: returncode 0 when the configuration is valid."""
    return subprocess.run(
        [envoy_bin(), "--mode", "validate", "-c", str(config_path), "--base-id", str(unique_base_id()),
         "-l", "info"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
    )


class Envoy:
    def __init__(self, cfg: dict | Path | str, workdir: Path | str, *, concurrency: int = 1,
                 log_level: str = "info", component_log_level: str | None = None,
                 wasm_trace: bool = False, env: dict[str, str] | None = None,
                 extra_args: list[str] | None = None, name: str | None = None,
                 cwd: Path | str | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name or f"envoy-{os.getpid()}-{next(_counter)}"
        if isinstance(cfg, dict):
            self.config = cfg
            self.config_path = _config.dump(cfg, self.workdir / f"{self.name}.yaml")
        else:
            self.config_path = Path(cfg)
            self.config = None
        self.log_path = self.workdir / f"{self.name}.log"
        self.stdout_path = self.workdir / f"{self.name}.stdout"
        self.admin_path = self.workdir / f"{self.name}.admin"
        self.concurrency = concurrency
        self.base_id = unique_base_id()
        levels = [component_log_level] if component_log_level else []
        if wasm_trace:
            levels.append("wasm:trace")
        self.args = [
            envoy_bin(), "-c", str(self.config_path),
            "--concurrency", str(concurrency),
            "--base-id", str(self.base_id),
            "--log-path", str(self.log_path),
            "--admin-address-path", str(self.admin_path),
            "-l", log_level,
            "--drain-time-s", "1",
            "--file-flush-interval-msec", "50",
            "--parent-shutdown-time-s", "2",
        ]
        if levels:
            self.args += ["--component-log-level", ",".join(levels)]
        self.args += list(extra_args or [])
        self.env = dict(os.environ if env is None else env)
        self.cwd = str(cwd) if cwd else None
        self.proc: subprocess.Popen | None = None
        self.admin_port: int | None = None
        self.ports: list[int] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self, wait: bool = True, timeout: float = 30) -> "Envoy":
        for p in (self.admin_path, self.log_path):
            p.unlink(missing_ok=True)
        self.stdout_path.unlink(missing_ok=True)
        self.proc = child.spawn(self.args, self.stdout_path, env=self.env, cwd=self.cwd)
        if wait:
            try:
                self.wait_ready(timeout)
            except BaseException:
                self.stop()
                raise
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EnvoyError(f"Envoy exited with {self.proc.returncode} before it was ready:\n"
                                 + self.tail())
            if self.admin_port is None and self.admin_path.exists():
                text = self.admin_path.read_text().strip()
                if text:
                    self.admin_port = int(text.rsplit(":", 1)[1])
            if self.admin_port is not None:
                try:
                    status, body = self.admin_get("/ready", timeout=2)
                except OSError:
                    status = 0
                if status == 200:
                    self.ports = self._listener_ports()
                    return
            time.sleep(0.05)
        raise EnvoyError(f"Envoy not ready after {timeout}s:\n" + self.tail())

    def wait_exit(self, timeout: float = 30) -> int | None:
        """Waits for the process to exit by itself; returns its code, or None if it still runs."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 10) -> int | None:
        return child.stop(self.proc, timeout)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------------ addresses
    @property
    def port(self) -> int:
        """The (first) listener's port."""
        if not self.ports:
            raise EnvoyError("no listener port (not started, or no listener)")
        return self.ports[0]

    def _listener_ports(self) -> list[int]:
        status, body = self.admin_get("/listeners?format=json")
        if status != 200:
            return []
        ports = []
        for ls in json.loads(body).get("listener_statuses", []):
            sock = ls.get("local_address", {}).get("socket_address", {})
            if "port_value" in sock:
                ports.append(int(sock["port_value"]))
        return ports

    # ------------------------------------------------------------------ admin
    def admin(self, method: str, path: str, timeout: float = 5) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=timeout)
        try:
            conn.request(method, path)
            r = conn.getresponse()
            return r.status, r.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def admin_get(self, path: str, timeout: float = 5) -> tuple[int, str]:
        return self.admin("GET", path, timeout)

    def stats(self, filter: str | None = None) -> dict[str, int]:
        """Counters and gauges of admin /stats (histograms are left out)."""
        path = "/stats"
        if filter:
            from urllib.parse import quote
            path += "?filter=" + quote(filter)
        status, body = self.admin_get(path)
        if status != 200:
            raise EnvoyError(f"/stats answered {status}")
        out: dict[str, int] = {}
        for line in body.splitlines():
            name, sep, value = line.partition(": ")
            if sep and value.strip().lstrip("-").isdigit():
                out[name] = int(value)
        return out

    def stat(self, name: str, default: int = 0) -> int:
        return self.stats().get(name, default)

    def prefetched(self) -> bool:
        """The filter has fetched both documents successfully at least once (its `upstream.<doc>.ok`
        counters, of any issuer): what a test waits for after start. Not the API server's having
        seen the requests: a first fetch that failed is retried only after its backoff (1 s or
        more), and until then a request gets the failure's status."""
        stats = self.stats("wasmcustom")
        return all(any(v > 0 for k, v in stats.items() if k.endswith(f".upstream.{doc}.ok"))
                   for doc in ("discovery", "jwks"))

    def prometheus(self) -> str:
        status, body = self.admin_get("/stats/prometheus")
        if status != 200:
            raise EnvoyError(f"/stats/prometheus answered {status}")
        return body

    # ------------------------------------------------------------------ logs
    def log_text(self) -> str:
        parts = []
        for p in (self.log_path, self.stdout_path):
            if p.exists():
                parts.append(p.read_text(errors="replace"))
        return "\n".join(parts)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def main(argv: list[str] | None = None) -> int:
    """``python -m harness.envoy CONFIG``: run a config in the foreground until Ctrl-C."""
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--concurrency", type=int, default=1)
    args = ap.parse_args(argv)
    e = Envoy(Path(args.config), Path(".run") / "envoy", concurrency=args.concurrency)
    try:
        e.start()
        print(f"admin on 127.0.0.1:{e.admin_port}, listeners {e.ports}", flush=True)
        e.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        e.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
