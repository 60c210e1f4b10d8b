"""A fake kube-apiserver serving the two OIDC discovery documents over TLS.

It behaves like the real one where the filter can tell: bearer-token authentication with the
exact 401 ``Status`` body, compact JSON documents with the real content types and
``Cache-Control``, ``Audit-Id``/``Date``/priority-and-fairness headers, ``Status`` bodies for
403/404/406, RBAC before routing (a service account may only GET the documents), go-restful's
``Accept`` matching (406), HTTP/1.1 keep-alive. tests/real/test_fidelity.py holds it to a real
kube-apiserver. It adds a few distinctive headers (``Server:
fake-kube-apiserver``, ``Set-Cookie``) so tests can prove they are not relayed.

Tests control it: the expected token, a failure mode per path or for every path
(ok | fail(status) | hang | garbage | oversize | custom | delay), key rotation, stop/start on the
same port. It records every request (method, path, headers, body) and counts requests per path
as they arrive (before a ``delay``), TLS handshakes and failed handshakes.

CLI, to run one by hand (`make run`, the tests and the benchmark use the class)::

    PYTHONPATH=tests python -m harness.fake_apiserver --port 6443 --cert server.crt --key server.key \
        --token-file .run/token/token

The token file is read on every request, so a rotated token is accepted at once.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .constants import DEFAULT_ISSUER, DISCOVERY, DOCS, JWKS, MEDIA_TYPES

# The one media type each route produces (pkg/routes/openidmetadata.go).

DEFAULT_JWKS_URI = "https://10.0.0.1:6443/openid/v1/jwks"
CACHE_CONTROL = "public, max-age=3600"
SERVER_HEADER = "fake-kube-apiserver"
SET_COOKIE = "fake-apiserver-session=c00k1e-from-upstream; Path=/; HttpOnly"

MAX_HANG_S = 60.0

FORBIDDEN_USER = "system:serviceaccount:istio-system:gateway"


def accept_matches(accept: str, produces: str) -> bool:
    """go-restful's ``Route.matchesAccept`` (v2, as in the API server): the first ``Accept``
    header, split on commas, parameters cut at ``;``, spaces trimmed; an empty header means
    ``*/*``. A route matches ``*/*`` or its exact media type, nothing else (no ``type/*``)."""
    for item in (accept or "*/*").split(","):
        mime = item.split(";", 1)[0].strip(" ")
        if mime in ("*/*", produces):
            return True
    return False

_REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
    405: "MethodNotAllowed", 429: "TooManyRequests", 500: "InternalError",
    502: "InternalError", 503: "ServiceUnavailable", 504: "Timeout",
}


def compact(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def status_body(code: int, message: str, reason: str | None = None, details: bool = True,
                accept: str = "") -> bytes:
    """A Kubernetes ``Status`` object as the API server writes it: compact with a newline when the
    request's Accept negotiates JSON, else (WriteRawJSON's fallback) indented without one."""
    obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason or _REASONS.get(code, "Unknown")}
    if details:
        obj["details"] = {}
    obj["code"] = code
    if negotiates_json(accept):
        return compact(obj) + b"\n"
    return json.dumps(obj, indent=2).encode()


def negotiates_json(accept: str) -> bool:
    """Whether the API server's serializer negotiation finds JSON for this Accept (YAML and
    protobuf, which it also offers, are not modelled)."""
    return any(item.split(";", 1)[0].strip() in ("", "*/*", "application/*", "application/json")
               for item in (accept or "*/*").split(","))


