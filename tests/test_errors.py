"""The HTTP edge: every error is an RFC 9457 problem document, and every response carries a
request id."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from kassa.app import create_app
from tests.conftest import Api, payment_body, register_user

PROBLEM_KEYS = {"type", "title", "status", "detail", "code"}
VALID_REQUEST_ID_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def assert_problem(
    response: httpx.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body.keys() >= PROBLEM_KEYS
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert isinstance(body["type"], str)
    if code is not None:
        assert body["code"] == code
    return body


async def chunks(total: int, size: int = 1000) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        sent += piece
        yield b" " * piece


# Problem documents ------------------------------------------------------------------------


async def test_unknown_route_is_a_404_problem(api: Api) -> None:
    response = await api.client.get("/api/no-such-thing")
    assert_problem(response, 404, "not_found")


async def test_unknown_route_outside_api_is_a_404_problem(api: Api) -> None:
    response = await api.client.get("/nowhere")
    assert_problem(response, 404, "not_found")


async def test_wrong_method_is_a_405_problem(api: Api) -> None:
    response = await api.client.delete("/api/payments")
    body = assert_problem(response, 405, "method_not_allowed")
    assert "DELETE" in body["detail"]


async def test_malformed_json_body_is_a_400_malformed_json_problem(api: Api) -> None:
    response = await api.client.post(
        "/api/auth/register",
        content=b'{"name": "x", "email": ',
        headers={"Content-Type": "application/json"},
    )
    assert_problem(response, 400, "malformed_json")


async def test_malformed_json_problem_does_not_echo_the_body(api: Api) -> None:
    response = await api.client.post(
        "/api/auth/register",
        content=b'{"password": "hunter2-very-secret", ',
        headers={"Content-Type": "application/json"},
    )
    assert_problem(response, 400, "malformed_json")
    assert "hunter2" not in response.text


@pytest.mark.parametrize("body", [[1, 2, 3], "a string", 42, None])
async def test_body_that_is_not_a_json_object_is_a_422_problem(api: Api, body: Any) -> None:
    response = await api.client.post("/api/auth/register", json=body)
    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"]
    assert all({"field", "message"} <= e.keys() for e in problem["errors"])


async def test_json_list_as_payment_body_is_a_422_problem(api: Api) -> None:
    user = await register_user(api.client)
    response = await api.client.post("/api/payments", json=[payment_body()], headers=user.headers)
    assert_problem(response, 422, "validation_error")


async def test_validation_problem_lists_offending_fields(api: Api) -> None:
    response = await api.client.post(
        "/api/auth/register", json={"name": "x", "email": "not-an-email", "password": "short"}
    )
    problem = assert_problem(response, 422, "validation_error")
    fields = {e["field"] for e in problem["errors"]}
    assert {"email", "password"} <= fields


@pytest.mark.parametrize("method", ["cash-4111111111111111", None])
async def test_bad_union_tag_is_reported_under_the_tag_field(api: Api, method: Any) -> None:
    user = await register_user(api.client)
    response = await api.client.post(
        "/api/payments", json=payment_body(method=method, details={}), headers=user.headers
    )
    problem = assert_problem(response, 422, "validation_error")
    assert "payment_method" in {e["field"] for e in problem["errors"]}
    assert "4111111111111111" not in response.text


async def test_oversize_body_with_content_length_is_a_413_problem(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(max_body_bytes=2048)
    response = await api.client.post(
        "/api/auth/register",
        content=b" " * 4096,
        headers={"Content-Type": "application/json"},
    )
    assert_problem(response, 413, "payload_too_large")


async def test_oversize_chunked_body_without_content_length_is_a_413_problem(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(max_body_bytes=2048)
    request = api.client.build_request(
        "POST",
        "/api/auth/register",
        content=chunks(10_000),
        headers={"Content-Type": "application/json"},
    )
    assert "content-length" not in request.headers
    response = await api.client.send(request)
    assert_problem(response, 413, "payload_too_large")


async def test_oversize_chunked_payment_body_is_a_413_problem(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(max_body_bytes=2048)
    user = await register_user(api.client)
    response = await api.client.post(
        "/api/payments",
        content=chunks(10_000),
        headers={**user.headers, "Content-Type": "application/json"},
    )
    assert_problem(response, 413, "payload_too_large")


async def test_oversize_chunked_body_with_idempotency_key_is_a_413_problem(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(max_body_bytes=2048)
    user = await register_user(api.client)
    response = await api.client.post(
        "/api/payments",
        content=chunks(10_000),
        headers={**user.headers, "Content-Type": "application/json", "Idempotency-Key": "k-413"},
    )
    assert_problem(response, 413, "payload_too_large")


async def test_body_at_the_limit_is_accepted(api_factory: Callable[..., Any]) -> None:
    api: Api = await api_factory(max_body_bytes=2048)
    body = b'{"name": "Test", "email": "edge@example.com", "password": "correct horse battery"}'
    padded = body[:-1] + b" " * (2048 - len(body)) + b"}"
    assert len(padded) == 2048
    response = await api.client.post(
        "/api/auth/register", content=padded, headers={"Content-Type": "application/json"}
    )
    assert response.status_code in {201, 409}, response.text


async def test_unhandled_exception_is_a_500_problem_without_internals(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory()
    app = create_app(container=api.container)

    @app.get("/api/explode")
    async def explode() -> None:
        raise RuntimeError("SELECT secret FROM vault WHERE card = 4111111111111111")

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://kassa.test"
    ) as client:
        response = await client.get("/api/explode")
    problem = assert_problem(response, 500, "internal_error")
    text = response.text
    for leak in ("SELECT", "secret", "Traceback", "RuntimeError", "4111", "explode", 'File "'):
        assert leak not in text
    assert set(problem) <= PROBLEM_KEYS | {"instance"}


async def test_unhandled_exception_response_carries_request_id_and_rate_limit_headers(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory()
    app = create_app(container=api.container)

    @app.get("/api/explode")
    async def explode() -> None:
        raise RuntimeError("SELECT secret")

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://kassa.test"
    ) as client:
        response = await client.get("/api/explode", headers={"X-Request-ID": "crash-1"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "crash-1"
    assert "ratelimit-limit" in response.headers


async def test_unknown_payment_id_is_a_404_problem_not_500(api: Api) -> None:
    user = await register_user(api.client)
    for payment_id in ("00000000-0000-0000-0000-000000000000", "not-a-uuid", "1' OR '1'='1"):
        response = await api.client.get(f"/api/payments/{payment_id}", headers=user.headers)
        assert_problem(response, 404)


async def test_missing_token_is_a_401_problem_with_www_authenticate(api: Api) -> None:
    response = await api.client.get("/api/auth/profile")
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].lower().startswith("bearer")


# Request ids ------------------------------------------------------------------------------


def assert_generated_request_id(response: httpx.Response) -> str:
    request_id = response.headers["x-request-id"]
    assert 1 <= len(request_id) <= 128
    assert set(request_id) <= VALID_REQUEST_ID_CHARS
    return request_id


async def test_api_response_carries_a_request_id(api: Api) -> None:
    response = await api.client.post(
        "/api/auth/login", json={"email": "nobody@example.com", "password": "x" * 12}
    )
    assert_generated_request_id(response)


async def test_404_response_carries_a_request_id(api: Api) -> None:
    response = await api.client.get("/api/missing")
    assert response.status_code == 404
    assert_generated_request_id(response)


async def test_healthz_response_carries_a_request_id(api: Api) -> None:
    response = await api.client.get("/healthz")
    assert response.status_code == 200
    assert_generated_request_id(response)


async def test_429_response_carries_a_request_id(api_factory: Callable[..., Any]) -> None:
    api: Api = await api_factory(rate_limit="1/minute")
    await api.client.get("/api/auth/profile")
    response = await api.client.get("/api/auth/profile")
    assert response.status_code == 429
    assert_generated_request_id(response)


async def test_413_response_carries_a_request_id(api_factory: Callable[..., Any]) -> None:
    api: Api = await api_factory(max_body_bytes=2048)
    response = await api.client.post(
        "/api/auth/register", content=b" " * 4096, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert_generated_request_id(response)


async def test_generated_request_ids_are_unique(api: Api) -> None:
    ids = {(await api.client.get("/healthz")).headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


@pytest.mark.parametrize(
    "request_id", ["a", "abc-123_DEF.456", "0" * 128, "req.2024-01-01_x", "-._"]
)
async def test_valid_client_request_id_is_echoed(api: Api, request_id: str) -> None:
    response = await api.client.get("/api/auth/profile", headers={"X-Request-ID": request_id})
    assert response.headers["x-request-id"] == request_id


@pytest.mark.parametrize(
    "request_id",
    [
        "a" * 129,
        "has space",
        "semi;colon",
        "slash/id",
        "résumé".encode(),
        "日本".encode(),
        "",
    ],
    ids=["129-chars", "space", "semicolon", "slash", "latin1-unicode", "cjk-unicode", "empty"],
)
async def test_invalid_client_request_id_is_replaced(api: Api, request_id: str | bytes) -> None:
    response = await api.client.get("/api/auth/profile", headers={"X-Request-ID": request_id})
    echoed = assert_generated_request_id(response)
    sent = request_id if isinstance(request_id, str) else request_id.decode("latin-1")
    assert echoed != sent


async def test_request_id_appears_once_in_the_response(api: Api) -> None:
    response = await api.client.get("/healthz", headers={"X-Request-ID": "once"})
    assert response.headers.get_list("x-request-id") == ["once"]
