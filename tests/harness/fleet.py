"""Several API servers behind one Envoy: the filter's ``issuers`` form (envoy/multi-cluster.yaml
by default), each API-server cluster pointed at its own server (the fake kube-apiserver or a
real one, harness.kube), trusting that server's CA, with that server's token, sent the way the
cluster's configuration says: by the filter from the entry's ``token_env`` variable, or by the
cluster's credential_injector from a token directory.

    fleet = Fleet(workdir, wasm, {"prod-api": Upstream(fake_a, pki_a.ca_cert, token_a),
                                  "dev-api": Upstream(fake_b, pki_b.ca_cert, token_b)}).start()
    r = fleet.get("/clusters/prod/openid/v1/jwks")
    fleet.stop()
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import config as _config
from .envoy import Envoy
from .front import EnvoyFront
from .tokendir import TokenDir

CONFIG = "multi-cluster.yaml"
# The shipped SDS file of each cluster whose credential_injector reads a token.
SDS_TEMPLATES = {"dev-api": "multi-cluster-dev-token-sds.yaml"}


@dataclass
class Upstream:
    """One API server: anything with a ``port`` on 127.0.0.1 (FakeApiServer, Kube), the CA that
    signed its certificate, and a token it accepts."""
    server: Any
    ca: Path
    token: str


def token_envs(plugin: dict) -> dict[str, str]:
    """cluster -> the VM environment variable the filter reads its token from."""
    return {e["cluster"]: e["token_env"] for e in plugin.get("issuers", [])
            if isinstance(e, dict) and e.get("token_env")}


class Fleet(EnvoyFront):
    def __init__(self, workdir: Path | str, wasm: Path | str, upstreams: dict[str, Upstream], *,
                 config: str = CONFIG, cfg: dict | None = None, plugin: dict | None = None,
                 backend_port: int | None = None, concurrency: int = 1, wasm_trace: bool = False):
        """``cfg``: a configuration built from the shipped one (e.g. with a cluster added);
        ``plugin``: the filter configuration to run instead of the shipped one;
        ``backend_port``: where the application cluster(s) send other hosts' requests."""
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.upstreams = upstreams
        base = _config.load(config) if cfg is None else cfg
        if plugin is not None:
            _config.set_plugin_config(base, plugin)
        apis: dict[str, _config.Api] = {}
        self.tokens: dict[str, TokenDir] = {}
        for cluster, up in upstreams.items():
            api = _config.Api(up.server.port, up.ca)
            if _config.generic_credential(base, cluster) is not None:
                tokens = TokenDir(self.workdir / cluster / "token")
                tokens.write_token(up.token, ca=Path(up.ca).read_bytes())
                self.tokens[cluster] = tokens
                api = _config.Api(up.server.port, up.ca, tokens.path, self.workdir / cluster / "sds.yaml",
                                  SDS_TEMPLATES.get(cluster, "token-sds.yaml"))
            apis[cluster] = api
        self.cfg = _config.for_test(config, wasm=wasm, apis=apis, cfg=base, backend_port=backend_port)
        env = dict(os.environ)
        for cluster, var in token_envs(_config.plugin_config(self.cfg)).items():
            env[var] = upstreams[cluster].token
        self.envoy = Envoy(self.cfg, self.workdir / "envoy", concurrency=concurrency,
                           wasm_trace=wasm_trace, env=env)

    def start(self, timeout: float = 30) -> "Fleet":
        self.envoy.start(timeout=timeout)
        return self

    def stop(self) -> None:
        self.envoy.stop()
