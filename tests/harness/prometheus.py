"""A real Prometheus server (Debian's 2.42, `make tools-prometheus`) for the tests: on a free port
of 127.0.0.1, with its storage in the work directory, scraping the given targets and evaluating
the given rules file at short intervals; stopped by PID.

    with Prometheus(workdir, rules=path, targets={"envoy": ["127.0.0.1:9901"]}) as prom:
        prom.query("up")            # -> the API's result list
        prom.alerts()               # -> active alerts (pending and firing)
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from . import CACHE, child

BIN = Path(os.environ.get("KOD_PROMETHEUS_BIN") or CACHE / "prometheus" / "bin")


def binary(name: str) -> Path:
    """``prometheus`` or ``promtool``; raises FileNotFoundError with the make target to run."""
    path = BIN / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make tools-prometheus`")
    return path


class PrometheusError(RuntimeError):
    pass


class Prometheus:
    def __init__(self, workdir: Path | str, *, targets: dict[str, list[str]], rules: Path | str | None = None,
                 metrics_path: str = "/stats/prometheus", interval: str = "1s"):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = child.free_port()
        config = {
            "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
            "rule_files": [str(rules)] if rules else [],
            "scrape_configs": [
                {"job_name": job, "metrics_path": metrics_path, "static_configs": [{"targets": addrs}]}
                for job, addrs in targets.items()
            ],
        }
        self.config_path = self.workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = self.workdir / "prometheus.log"
        self.args = [
            binary("prometheus"), f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}", "--storage.tsdb.retention.time=1h",
            f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
        ]
        self.proc = None

    def start(self, timeout: float = 30) -> "Prometheus":
        self.proc = child.spawn(self.args, self.log_path)
        try:
            child.wait_http_ok(self.proc, f"{self.url}/-/ready", timeout, "Prometheus", self.tail)
        except RuntimeError as e:
            self.stop()
            raise PrometheusError(str(e)) from None
        return self

    def stop(self) -> None:
        child.stop(self.proc)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def api(self, path: str, **params) -> object:
        """GET /api/v1/<path>; the ``data`` of a success, PrometheusError with its error otherwise."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            body = json.load(e)
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """An instant query's result (a vector's samples, each {"metric": ..., "value": ...})."""
        return self.api("query", query=expr)["result"]

    def alerts(self) -> list[dict]:
        """Active alerts: each {"labels", "annotations", "state": pending|firing, ...}."""
        return self.api("alerts")["alerts"]

    def rule_health(self) -> list[tuple[str, str, str]]:
        """(rule name, health, lastError) of every loaded rule."""
        out = []
        for g in self.api("rules")["groups"]:
            for r in g["rules"]:
                out.append((r["name"], r.get("health", ""), r.get("lastError", "")))
        return out
