"""No answer redirects to a host taken from the request, or downgrades to http: a trailing
slash is not redirected away (Starlette's default builds that redirect from the Host header),
it is a 404 problem document like any other unknown path."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import RouteContext, iter_route_contexts
from starlette.routing import Mount

from kassa.app import create_app
from kassa.container import build_container
from tests.conftest import make_settings, register_user

EVIL = "evil.example"
HOSTILE_HEADERS = {
    "Host": EVIL,
    "X-Forwarded-Host": EVIL,
    "X-Forwarded-Proto": "http",
    "Forwarded": f"host={EVIL};proto=http",
}
_PARAM = re.compile(r"\{[^}]+\}")


@pytest.fixture
async def app_and_client(database_url: str) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    container = build_container(make_settings(database_url))
    app = create_app(container=container)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="https://kassa.test") as client:
        yield app, client
    await container.aclose()


def _requests(route: RouteContext) -> list[tuple[str, str]]:
    """Every (method, path) worth trying for a route: as written and with the trailing slash
    added or removed."""
    assert route.path is not None, route
    if isinstance(route.original_route, Mount):
        paths = [route.path, route.path + "/", route.path + "/swagger-ui.css/"]
        return [("GET", p) for p in paths]
    path = _PARAM.sub(str(uuid.uuid4()), route.path)
    variants = [path, path.rstrip("/") if path.endswith("/") else path + "/"]
    return [(m, p) for m in sorted(route.methods or {"GET"}) for p in variants]


# Server-rendered pages answer their forms with 303 to a path of their own (POST, redirect,
# GET); a relative location names no host, so none can be taken from the request.
_PAGES = ("/checkout/", "/dashboard")


def _assert_not_redirected_to_request_host(response: httpx.Response, label: str) -> None:
    for name, value in response.headers.multi_items():
        assert EVIL not in value.lower(), f"{label}: {name}: {value}"
    location = response.headers.get("location")
    if location is not None:
        assert not location.lower().startswith("http://"), f"{label}: {location}"
        assert not location.startswith("//"), f"{label}: {location}"
    path = label.rsplit(" ", 1)[-1]
    if path.startswith(_PAGES) and location is not None and location.startswith("/"):
        return
    assert not 300 <= response.status_code < 400, f"{label}: {response.status_code}"


async def test_no_route_redirects_to_a_hostile_host_or_to_http(
    app_and_client: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = app_and_client
    user = await register_user(client)
    tried: set[str] = set()
    for route in iter_route_contexts(app.routes):
        for method, path in _requests(route):
            for auth in ({}, user.headers):
                response = await client.request(
                    method,
                    path,
                    headers={**HOSTILE_HEADERS, **auth},
                    json={} if method in {"POST", "PUT", "PATCH"} else None,
                )
                _assert_not_redirected_to_request_host(response, f"{method} {path}")
        tried.add(_PARAM.sub("{}", route.path or ""))
    # Every documented path was walked (and the service routes beside them).
    documented = {_PARAM.sub("{}", p) for p in app.openapi()["paths"]}
    assert documented <= tried
    assert {"/healthz", "/metrics", "/docs", "/docs-static"} <= tried


@pytest.mark.parametrize(
    "path",
    [
        "/api/payments/",
        "/api/transactions/",
        "/api/webhooks/",
        "/api/events/",
        "/api/auth/profile/",
        "/healthz/",
        "/docs/",
        "/openapi.json/",
        "/docs-static",
        "/api//payments/",
    ],
)
async def test_a_trailing_slash_is_a_404_problem_not_a_redirect(
    app_and_client: tuple[FastAPI, httpx.AsyncClient], path: str
) -> None:
    _, client = app_and_client
    user = await register_user(client)
    response = await client.get(path, headers={**HOSTILE_HEADERS, **user.headers})
    assert response.status_code == 404, (path, response.status_code, response.headers)
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"
    _assert_not_redirected_to_request_host(response, path)


async def test_a_trailing_slash_on_a_post_is_refused_without_running_it(
    app_and_client: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    # The redirect a client follows with a 307 re-sends the body (a card number) in clear.
    _, client = app_and_client
    user = await register_user(client)
    body = {
        "amount": 1050,
        "currency": "USD",
        "payment_method": "credit_card",
        "details": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2099, "cvc": "1"},
    }
    response = await client.post(
        "/api/payments/", json=body, headers={**HOSTILE_HEADERS, **user.headers}
    )
    assert response.status_code == 404
    assert "location" not in response.headers
