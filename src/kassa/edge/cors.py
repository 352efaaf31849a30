"""CORS is off unless `KASSA_CORS_ORIGINS` lists the browser origins that may call the API.

Clients authenticate with a bearer token, never a cookie, so credentials stay off; the
headers a client sends and reads are the contract's own.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from kassa.errors import problem_response

ALLOWED_METHODS = ["GET", "POST", "DELETE"]
ALLOWED_HEADERS = [
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "Kassa-Mode",
    "X-Request-ID",
]
EXPOSED_HEADERS = [
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "Retry-After",
    "X-Request-ID",
    "Idempotent-Replayed",
    "WWW-Authenticate",
]
PREFLIGHT_MAX_AGE_SECONDS = 600


def cors_options(origins: list[str]) -> dict[str, Any]:
    """Keyword arguments for Starlette's CORSMiddleware."""
    return {
        "allow_origins": origins,
        "allow_methods": ALLOWED_METHODS,
        "allow_headers": ALLOWED_HEADERS,
        "expose_headers": EXPOSED_HEADERS,
        "allow_credentials": False,
        "max_age": PREFLIGHT_MAX_AGE_SECONDS,
    }


class ProblemCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, with a refused preflight answered as a problem document."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        refused = bytes(response.body).decode("utf-8", "replace")  # "Disallowed CORS origin"
        return problem_response(
            status=response.status_code,
            code="cors_preflight_refused",
            detail=f"{refused}.",
            headers={"Vary": "Origin"},
        )
