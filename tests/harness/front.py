"""What a test does with a started Envoy in front of API servers (harness.stack.Stack: one;
harness.fleet.Fleet: several): requests to its listener, the filter's metrics, and start/stop
as a context manager. A subclass sets ``self.envoy`` and defines ``start`` and ``stop``."""

from __future__ import annotations

from . import client
from .envoy import Envoy


class EnvoyFront:
    envoy: Envoy

    def start(self):
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self) -> int:
        return self.envoy.port

    def request(self, path: str, **kw) -> client.Response:
        return client.request(self.envoy.port, path, **kw)

    def get(self, path: str, **kw) -> client.Response:
        return client.request(self.envoy.port, path, method="GET", **kw)

    def head(self, path: str, **kw) -> client.Response:
        return client.request(self.envoy.port, path, method="HEAD", **kw)

    def metric(self, name: str) -> int:
        """A filter metric by its name (``kube_oidc_discovery.…``), from admin /stats."""
        return self.envoy.stat("wasmcustom." + name)
