"""Every error leaves kassa as one RFC 9457 problem document.

`KassaError` carries a stable `code`, an HTTP status and a message that is safe to show:
never a stack trace, SQL, a secret or card data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kassa.db import database_unavailable
from kassa.text import text_problem

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://kassa.dev/problems/"

log = structlog.get_logger("kassa.errors")


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


@dataclass
class KassaError(Exception):
    """A failure with a safe, client-facing message."""

    code: str
    status: int
    detail: str
    title: str | None = None
    errors: Sequence[FieldError] = ()
    headers: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


class NotFound(KassaError):
    def __init__(self, what: str = "resource") -> None:
        super().__init__("not_found", 404, f"No such {what}.", title="Not Found")


class InvalidState(KassaError):
    def __init__(self, detail: str) -> None:
        super().__init__("invalid_state", 409, detail, title="Invalid State")


class ValidationFailed(KassaError):
    def __init__(self, errors: Sequence[FieldError], detail: str | None = None) -> None:
        super().__init__(
            "validation_error",
            422,
            detail or "The request is not valid; see errors.",
            title="Validation Error",
            errors=errors,
        )


class Unauthorized(KassaError):
    def __init__(self, detail: str = "Authentication is required.") -> None:
        super().__init__(
            "unauthorized",
            401,
            detail,
            title="Unauthorized",
            headers={"WWW-Authenticate": "Bearer"},
        )


def problem_response(
    *,
    status: int,
    code: str,
    detail: str,
    title: str | None = None,
    errors: Sequence[FieldError] = (),
    headers: Mapping[str, str] | None = None,
    instance: str | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": TYPE_BASE + code,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = [{"field": e.field, "message": e.message} for e in errors]
    return Response(
        content=orjson.dumps(body),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=dict(headers or {}),
    )


def _field_name(loc: Sequence[int | str]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:]
    # Tagged unions add the tag to the location; the client did not write it.
    parts = [p for p in parts if p not in {"credit_card", "debit_card", "digital_wallet"}]
    # An object's keys (metadata) are the client's text: one that may not be stored is not
    # shown either. A key's own error is the object's ("metadata"), its message says "key".
    if "[key]" in parts:
        parts = parts[: max(parts.index("[key]") - 1, 0)]
    parts = ["*" if text_problem(p, card_numbers=True) else p for p in parts]
    name = ".".join(parts)
    return name or "body"


def _validation_message(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "field required"
    if kind == "json_invalid":
        return "body is not valid JSON"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if "[key]" in error.get("loc", ()):
        return f"key: {message}"
    return message


def _location(error: Mapping[str, Any]) -> Sequence[int | str]:
    loc: Sequence[int | str] = error.get("loc", ())
    # A tagged union's tag error is located at the object; the field at fault is the tag.
    ctx = error.get("ctx") or {}
    discriminator = ctx.get("discriminator") if isinstance(ctx, Mapping) else None
    if isinstance(discriminator, str) and discriminator.strip("'").isidentifier():
        return (*loc, discriminator.strip("'"))
    return loc


def validation_errors(raw: Sequence[Mapping[str, Any]]) -> list[FieldError]:
    """Pydantic's errors as client-facing fields, never echoing the input (it may be a card)."""
    seen: set[tuple[str, str]] = set()
    out: list[FieldError] = []
    for error in raw:
        item = (_field_name(_location(error)), _validation_message(error))
        if item not in seen:
            seen.add(item)
            out.append(FieldError(*item))
    return out


async def _kassa_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, KassaError)
    return error_response(exc)


async def _request_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = validation_errors(exc.errors())
    if any(e.message == "body is not valid JSON" for e in errors):
        return problem_response(
            status=400,
            code="malformed_json",
            detail="The request body is not valid JSON.",
            title="Malformed JSON",
        )
    return problem_response(
        status=422,
        code="validation_error",
        detail="The request is not valid; see errors.",
        title="Validation Error",
        errors=errors,
    )


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    code = _HTTP_CODES.get(status, "http_error")
    detail = {
        404: "No such resource.",
        405: f"{request.method} is not allowed here.",
        413: "The request body is too large.",
    }.get(status, HTTPStatus(status).description or HTTPStatus(status).phrase)
    return problem_response(
        status=status,
        code=code,
        detail=detail,
        headers=dict(exc.headers or {}),
    )


RETRY_AFTER_SECONDS = 2


def error_response(exc: Exception) -> Response:
    """The answer to `exc` outside the routes' handlers: its problem document for a
    `KassaError`, else 500 (503 when the database is out of reach)."""
    if isinstance(exc, KassaError):
        return problem_response(
            status=exc.status,
            code=exc.code,
            detail=exc.detail,
            title=exc.title,
            errors=exc.errors,
            headers=exc.headers,
        )
    return _internal_error(exc)


def _internal_error(exc: Exception) -> Response:
    """500, or 503 `service_unavailable` with Retry-After when the database is out of reach
    (nothing was done that the client cannot retry). The traceback goes to the log
    (redacted), never to the client."""
    if database_unavailable(exc):
        log.warning("database_unavailable", error_type=type(exc).__name__)
        return problem_response(
            status=503,
            code="service_unavailable",
            detail="The service is briefly unavailable; retry shortly.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    log.error("unhandled_error", exc_info=exc, error_type=type(exc).__name__)
    return problem_response(
        status=500,
        code="internal_error",
        detail="An internal error occurred. It has been logged.",
    )


async def _unhandled(request: Request, exc: Exception) -> Response:
    # Only reached when a middleware outside UnhandledErrorMiddleware fails.
    return _internal_error(exc)


class UnhandledErrorMiddleware:
    """The innermost middleware: an unexpected exception becomes a 500 problem document here,
    inside the request's context, so its log line keeps the `request_id` and the response
    still passes the outer middlewares (X-Request-ID, RateLimit-* headers, access log, metrics).
    Starlette's own catch-all sits outside every middleware and would lose all of that."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:  # too late for a problem document; let the server drop the connection
                raise
            await _internal_error(exc)(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(KassaError, _kassa_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(Exception, _unhandled)
