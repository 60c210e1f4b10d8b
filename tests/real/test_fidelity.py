"""The fake kube-apiserver (tests/harness/fake_apiserver.py) held to the real one: for the same
requests both answer the same status, content type, cache-control and error body (and the
documents have the same members). The fake
stays for fast and failure-mode tests; this is what keeps its assumptions true. (It once did no
content negotiation, so every test passed while the real server answered the filter's JWKS
request with 406.)"""

from __future__ import annotations

import json
import re

import pytest

from harness.constants import DISCOVERY, JWKS
from harness.fake_apiserver import FakeApiServer
from harness.kube import https_request

SA = "sa"  # the test service account's token
# (id, method, path, request headers, credential, the status the real API server answers)
CASES = [
    ("discovery", "GET", DISCOVERY, {}, SA, 200),
    ("jwks", "GET", JWKS, {}, SA, 200),
    ("discovery accept json", "GET", DISCOVERY, {"Accept": "application/json"}, SA, 200),
    ("jwks accept jwk-set", "GET", JWKS, {"Accept": "application/jwk-set+json"}, SA, 200),
    ("jwks accept json (the old filter's request)", "GET", JWKS, {"Accept": "application/json"}, SA, 406),
    ("jwks accept type wildcard", "GET", JWKS, {"Accept": "application/*"}, SA, 406),
    ("jwks accept list", "GET", JWKS, {"Accept": "application/json, application/jwk-set+json;q=0.5"}, SA, 200),
    ("jwks accept any", "GET", JWKS, {"Accept": "text/html, */*;q=0.1"}, SA, 200),
    ("jwks accept with params", "GET", JWKS, {"Accept": "application/jwk-set+json; charset=utf-8"}, SA, 200),
    ("discovery accept jwk-set", "GET", DISCOVERY, {"Accept": "application/jwk-set+json"}, SA, 406),
    ("no token", "GET", JWKS, {}, None, 401),
    ("bad token", "GET", DISCOVERY, {}, "not-a-token", 401),
    ("head", "HEAD", JWKS, {}, SA, 403),
    ("post", "POST", DISCOVERY, {}, SA, 403),
    # v1.37's discovery role lists each path with one trailing slash too (v1.20's did not)
    ("trailing slash", "GET", JWKS + "/", {}, SA, 200),
    ("discovery trailing slash", "GET", DISCOVERY + "/", {}, SA, 200),
    ("two trailing slashes", "GET", JWKS + "//", {}, SA, 403),
    ("post trailing slash", "POST", JWKS + "/", {}, SA, 403),
    ("other path", "GET", "/metrics", {}, SA, 403),
    ("other path, accept html", "GET", "/metrics", {"Accept": "text/html"}, SA, 403),
    ("no token, accept jwk-set", "GET", JWKS, {"Accept": "application/jwk-set+json"}, None, 401),
    ("unknown api group", "GET", "/apis/nonexistent.example.com", {}, SA, 404),
]
IDS = [c[0] for c in CASES]


def _ask(port: int, ca, method: str, path: str, headers: dict, token: str | None):
    status, h, body = https_request(port, ca, method, path, token=token, headers=headers)
    if status == 200:
        body = sorted(json.loads(body))  # the documents' members (their values are per cluster)
    else:
        # error bodies byte for byte, but for the user a 403 names
        body = re.sub(rb'system:serviceaccount:[a-z0-9-]+:[a-z0-9-]+', b"USER", body)
    return {"status": status, "content-type": h.get("content-type"),
            "cache-control": h.get("cache-control"), "body": body}


@pytest.fixture(scope="module")
def sa_token(kube):
    kube.create_service_account("fidelity", "reader")
    return kube.token("fidelity", "reader")


@pytest.fixture(scope="module")
def fake(pki, sa_token):
    f = FakeApiServer(pki.server_cert, pki.server_key, token=sa_token).start()
    yield f
    f.stop()


def _credential(cred, sa_token):
    return sa_token if cred == SA else cred


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_real_api_server_answers_as_recorded(kube, pki, sa_token, case):
    _, method, path, headers, cred, status = case
    got = _ask(kube.port, pki.ca_cert, method, path, headers, _credential(cred, sa_token))
    assert got["status"] == status, got


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fake_answers_as_the_real_one(kube, fake, pki, sa_token, case):
    _, method, path, headers, cred, _ = case
    token = _credential(cred, sa_token)
    real = _ask(kube.port, pki.ca_cert, method, path, headers, token)
    assert _ask(fake.port, pki.ca_cert, method, path, headers, token) == real
