"""What `kassa serve` hands to uvicorn: the HTTP parser with a capped request head, the
TLS context (TLS 1.2 or newer only), and the supervisor of several worker processes; and the
checks that turn a bad address or TLS file into one line on stderr before it starts.

Both are named by import path in the server's configuration, so every worker process builds
its own.
"""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path

import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import Multiprocess

from kassa.errors import PROBLEM_JSON, TYPE_BASE

# The request line and every header together. Past this the request is refused and the
# connection closed: at most this much (and one more read) of a request head is held.
MAX_REQUEST_HEAD_BYTES = 64 * 1024
HTTP_PROTOCOL = "kassa.edge.server:ProblemHttpToolsProtocol"


def _problem(status: int, code: str, detail: str) -> bytes:
    body = orjson.dumps(
        {
            "type": TYPE_BASE + code,
            "title": HTTPStatus(status).phrase,
            "status": status,
            "detail": detail,
            "code": code,
        }
    )
    head = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        f"content-type: {PROBLEM_JSON}",
        f"content-length: {len(body)}",
        "x-content-type-options: nosniff",
        "connection: close",
    ]
    return "\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + body


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (llhttp, in C: a fraction of h11's CPU per request) with
    the request head capped, and the requests the parser refuses answered with a problem
    document: 431 `headers_too_large` past `MAX_REQUEST_HEAD_BYTES`, 400 `bad_request`
    otherwise.

    llhttp itself keeps an unfinished head however long it grows, so the bytes that arrive
    while a head is unfinished are counted here, and a head past the cap is refused."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._in_head = True  # the next bytes belong to a request head
        self._head_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if (
            self._in_head
            and self._head_bytes > MAX_REQUEST_HEAD_BYTES
            and not self.transport.is_closing()
        ):
            self._refuse(
                431,
                "headers_too_large",
                f"The request line and headers exceed {MAX_REQUEST_HEAD_BYTES} bytes.",
            )

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "bad_request", "The HTTP request is malformed.")

    def _refuse(self, status: int, code: str, detail: str) -> None:
        self.transport.write(_problem(status, code, detail))
        self.transport.close()


def tls_context(config: Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """uvicorn's context from the certificate and key, refusing anything older than TLS 1.2."""
    context = default()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def check_listen(host: str, port: int) -> str | None:
    """Why the server cannot listen on `host`:`port` (one line), or None when it can: every
    address the host resolves to is bound (with SO_REUSEADDR, as the server will) and let go."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    for family, kind, proto, _name, address in found:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if family == socket.AF_INET6 and exc.errno == errno.EADDRNOTAVAIL:
                    continue  # IPv6 is off here; the server skips this address too
                reason = exc.strerror or type(exc).__name__
                if exc.errno == errno.EADDRINUSE:
                    reason = "the address is already in use (is another server running?)"
                return f"cannot listen on {host}:{port}: {reason}"
    return None


def check_tls_files(certfile: Path, keyfile: Path) -> str | None:
    """Why the certificate and key cannot serve TLS (one line), or None when they can."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:
        return f"cannot use {certfile} and {keyfile} for TLS: {exc.reason or 'not a PEM pair'}"
    except OSError as exc:
        return f"cannot read the TLS files: {exc.strerror or exc}"
    return None


class DrainingMultiprocess(Multiprocess):
    """uvicorn's supervisor of worker processes, which closes its own copy of the listening
    socket the moment it is told to stop. Each worker closes its copy at SIGTERM and drains
    its in-flight requests; without this, the supervisor's copy would keep the port open and
    new connections would queue for workers that no longer accept them, instead of being
    refused at once (so a load balancer or client goes elsewhere)."""

    def terminate_all(self) -> None:
        for sock in self.sockets:
            sock.close()
        super().terminate_all()
