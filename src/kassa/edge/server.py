"""What `kassa serve` hands to uvicorn: the HTTP parser with a capped request head, and the
TLS context (TLS 1.2 or newer only).

Both are named by import path in the server's configuration, so every worker process builds
its own.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path

import h11
import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol

from kassa.errors import PROBLEM_JSON, TYPE_BASE

# The request line and every header together; past this the parser stops reading (h11 keeps
# at most this much of an unfinished request head in memory).
MAX_REQUEST_HEAD_BYTES = 64 * 1024
HTTP_PROTOCOL = "kassa.edge.server:ProblemH11Protocol"


class ProblemH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, answering requests the parser refuses with a problem document:
    431 `headers_too_large` past `MAX_REQUEST_HEAD_BYTES`, 400 `bad_request` otherwise."""

    def send_400_response(self, msg: str) -> None:
        buffered = len(self.conn.trailing_data[0])
        limit = self.config.h11_max_incomplete_event_size or MAX_REQUEST_HEAD_BYTES
        if buffered > limit:
            status, code = 431, "headers_too_large"
            detail = f"The request line and headers exceed {limit} bytes."
        else:
            status, code, detail = 400, "bad_request", "The HTTP request is malformed."
        body = orjson.dumps(
            {
                "type": TYPE_BASE + code,
                "title": HTTPStatus(status).phrase,
                "status": status,
                "detail": detail,
                "code": code,
            }
        )
        headers = [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"connection", b"close"),
        ]
        response = h11.Response(
            status_code=status, headers=headers, reason=HTTPStatus(status).phrase.encode()
        )
        for event in (response, h11.Data(data=body), h11.EndOfMessage()):
            output = self.conn.send(event)
            if output:
                self.transport.write(output)
        self.transport.close()


def tls_context(config: Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """uvicorn's context from the certificate and key, refusing anything older than TLS 1.2."""
    context = default()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


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
