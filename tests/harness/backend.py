"""A tiny plain-HTTP backend on 127.0.0.1 standing in for the application behind the gateway:
answers every request 200 with a distinctive body and records what it received, so tests can
prove that a request for another host passed through the filter untouched."""

from __future__ import annotations

import socketserver
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from .fake_apiserver import Recorded

BODY = b"hello from the application backend\n"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "app-backend"
    sys_version = ""

    def log_message(self, fmt, *args):
        pass

    def _any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        self.server.backend._record(Recorded(self.command, self.path, list(self.headers.items()), body))
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("X-Backend", "app")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(BODY)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _any


class _Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class Backend:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._lock = threading.Lock()
        self.requests: list[Recorded] = []
        self._server = _Server((host, port), _Handler)
        self._server.backend = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> "Backend":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _record(self, rec: Recorded) -> None:
        with self._lock:
            self.requests.append(rec)

    def reset(self) -> None:
        with self._lock:
            self.requests = []

    def last(self) -> Recorded | None:
        with self._lock:
            return self.requests[-1] if self.requests else None
