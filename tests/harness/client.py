"""A plain HTTP/1.1 client for tests: sends the method, path and headers exactly as given
(no normalisation of ``..``, ``//`` or ``*``, no implicit headers besides what is asked)."""

from __future__ import annotations

import http.client
import ssl
from dataclasses import dataclass

from .constants import HOST


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def header_names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def raw(self) -> str:
        """Status line, headers and body as one text (for leak checks)."""
        head = "\n".join(f"{k}: {v}" for k, v in self.headers)
        return f"{self.status}\n{head}\n\n{self.text}"


class _TLSConnection(http.client.HTTPSConnection):
    """HTTPS to ``address`` with SNI ``sni`` (a gateway picks its filter chain by SNI)."""

    def __init__(self, address: str, port: int, sni: str, context: ssl.SSLContext, timeout: float):
        super().__init__(address, port, timeout=timeout, context=context)
        self._sni = sni

    def connect(self):
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self._sni)


def request(port: int, path: str, *, method: str = "GET", host: str | None = HOST,
            headers: list[tuple[str, str]] | dict[str, str] | None = None, body: bytes | None = None,
            timeout: float = 10, address: str = "127.0.0.1", tls_ca: str | None = None) -> Response:
    """``tls_ca``: speak TLS, SNI ``host``, trusting only this CA file."""
    if tls_ca is None:
        conn = http.client.HTTPConnection(address, port, timeout=timeout)
    else:
        conn = _TLSConnection(address, port, host, ssl.create_default_context(cafile=tls_ca), timeout)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            conn.putheader("Host", host)
        items = headers.items() if isinstance(headers, dict) else (headers or [])
        for k, v in items:
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, list(r.getheaders()), data)
    finally:
        conn.close()


def get(port: int, path: str, **kw) -> Response:
    return request(port, path, method="GET", **kw)


def head(port: int, path: str, **kw) -> Response:
    return request(port, path, method="HEAD", **kw)
