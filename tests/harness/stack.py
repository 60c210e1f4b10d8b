"""One shipped Envoy configuration running against the fake kube-apiserver: the unit the e2e
tests (and the benchmark) start and stop.

    with Stack(workdir, pki, wasm, "pod.yaml", plugin_changes={"timeout_ms": 300}) as s:
        r = s.get("/openid/v1/jwks")
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from . import config as _config
from .envoy import Envoy, pod_config
from .fake_apiserver import FakeApiServer
from .front import EnvoyFront
from .pki import Pki
from .tokendir import TokenDir

STATIC_TOKEN_ENV = "KUBE_OIDC_TOKEN"


def new_token() -> str:
    """A JWT-shaped, unique, greppable service-account token."""
    return "eyJhbGciOiJSUzI1NiJ9.kod-test-" + secrets.token_urlsafe(24) + ".sig"


class Stack(EnvoyFront):
    def __init__(self, workdir: Path | str, pki: Pki, wasm: Path | str, config: str | None = None, *,
                 plugin: dict | str | None = None, plugin_changes: dict | None = None,
                 token: str | None = None, env_token: str | None = None,
                 server_cert: str = "server", start_fake: bool = True,
                 backend_port: int | None = None, concurrency: int = 1, wasm_trace: bool = False,
                 env: dict[str, str] | None = None, fake: FakeApiServer | None = None,
                 base_cfg: dict | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pki = pki
        self.token = token or new_token()
        cert, key = pki.pair(server_cert)
        self.own_fake = fake is None
        self.fake = fake or FakeApiServer(cert, key, token=self.token)
        self.start_fake = start_fake
        if self.own_fake and start_fake:
            self.fake.start()
        elif self.own_fake:
            # reserve a port, then leave it closed
            self.fake.start()
            self.fake.stop()
        self.tokens = TokenDir(self.workdir / "serviceaccount")
        self.tokens.write_token(self.token, ca=pki.ca_cert.read_bytes())
        # envoy/pod.yaml, or what this Envoy runs instead (harness.envoy.pod_config)
        self.cfg = _config.for_test(
            config or pod_config(), wasm=wasm, ca=pki.ca_cert, api_port=self.fake.port,
            token_dir=self.tokens.path, sds_file=self.workdir / "token-sds.yaml",
            plugin=plugin, plugin_changes=plugin_changes, backend_port=backend_port, cfg=base_cfg,
        )
        run_env = dict(os.environ)
        try:
            wants_env_token = bool(_config.plugin_config(self.cfg).get("token_env"))
        except ValueError:  # a deliberately malformed plugin configuration
            wants_env_token = False
        if env_token is not None or wants_env_token:
            run_env[STATIC_TOKEN_ENV] = self.token if env_token is None else env_token
        run_env.update(env or {})
        self.envoy = Envoy(self.cfg, self.workdir / "envoy", concurrency=concurrency,
                           wasm_trace=wasm_trace, env=run_env)

    def start(self, wait: bool = True, timeout: float = 30) -> "Stack":
        try:
            self.envoy.start(wait=wait, timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        try:
            self.envoy.stop()
        finally:
            if self.own_fake:
                self.fake.stop()
