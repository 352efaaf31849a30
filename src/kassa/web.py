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

from kassa.auth.deps import confirmed_principal, refuse_out_of_scope
from kassa.db import parse_id
from kassa.errors import FieldError, KassaError, ValidationFailed
from kassa.openapi import problem_responses
from kassa.text import text_problem

__all__ = [
    "id_or_not_found",
    "path_id",
    "problem_responses",
    "query_map",
    "query_map_parameter",
    "reject_unknown_query",
]

# The attribute that marks a dependency reading `name[KEY]` parameters (see `query_map`).
_QUERY_MAP = "kassa_query_map"
# The attribute a route keeps its known query parameters in (see `_known_query`).
_KNOWN_QUERY = "kassa_known_query"


def _map_key(name: str, key: str) -> str | None:
    """KEY of a `name[KEY]` parameter, or None when `key` is not one."""
    if key.startswith(name + "[") and key.endswith("]"):
        return key[len(name) + 1 : -1]
    return None


def _known_query(route: object) -> tuple[frozenset[str], frozenset[str]]:
    """The query parameter names `route` declares, and the names of its `query_map`s
    (walked once per route, then kept on it)."""
    known: tuple[frozenset[str], frozenset[str]] | None = getattr(route, _KNOWN_QUERY, None)
    if known is not None:
        return known
    dependant = getattr(route, "dependant", None)
    allowed: set[str] = set()
    maps: set[str] = set()
    if dependant is not None:
        stack = [dependant]
        while stack:
            current = stack.pop()
            allowed.update(p.alias for p in current.query_params)
            if (name := getattr(current.call, _QUERY_MAP, None)) is not None:
                maps.add(name)
            stack.extend(current.dependencies)
    known = (frozenset(allowed), frozenset(maps))
    if route is not None:
        setattr(route, _KNOWN_QUERY, known)
    return known


async def _reject_unknown_query(request: Request) -> None:
    if not request.scope.get("query_string"):
        return  # nothing to check (most requests)
    allowed, maps = _known_query(request.scope.get("route"))
    errors: list[FieldError] = []
    seen: set[str] = set()
    for key, value in request.query_params.multi_items():
        if text_problem(key, card_numbers=True) is not None:
            errors.append(FieldError("query", "a parameter name must be printable text"))
        elif key not in allowed and not any(_map_key(m, key) is not None for m in maps):
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


def guarded(scope: str) -> DependsParam:
    """An /api router's one dependency: `reject_unknown_query`, then `scope` required of an
    API key (for a GET, `read`; see `refuse_out_of_scope`) — one dependency, not two, for
    the price each costs every request."""

    async def guard(request: Request) -> None:
        await _reject_unknown_query(request)
        refuse_out_of_scope(request, scope)

    dependency: DependsParam = Depends(guard)
    return dependency


def query_map(name: str) -> DependsParam:
    """A dependency that hands the route its `name[KEY]=VALUE` query parameters as a dict
    (`metadata[order_id]=1001` → `{"order_id": "1001"}`): filters whose keys are the
    client's. `reject_unknown_query` lets them through (each KEY at most once; its text
    checked like any parameter's); the route checks the keys and values themselves.
    Document them as one `deepObject` parameter (`query_map_parameter`)."""

    async def parse(request: Request) -> dict[str, str]:
        found: dict[str, str] = {}
        for key, value in request.query_params.multi_items():
            if (inner := _map_key(name, key)) is not None:
                found[inner] = value
        return found

    setattr(parse, _QUERY_MAP, name)
    dependency: DependsParam = Depends(parse)
    return dependency


def query_map_parameter(name: str, description: str) -> dict[str, object]:
    """The OpenAPI parameter of a `query_map`, for a route's `openapi_extra`."""
    return {
        "parameters": [
            {
                "name": name,
                "in": "query",
                "required": False,
                "style": "deepObject",
                "explode": True,
                "description": description,
                "schema": {"type": "object", "additionalProperties": {"type": "string"}},
            }
        ]
    }


def id_or_not_found(raw: str, not_found: Callable[[], KassaError]) -> uuid.UUID:
    """`raw` as an id, or `not_found` raised: a malformed id names nothing the caller owns, so
    it is answered like an unknown one (404), never 422 or 500."""
    parsed = parse_id(raw)
    if parsed is None:
        raise not_found()
    return parsed


def path_id(name: str, not_found: Callable[[], KassaError]) -> DependsParam:
    """A dependency that hands the route the `{name}` path parameter as a `uuid.UUID`, or
    answers 404 with `not_found`'s problem document when it is malformed. As for any other
    id, an unauthenticated request (or one whose session has ended) gets its 401 before
    anything is said about the id; a well-formed id leaves the session check to the route."""

    async def parse(
        request: Request,
        raw: Annotated[str, Path(alias=name, title=name.replace("_", " ").title())],
    ) -> uuid.UUID:
        parsed = parse_id(raw)
        if parsed is None:
            await confirmed_principal(request)
            raise not_found()
        return parsed

    dependency: DependsParam = Depends(parse)
    return dependency
