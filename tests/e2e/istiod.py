"""Config transformations for the e2e tests."""

from __future__ import annotations

from harness import config as cfgmod


def unscoped(cfg: dict) -> None:
    """The filter in every request's path, no per-host entries: a shipped config without its
    scoping."""
    for f in cfgmod.hcm(cfg)["http_filters"]:
        f.pop("disabled", None)
    for vh in cfgmod.hcm(cfg)["route_config"]["virtual_hosts"]:
        vh.pop("typed_per_filter_config", None)
