"""Caps on what a request may be: JSON nesting, header count and size, body size — in the
app, and against a real `kassa serve` for the floods the HTTP parser itself must stop."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from kassa.edge.jsondepth import MAX_JSON_DEPTH, json_depth
from tests.acceptance.conftest import Server
from tests.conftest import Api, payment_body, register_user

RATE_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()
    return body


# JSON nesting ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "depth"),
    [
        (b"{}", 1),
        (b"[]", 1),
        (b'"no brackets"', 0),
        (b'{"a": [1, {"b": [[]]}]}', 5),
        (b'{"a": "[[[[{{{{"}', 1),
        (b'{"a": "\\"[[[[", "b": ["\\\\"]}', 2),
        (b"[" * 100 + b"]" * 100, 100),
    ],
)
def test_json_depth_counts_nesting_outside_strings(body: bytes, depth: int) -> None:
    assert json_depth(body) == depth


async def test_json_nested_past_the_cap_is_a_400_problem(api: Api) -> None:
    body = json.dumps(nested(MAX_JSON_DEPTH + 1))
    response = await api.client.post(
        "/api/auth/register", content=body, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 400, "json_too_deep")


async def test_json_nested_to_the_cap_reaches_validation(api: Api) -> None:
    body = json.dumps(nested(MAX_JSON_DEPTH))
    response = await api.client.post(
        "/api/auth/register", content=body, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 422, "validation_error")


@pytest.mark.parametrize("content_type", ["application/json", None, "text/plain"])
async def test_pathologically_deep_json_is_refused_not_a_500(
    api: Api, content_type: str | None
) -> None:
    # 30 000 levels in 60 kB: a recursive parser would run out of stack on this.
    body = b"[" * 30_000 + b"]" * 30_000
    headers = {"Content-Type": content_type} if content_type else {}
    response = await api.client.post("/api/auth/login", content=body, headers=headers)
    problem = assert_problem(response, 400, "json_too_deep")
    assert "[[" not in json.dumps(problem)
    assert all(h in response.headers for h in RATE_HEADERS)


async def test_deep_json_in_payment_metadata_is_refused_and_the_key_stays_free(api: Api) -> None:
    user = await register_user(api.client)
    headers = {**user.headers, "Idempotency-Key": "deep-metadata-1"}
    deep = payment_body(metadata={"k": "v"}) | {"extra": nested(200)}
    refused = await api.client.post("/api/payments", json=deep, headers=headers)
    assert_problem(refused, 400, "json_too_deep")
    created = await api.client.post("/api/payments", json=payment_body(), headers=headers)
    assert created.status_code == 201, created.text


async def test_brackets_inside_strings_do_not_count(api: Api) -> None:
    password = "[" * 60 + "{" * 60 + '\\"]'
    user = await register_user(api.client, password=password)
    assert user.access_token


# Headers ---------------------------------------------------------------------------------


async def test_more_than_100_headers_is_a_431_problem(api: Api) -> None:
    headers = [(f"X-Flood-{i}", "x") for i in range(150)]
    response = await api.client.get("/api/auth/profile", headers=headers)
    body = assert_problem(response, 431, "headers_too_large")
    assert "x-flood" not in json.dumps(body).lower()
    assert all(h in response.headers for h in RATE_HEADERS)
    assert "x-request-id" in response.headers


async def test_headers_over_32_kib_in_all_are_a_431_problem(api: Api) -> None:
    response = await api.client.get("/healthz", headers={"X-Big": "a" * 40_000})
    assert_problem(response, 431, "headers_too_large")


async def test_ordinary_headers_pass(api: Api) -> None:
    headers = [(f"X-Ok-{i}", "x" * 100) for i in range(60)]
    assert (await api.client.get("/healthz", headers=headers)).status_code == 200


async def test_an_oversize_bearer_token_is_a_431_not_a_crash(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(user_rate_limit="5/minute")
    response = await api.client.get(
        "/api/auth/profile", headers={"Authorization": "Bearer " + "e" * 40_000}
    )
    assert_problem(response, 431, "headers_too_large")


# Against a real server -------------------------------------------------------------------


def raw_exchange(server: Server, request: bytes) -> bytes:
    """Send `request` as is and read until the server closes (a reset after the answer, when
    the server stopped reading a flood, still leaves the answer read)."""
    answer = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        try:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server answered and closed while the flood was still being sent
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    return answer


def parse(answer: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.acceptance.conftest import launch, stop

    server = launch(tmp_path_factory.mktemp("caps"))
    yield server
    stop(server.process)


@pytest.mark.acceptance
@pytest.mark.timeout(300)
@pytest.mark.parametrize("size", [100_000, 3_000_000], ids=["100kB", "3MB"])
def test_one_huge_header_to_a_real_server_is_a_431_problem(real_server: Server, size: int) -> None:
    request = b"GET /api/auth/profile HTTP/1.1\r\nHost: kassa\r\nX-Big: " + b"a" * size
    status, headers, body = parse(raw_exchange(real_server, request + b"\r\n\r\n"))
    assert status == 431
    assert headers["content-type"] == "application/problem+json"
    assert body["code"] == "headers_too_large"
    assert httpx.get(real_server.base_url + "/healthz").status_code == 200


@pytest.mark.acceptance
@pytest.mark.timeout(300)
def test_a_flood_of_headers_to_a_real_server_is_a_431_problem(real_server: Server) -> None:
    flood = b"".join(b"X-Flood-%d: x\r\n" % i for i in range(5_000))
    request = b"GET /api/auth/profile HTTP/1.1\r\nHost: kassa\r\n" + flood + b"\r\n"
    status, headers, body = parse(raw_exchange(real_server, request))
    assert status == 431
    assert headers["content-type"] == "application/problem+json"
    assert body["code"] == "headers_too_large"
    assert httpx.get(real_server.base_url + "/healthz").status_code == 200


@pytest.mark.acceptance
@pytest.mark.timeout(300)
def test_a_malformed_request_to_a_real_server_is_a_400_problem(real_server: Server) -> None:
    status, headers, body = parse(raw_exchange(real_server, b"NONSENSE\r\n\r\n"))
    assert status == 400
    assert headers["content-type"] == "application/problem+json"
    assert body["code"] == "bad_request"


@pytest.mark.acceptance
@pytest.mark.timeout(300)
def test_an_oversize_body_to_a_real_server_is_a_413_problem(real_server: Server) -> None:
    response = httpx.post(
        real_server.base_url + "/api/auth/register",
        content=b"{" + b" " * 200_000 + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert_problem(response, 413, "payload_too_large")


@pytest.mark.acceptance
@pytest.mark.timeout(300)
def test_deep_json_to_a_real_server_is_a_400_problem(real_server: Server) -> None:
    response = httpx.post(
        real_server.base_url + "/api/auth/login",
        content=b"[" * 20_000 + b"]" * 20_000,
        headers={"Content-Type": "application/json"},
    )
    assert_problem(response, 400, "json_too_deep")


@pytest.mark.acceptance
@pytest.mark.timeout(300)
def test_a_real_server_sends_no_server_banner(real_server: Server) -> None:
    for path in ("/healthz", "/api/auth/profile", "/nope"):
        assert "server" not in httpx.get(real_server.base_url + path).headers


@pytest.mark.acceptance
@pytest.mark.timeout(300)
def test_a_real_server_does_not_believe_x_forwarded_for_from_loopback(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from tests.acceptance.conftest import launch, stop

    server = launch(tmp_path_factory.mktemp("xff"), rate_limit="3/minute")
    try:
        statuses = [
            httpx.get(
                server.base_url + "/api/auth/profile",
                headers={"X-Forwarded-For": f"203.0.113.{i}", "X-Forwarded-Proto": "https"},
            )
            for i in range(5)
        ]
    finally:
        stop(server.process)
    assert [r.status_code for r in statuses] == [401, 401, 401, 429, 429]
    assert not any("strict-transport-security" in r.headers for r in statuses)
    access = [json.loads(line) for line in server.stdout().splitlines()]
    assert {e["client_ip"] for e in access if e.get("path") == "/api/auth/profile"} == {"127.0.0.1"}


@pytest.mark.acceptance
@pytest.mark.timeout(300)
def test_a_head_under_the_cap_with_its_body_in_the_same_packet_is_not_refused(
    real_server: Server,
) -> None:
    """The cap counts the head only: a 30 kB head with a 60 kB body sent in one go reaches
    the app (which answers 422 for the bad fields), not the parser's 431."""
    body = json.dumps({"email": "x" * 60_000, "password": "p"}).encode()
    head = (
        b"POST /api/auth/login HTTP/1.1\r\nHost: kassa\r\nContent-Type: application/json\r\n"
        b"X-Padding: " + b"p" * 30_000 + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
    )
    status, _headers, problem = parse(raw_exchange(real_server, head + body))
    assert status == 422
    assert problem["code"] == "validation_error"


@pytest.mark.acceptance
@pytest.mark.timeout(300)
def test_each_request_on_a_kept_alive_connection_has_its_own_head_budget(
    real_server: Server,
) -> None:
    """Three requests with 25 kB heads on one connection: 75 kB of heads in all, each under
    the cap, so every one is answered."""
    one = b"GET /healthz HTTP/1.1\r\nHost: kassa\r\nX-Padding: " + b"p" * 25_000 + b"\r\n\r\n"
    answer = b""
    with socket.create_connection(("127.0.0.1", real_server.port), timeout=10) as sock:
        sock.sendall(one * 3)
        while answer.count(b'{"status":"ok"}') < 3 and (chunk := sock.recv(65536)):
            answer += chunk
    assert answer.count(b"HTTP/1.1 200 OK") == 3
    assert b"HTTP/1.1 431" not in answer  # a status line, not "431" inside a request id
