"""envoy/envoy-gateway.yaml is what Envoy Gateway produces for the chart today (made static by
staticconfig.py), and it runs in plain Envoy: both documents served from the fake kube-apiserver
with the token from the token file, other paths 404. `make envoy-gateway-config`
(KOD_WRITE_ENVOY_GATEWAY_CONFIG=1) rewrites the file instead of failing on drift."""

from __future__ import annotations

import json
import os

import pytest
import yaml

import eg as egmod
import staticconfig
from names import REPO, TOKEN
from harness.checks import served_discovery
from harness.constants import DISCOVERY, DOCS, HOST, WASM
from harness import client
from harness.envoy import Envoy

EG_ENV = "single"
SHIPPED = REPO / "envoy" / "envoy-gateway.yaml"


@pytest.fixture
def generated(single, fake, app) -> str:
    ports = {single.port: staticconfig.LISTENER_PORT, single.eg.admin_port: staticconfig.ADMIN_PORT,
             fake.port: staticconfig.API_PORT, app.port: staticconfig.APP_PORT}
    boot = staticconfig.to_static(single.eg.config_dump(), ports)
    header = staticconfig.HEADER.format(version=egmod.VERSION.lstrip("v"), ca=staticconfig.SA_CA,
                                        token=staticconfig.TOKEN_FILE, wasm=staticconfig.WASM_FILE)
    # keys sorted: Envoy dumps Struct fields (metadata, log formats) in map order, which varies
    return header + yaml.safe_dump(boot, sort_keys=True, width=120)


def test_no_drift(generated):
    if os.environ.get("KOD_WRITE_ENVOY_GATEWAY_CONFIG"):
        SHIPPED.write_text(generated)
    assert SHIPPED.is_file(), "run `make envoy-gateway-config`"
    assert SHIPPED.read_text() == generated, "envoy/envoy-gateway.yaml drifted: run `make envoy-gateway-config`"


def _replace(node, old, new):
    if isinstance(node, dict):
        return {k: _replace(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace(v, old, new) for v in node]
    return new if node == old else node


def test_it_serves_in_plain_envoy(tmp_path, pki, fake):
    cfg = yaml.safe_load(SHIPPED.read_text())
    token = tmp_path / "token"
    token.write_text(TOKEN)
    for old, new in [(staticconfig.SA_CA, str(pki.ca_cert)), (staticconfig.TOKEN_FILE, str(token)),
                     (staticconfig.WASM_FILE, str(WASM)), (staticconfig.API_PORT, fake.port),
                     (staticconfig.LISTENER_PORT, 0), (staticconfig.ADMIN_PORT, 0), (19003, 0)]:
        cfg = _replace(cfg, old, new)
    cfg.pop("admin")  # the harness sets its own (--admin-address-path)
    cfg["admin"] = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}
    fake.reset()
    envoy = Envoy(cfg, tmp_path / "envoy").start(timeout=60)
    try:
        listeners = json.loads(envoy.admin_get("/listeners?format=json")[1])["listener_statuses"]
        (port,) = [l["local_address"]["socket_address"]["port_value"] for l in listeners if l["name"] == "oidc/eg/http"]
        for path in DOCS:
            r = client.get(port, path, host=HOST)
            assert r.status == 200, (path, r.status, r.body[:200])
            want = served_discovery(fake, f"https://{HOST}/openid/v1/jwks") if path == DISCOVERY else fake.jwks_body()
            assert r.body == want and r.header("etag"), path
        assert client.get(port, "/api/v1/secrets", host=HOST).status == 404
        assert all(rec.header_all("authorization") == [f"Bearer {TOKEN}"] for rec in fake.requests)
        assert fake.requests
    finally:
        envoy.stop()
