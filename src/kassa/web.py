"""Pieces every router uses: documented problem responses and strict query strings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam

from kassa.errors import PROBLEM_JSON, FieldError, ValidationFailed

_PROBLEM_SCHEMA: dict[str, Any] = {
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
    400: "Malformed request",
    401: "Missing, invalid or expired bearer token",
    404: "No such object (or not yours)",
    409: "Conflict with the object's current state",
    413: "Request body too large",
    422: "Validation error",
    429: "Too many requests",
}


def problem_responses(
    *statuses: int, codes: Mapping[int, Sequence[str]] | None = None
) -> dict[int | str, dict[str, Any]]:
    """Problem-document responses for `statuses`; `codes` names the `code` values a status
    may carry (listed in its description and as the schema's enum)."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        schema: dict[str, Any] = _PROBLEM_SCHEMA
        description = _DESCRIPTIONS.get(status, "Error")
        named = list((codes or {}).get(status, ()))
        if named:
            properties: dict[str, Any] = dict(_PROBLEM_SCHEMA["properties"])
            properties["code"] = {"type": "string", "enum": named}
            schema = {**_PROBLEM_SCHEMA, "properties": properties}
            description += " (" + ", ".join(f"`{code}`" for code in named) + ")"
        responses[status] = {
            "description": description,
            "content": {PROBLEM_JSON: {"schema": schema}},
        }
    return responses


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
    unknown = sorted({key for key in request.query_params if key not in allowed})
    if unknown:
        raise ValidationFailed([FieldError(key, "unknown query parameter") for key in unknown])


reject_unknown_query: DependsParam = Depends(_reject_unknown_query)
