"""Pieces every router uses: documented problem responses, strict query strings (only
known parameters, each at most once, holding no control characters) and ids parsed from the
path.

Annotations here are evaluated when a function is defined (no `from __future__ import
annotations`): `path_id` builds a dependency whose path parameter's name is its argument,
which FastAPI could not resolve from a string annotation.
"""

import uuid
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.params import Depends as DependsParam

from kassa.auth.deps import CurrentPrincipal
from kassa.db import parse_id
from kassa.errors import FieldError, KassaError, ValidationFailed
from kassa.openapi import problem_responses
from kassa.text import text_problem

__all__ = ["id_or_not_found", "path_id", "problem_responses", "reject_unknown_query"]


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


def id_or_not_found(raw: str, not_found: Callable[[], KassaError]) -> uuid.UUID:
    """`raw` as an id, or `not_found` raised: a malformed id names nothing the caller owns, so
    it is answered like an unknown one (404), never 422 or 500."""
    parsed = parse_id(raw)
    if parsed is None:
        raise not_found()
    return parsed


def path_id(name: str, not_found: Callable[[], KassaError]) -> DependsParam:
    """A dependency that hands the route the `{name}` path parameter as a `uuid.UUID`, or
    answers 404 with `not_found`'s problem document when it is malformed. It depends on the
    caller's principal so that, as for any other id, an unauthenticated request gets its 401
    before anything is said about the id."""

    async def parse(
        _principal: CurrentPrincipal,
        raw: Annotated[str, Path(alias=name, title=name.replace("_", " ").title())],
    ) -> uuid.UUID:
        return id_or_not_found(raw, not_found)

    dependency: DependsParam = Depends(parse)
    return dependency