def _b64url_uint(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_jwk(bits: int = 2048) -> dict:
    """A realistic service-account signing key as the API server publishes it: RSA public key,
    ``kid`` = base64url(SHA-256(PKIX DER of the public key))."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pub = key.public_key()
    der = pub.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    kid = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
    numbers = pub.public_numbers()
    return {"use": "sig", "kty": "RSA", "kid": kid, "alg": "RS256",
            "n": _b64url_uint(numbers.n), "e": _b64url_uint(numbers.e)}


@dataclass
class Mode:
    """What the server does with a request for a path.

    kind: ok | fail | hang | garbage | oversize | custom | delay
    status: the status of ``fail`` (and of ``custom``)
    body/content_type: the answer of ``custom``
    delay_s: ``delay`` answers like ``ok`` after this many seconds
    """

    kind: str = "ok"
    status: int = 500
    body: bytes = b""
    content_type: str = "application/json"
    delay_s: float = 0.0

    KINDS = ("ok", "fail", "hang", "garbage", "oversize", "custom", "delay")

    def __post_init__(self):
        if self.kind not in self.KINDS:
            raise ValueError(f"unknown mode {self.kind!r}")


@dataclass
class Recorded:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    time: float = field(default_factory=time.monotonic)

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def header_names(self) -> list[str]:
        return [k.lower() for k, _ in self.headers]


class _Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, handler, fake: "FakeApiServer"):
        self.fake = fake
        super().__init__(addr, handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        ctx = self.fake._ssl_context()
        tls = ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return tls, addr

    def handle_error(self, request, client_address):  # quiet: clients hang up all the time
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = SERVER_HEADER
    sys_version = ""
    timeout = 30

    def setup(self):
        fake: FakeApiServer = self.server.fake
        fake._track(self.request, True)
        self.request.settimeout(10)
        try:
            self.request.do_handshake()
        except (ssl.SSLError, OSError) as e:
            fake._handshake_failed(e)
            self.close_connection = True
            self.handshake_ok = False
        else:
            fake._handshake_ok()
            self.handshake_ok = True
        self.request.settimeout(self.timeout)
        super().setup()

    def handle(self):
        if self.handshake_ok:
            try:
                super().handle()
            except (OSError, ssl.SSLError):
                pass

    def finish(self):
        try:
            super().finish()
        except (OSError, ssl.SSLError):
            pass
        self.server.fake._track(self.request, False)

    def log_message(self, fmt, *args):
        if self.server.fake.verbose:
            sys.stderr.write("fake-apiserver: " + (fmt % args) + "\n")

    def do_GET(self):
        self.server.fake._handle(self, head=False)

    def do_HEAD(self):
        self.server.fake._handle(self, head=True)

    def _other(self):
        self.server.fake._handle(self, head=False)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _other


class FakeApiServer:
    """A threaded fake kube-apiserver on 127.0.0.1 (ephemeral port unless ``port`` is given)."""

    def __init__(self, cert: Path | str, key: Path | str, token: str | None = None,
                 token_file: Path | str | None = None, host: str = "127.0.0.1", port: int = 0,
                 issuer: str = DEFAULT_ISSUER, jwks_uri: str = DEFAULT_JWKS_URI,
                 keys: list[dict] | None = None, verbose: bool = False):
        if token is None and token_file is None:
            raise ValueError("a token or a token file is required")
        self.host = host
        self.port = port
        self.verbose = verbose
        self._lock = threading.RLock()
        self._cert = (str(cert), str(key))
        self._ctx: ssl.SSLContext | None = None
        self._token = token
        self._token_file = Path(token_file) if token_file else None
        self._still_valid: set[str] = set()
        self.issuer = issuer
        self.jwks_uri = jwks_uri
        self._keys = keys if keys is not None else [make_jwk()]
        self._global_mode = Mode()
        self._path_modes: dict[str, Mode] = {}
        self.date_override: str | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._conns: set = set()
        self._release = threading.Event()
        self.history: list[Recorded] = []  # every request since creation; reset() keeps it
        self.reset()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "FakeApiServer":
        with self._lock:
            if self._server is not None:
                return self
            self._release = threading.Event()
            try:
                srv = _Server((self.host, self.port), _Handler, self)
            except OSError as e:
                raise OSError(f"fake kube-apiserver cannot listen on {self.host}:{self.port}: {e}") from e
            self._server = srv
            self.port = srv.server_address[1]
            self._thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                                            name=f"fake-apiserver-{self.port}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stops listening and drops every open connection (keep-alive ones included)."""
        with self._lock:
            srv, self._server = self._server, None
            thread, self._thread = self._thread, None
            self._release.set()
            conns = list(self._conns)
        if srv is None:
            return
        srv.shutdown()
        srv.server_close()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.close()
            except OSError:
                pass
        if thread is not None:
            thread.join(5)

    @property
    def running(self) -> bool:
        return self._server is not None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # ------------------------------------------------------------------ controls
    @property
    def token(self) -> str:
        if self._token_file is not None:
            try:
                return self._token_file.read_text().strip()
            except OSError:
                return ""
        return self._token or ""

    def set_token(self, token: str, *still_valid: str) -> None:
        """Expects ``token`` from now on; ``still_valid`` tokens are accepted too, as the real
        server accepts a rotated-out token until it expires."""
        with self._lock:
            self._token, self._token_file = token, None
            self._still_valid = set(still_valid)

    def set_mode(self, kind: str = "ok", path: str | None = None, status: int = 500,
                 body: bytes | str = b"", content_type: str = "application/json",
                 delay_s: float = 0.0) -> None:
        """Sets the mode of one path, or with ``path=None`` the mode of every path (clearing
        per-path modes)."""
        mode = Mode(kind, status, body.encode() if isinstance(body, str) else body, content_type,
                    delay_s)
        with self._lock:
            if path is None:
                self._global_mode = mode
                self._path_modes.clear()
            else:
                self._path_modes[path] = mode
            if kind != "hang":
                # release requests hanging under the previous mode
                self._release.set()
                self._release = threading.Event()

    def mode_for(self, path: str) -> Mode:
        with self._lock:
            return self._path_modes.get(path, self._global_mode)

    @property
    def keys(self) -> list[dict]:
        with self._lock:
            return list(self._keys)

    def set_keys(self, keys: list[dict]) -> None:
        with self._lock:
            self._keys = list(keys)

    def rotate_keys(self) -> list[dict]:
        """Adds a new key in front and drops the oldest beyond two, like a key rotation."""
        with self._lock:
            self._keys = [make_jwk()] + self._keys[:1]
            return list(self._keys)

    # ------------------------------------------------------------------ documents
    def discovery_body(self) -> bytes:
        return compact({
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })

    def jwks_body(self) -> bytes:
        return compact({"keys": self.keys})

    def document(self, path: str) -> tuple[bytes, str]:
        if path == DISCOVERY:
            return self.discovery_body(), MEDIA_TYPES[path]
        if path == JWKS:
            return self.jwks_body(), MEDIA_TYPES[path]
        raise KeyError(path)

    # ------------------------------------------------------------------ records
    def reset(self) -> None:
        """Forgets recorded requests and counters."""
        with self._lock:
            self.requests: list[Recorded] = []
            self.counts: dict[str, int] = {}
            self.handshakes = 0
            self.handshake_failures = 0
            self.handshake_errors: list[str] = []

    def count(self, path: str | None = None) -> int:
        with self._lock:
            if path is None:
                return sum(self.counts.values())
            return self.counts.get(path, 0)

    def requests_for(self, path: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def last(self, path: str | None = None) -> Recorded | None:
        with self._lock:
            reqs = self.requests if path is None else [r for r in self.requests if r.path == path]
            return reqs[-1] if reqs else None

    # ------------------------------------------------------------------ internals
    def _ssl_context(self) -> ssl.SSLContext:
        with self._lock:
            if self._ctx is None:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.minimum_version = ssl.TLSVersion.TLSv1_2
                ctx.load_cert_chain(*self._cert)
                ctx.set_alpn_protocols(["http/1.1"])
                self._ctx = ctx
            return self._ctx

    def _track(self, conn, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def _handshake_ok(self) -> None:
        with self._lock:
            self.handshakes += 1

    def _handshake_failed(self, err: Exception) -> None:
        with self._lock:
            self.handshake_failures += 1
            self.handshake_errors.append(str(err))

    def _date(self) -> str:
        return self.date_override or formatdate(usegmt=True)

    def _send(self, h: _Handler, status: int, body: bytes, content_type: str, head: bool,
              cache_control: str, extra: list[tuple[str, str]] = ()) -> None:
        h.send_response_only(status)
        h.send_header("Audit-Id", str(uuid.uuid4()))
        h.send_header("Cache-Control", cache_control)
        h.send_header("Content-Type", content_type)
        h.send_header("X-Kubernetes-Pf-Flowschema-Uid", str(uuid.uuid4()))
        h.send_header("X-Kubernetes-Pf-Prioritylevel-Uid", str(uuid.uuid4()))
        h.send_header("Server", SERVER_HEADER)
        h.send_header("Set-Cookie", SET_COOKIE)
        for k, v in extra:
            h.send_header(k, v)
        h.send_header("Date", self._date())
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)
        h.wfile.flush()

    def _handle(self, h: _Handler, head: bool) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length > 0 else b""
        raw_path = h.path
        path = raw_path.split("?", 1)[0]
        rec = Recorded(h.command, raw_path, list(h.headers.items()), body)
        with self._lock:
            self.requests.append(rec)
            self.history.append(rec)
            self.counts[raw_path] = self.counts.get(raw_path, 0) + 1
            release = self._release
        mode = self.mode_for(path)
        private = "no-cache, private"
        accept = h.headers.get("Accept") or ""

        if mode.kind == "hang":
            release.wait(MAX_HANG_S)
            h.close_connection = True
            return
        if mode.kind == "delay":
            if release.wait(mode.delay_s):
                h.close_connection = True  # stopped meanwhile
                return
        if mode.kind == "fail":
            msg = {
                401: "Unauthorized",
                403: f'forbidden: User "{FORBIDDEN_USER}" cannot get path "{path}"',
                404: "the server could not find the requested resource",
                429: "Too many requests, please try again later.",
            }.get(mode.status, "Internal error occurred: etcdserver: request timed out")
            self._send(h, mode.status, status_body(mode.status, msg, accept=accept), "application/json",
                       head, private)
            return
        if mode.kind == "garbage":
            page = (b"<!DOCTYPE html><html><head><title>Sign in</title></head>"
                    b"<body><h1>Corporate proxy login</h1><form>fake-kube-apiserver</form></body></html>")
            self._send(h, 200, page, "text/html; charset=utf-8", head, "no-cache")
            return
        if mode.kind == "oversize":
            pad = "A" * 4096
            keys = [{"use": "sig", "kty": "RSA", "kid": f"k{i}", "alg": "RS256", "n": pad, "e": "AQAB"}
                    for i in range(300)]
            big = compact({"issuer": self.issuer, "jwks_uri": self.jwks_uri, "keys": keys})
            assert len(big) > (1 << 20)
            self._send(h, 200, big, "application/json", head, CACHE_CONTROL)
            return
        if mode.kind == "custom":
            self._send(h, mode.status, mode.body, mode.content_type, head, CACHE_CONTROL)
            return

        # ok: authenticate, then route like the API server
        auth = h.headers.get("Authorization") or ""
        expected = self.token
        valid = {f"Bearer {tok}" for tok in (expected, *self._still_valid) if tok}
        if auth not in valid:
            self._send(h, 401, status_body(401, "Unauthorized", details=False, accept=accept),
                       "application/json", head, private)
            return
        # RBAC before routing: the service account may `get` the two documents (v1.37's role
        # also lists each with one trailing slash, and go-restful serves those) and, through
        # system:discovery, the API group list; any other verb or path is forbidden.
        asked = path
        if path.endswith("/") and path[:-1] in DOCS:
            path = path[:-1]
        if not (h.command == "GET" and (path in DOCS or path.startswith("/apis/"))):
            verb = h.command.lower()
            msg = f'forbidden: User "{FORBIDDEN_USER}" cannot {verb} path "{asked}"'
            self._send(h, 403, status_body(403, msg, accept=accept), "application/json", head, private)
            return
        if path not in DOCS:  # an API group that does not exist: Go's plain-text 404
            self._send(h, 404, b"404 page not found\n", "text/plain; charset=utf-8", head, private)
            return
        doc, ctype = self.document(path)
        if not accept_matches(accept, ctype):
            msg = f"406: Not Acceptable\n\nAvailable representations: {ctype}"
            self._send(h, 406, status_body(406, msg, "NotAcceptable", accept=accept),
                       "application/json", head, private)
            return
        self._send(h, 200, doc, ctype, head, CACHE_CONTROL)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="fake kube-apiserver serving the OIDC discovery documents")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=6443)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--token-file", help="expected bearer token, re-read on every request")
    g.add_argument("--token", help="expected bearer token")
    ap.add_argument("--issuer", default=DEFAULT_ISSUER)
    ap.add_argument("--jwks-uri", default=DEFAULT_JWKS_URI)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    fake = FakeApiServer(args.cert, args.key, token=args.token, token_file=args.token_file,
                         host=args.host, port=args.port, issuer=args.issuer,
                         jwks_uri=args.jwks_uri, verbose=args.verbose)
    try:
        fake.start()
    except OSError as e:
        print(e, file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"fake kube-apiserver listening on https://{fake.address}", flush=True)
    stop.wait()
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
