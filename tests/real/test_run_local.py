"""`make run KUBE=real`: the same demo as `make run` on a real local kube-apiserver. It serves
both documents from it, and the token command it prints works."""

from __future__ import annotations

import json
import re
import subprocess

import jwt

from e2e.test_run_local import ports_free, run_local, stop_cleanly  # noqa: F401  (fixture)
from harness import REPO_ROOT, client


def test_make_run_real_serves_from_a_real_api_server(ports_free, wasm):  # noqa: F811
    with run_local("--kube", "real", timeout=90) as (proc, out):
        assert "kube-apiserver       https://127.0.0.1:6443 (real, v1.20.2" in out
        jwks = client.get(8080, "/openid/v1/jwks")
        assert jwks.status == 200 and json.loads(jwks.body)["keys"]
        discovery = client.get(8080, "/.well-known/openid-configuration")
        assert discovery.status == 200
        assert json.loads(discovery.body)["issuer"] == "https://kubernetes.default.svc.cluster.local"
        # the printed TokenRequest command, run as printed, gives a token of the account
        line = next(ln.strip() for ln in out.splitlines() if ln.strip().startswith("curl -s --cacert"))
        token = subprocess.run(line, shell=True, cwd=REPO_ROOT, capture_output=True, text=True,
                               timeout=30).stdout.strip()
        assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", token), token
        keys = jwt.PyJWKSet.from_json(jwks.text)
        claims = jwt.decode(token, keys[jwt.get_unverified_header(token)["kid"]],
                            algorithms=["RS256"], options={"verify_aud": False},
                            issuer="https://kubernetes.default.svc.cluster.local")
        assert claims["sub"] == "system:serviceaccount:kube-oidc-discovery:reader"
        stop_cleanly(proc, timeout=30)
