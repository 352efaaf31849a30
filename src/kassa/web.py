"""Pieces every router uses: documented problem responses and strict query strings (only
known parameters, each at most once, holding no control characters)."""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam

from kassa.errors import FieldError, ValidationFailed
from kassa.openapi import problem_responses
from kassa.text import text_problem

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
