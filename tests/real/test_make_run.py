"""`make run KUBE=real`: the same demo as `make run` on a real local kube-apiserver. It serves
both documents from it, and the token command it prints works."""

from __future__ import annotations

import json
import re
import subprocess

import jwt

from harness import REPO_ROOT, client, kube
from harness.constants import DEFAULT_ISSUER, DISCOVERY, JWKS
from harness.make_run import run_local, stop_cleanly


def test_make_run_real_serves_from_a_real_api_server(ports_free, wasm):
    with run_local("--kube", "real", timeout=90) as (proc, out):
        assert f"kube-apiserver       https://127.0.0.1:6443 (real, {kube.VERSION};" in out
        jwks = client.get(8080, JWKS)
        assert jwks.status == 200 and json.loads(jwks.body)["keys"]
        discovery = client.get(8080, DISCOVERY)
        assert discovery.status == 200
        assert json.loads(discovery.body)["issuer"] == DEFAULT_ISSUER
        # the printed TokenRequest command, run as printed, gives a token of the account
        line = next(ln.strip() for ln in out.splitlines() if ln.strip().startswith("curl -s --cacert"))
        token = subprocess.run(line, shell=True, cwd=REPO_ROOT, capture_output=True, text=True,
                               timeout=30).stdout.strip()
        assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", token), token
        keys = jwt.PyJWKSet.from_json(jwks.text)
        claims = jwt.decode(token, keys[jwt.get_unverified_header(token)["kid"]],
                            algorithms=["RS256"], options={"verify_aud": False},
                            issuer=DEFAULT_ISSUER)
        assert claims["sub"] == "system:serviceaccount:kube-oidc-discovery:reader"
        stop_cleanly(proc, timeout=30)
