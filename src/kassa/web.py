"""Pieces every router uses: documented problem responses and strict query strings (only
known parameters, each at most once, holding no control characters)."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam

from kassa.errors import PROBLEM_JSON, FieldError, ValidationFailed
from kassa.text import text_problem

_PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
_DESCRIPTIONS = {
    400: (
        "Malformed JSON body: `malformed_json` (not JSON), `json_too_deep` (nested deeper than"
        " 32 levels) or `duplicate_key` (an object repeats a key; `errors` names its path)"
    ),
    401: "Missing, invalid or expired bearer token",
    404: "No such object (or not yours)",
    409: "Conflict with the object's current state",
    413: "Request body too large",
    422: (
        "`validation_error`: the fields at fault are listed under `errors` (among them unknown"
        " or repeated query parameters, control characters in any text, and card numbers in"
        " free text)"
    ),
    429: "Too many requests",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        s: {
            "description": _DESCRIPTIONS.get(s, "Error"),
            "content": {PROBLEM_JSON: {"schema": _PROBLEM_SCHEMA}},
        }
        for s in statuses
    }


async def _reject_unknown_query(request: Request) -> None:
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    allowed: set[str] = set()
    if dependant is not None:
        stack = [dependant]
        while stack:
            current = stack.pop()
            allowed.update(p.alias for p in current.query_params)
            stack.extend(current.dependencies)
    errors: list[FieldError] = []
    seen: set[str] = set()
    for key, value in request.query_params.multi_items():
        if text_problem(key, card_numbers=True) is not None:
            errors.append(FieldError("query", "a parameter name must be printable text"))
        elif key not in allowed:
            errors.append(FieldError(key, "unknown query parameter"))
        elif key in seen:
            # `?type=charge&type=refund` is ambiguous: refused, not settled by the last one.
            errors.append(FieldError(key, "repeated query parameter"))
        elif (problem := text_problem(value)) is not None:
            errors.append(FieldError(key, problem))
        seen.add(key)
    if errors:
        raise ValidationFailed(list(dict.fromkeys(errors)))


reject_unknown_query: DependsParam = Depends(_reject_unknown_query)
