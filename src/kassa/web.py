"""Pieces every router uses: documented problem responses and strict query strings."""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam

from kassa.errors import FieldError, ValidationFailed
from kassa.openapi import problem_responses

__all__ = ["problem_responses", "reject_unknown_query"]


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
