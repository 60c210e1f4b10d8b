"""The API server's audit log of the two documents: who asked for which, answered what (the
install tiers, tests/istioreal and tests/envoygatewayreal, start their kube-apiserver with
audit_args)."""

from __future__ import annotations

import json
from pathlib import Path

from .constants import DOCS, JWKS

# the API server's audit policy: the two document paths only, as metadata (who asked for what)
AUDIT_POLICY = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
                "rules": [{"level": "Metadata", "nonResourceURLs": list(DOCS)}, {"level": "None"}]}


def audit_args(workdir: Path) -> list[str]:
    """kube-apiserver flags auditing every request for the two documents into
    ``workdir``/audit.log (the log backend's default mode, blocking: an answered request is
    logged)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "audit-policy.json").write_text(json.dumps(AUDIT_POLICY))
    return ["--audit-policy-file", str(workdir / "audit-policy.json"), "--audit-log-path", str(workdir / "audit.log")]


def _requests(workdir: Path) -> list[dict]:
    """Each audited request's last event, in order, from the audit log audit_args writes (a
    refused credential's last stage is ResponseStarted)."""
    p = workdir / "audit.log"
    last: dict[str, dict] = {}
    for line in p.read_text().splitlines() if p.exists() else []:
        e = json.loads(line)
        last[e["auditID"]] = e
    return list(last.values())


def document_requests(workdir: Path) -> list[tuple[str, str, int]]:
    """(user, path, status) of every request for a document that reached the API server, in
    order (user "" when the credential was refused)."""
    return [(e.get("user", {}).get("username", ""), e["requestURI"], e.get("responseStatus", {}).get("code", 0))
            for e in _requests(workdir)]


def document_credentials(workdir: Path) -> list[str]:
    """The credential ids (`JTI=<jti>` of a bound service-account token: user.extra
    authentication.kubernetes.io/credential-id) of every request for a document the API server
    authenticated, in order."""
    return [cid for e in _requests(workdir)
            for cid in e.get("user", {}).get("extra", {}).get("authentication.kubernetes.io/credential-id", [])]


def assert_served_from(kube, get, user: str, prefix: str = "") -> None:
    """Through a gateway (``get``: path -> response): both documents answered 200 at ``prefix`` +
    their paths, the JWKS byte for byte the API server ``kube``'s; and its audit log: what the
    gateway asked for with ``user``'s credential, both documents, each answered 200."""
    for path in DOCS:
        r = get(prefix + path)
        assert r.status == 200, (prefix + path, r.status, r.body[:300])
    assert get(prefix + JWKS).body == kube.request("GET", JWKS, admin=True)[2]
    asked = {r for r in document_requests(kube.dir) if r[0] == user}
    assert asked == {(user, path, 200) for path in DOCS}
