"""The per-client-IP rate limit over /api: headers, 429 problems, exempt service endpoints and
which address counts when X-Forwarded-For is present."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from kassa.app import create_app
from tests.conftest import Api, unique_email

RATE_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")
SERVICE_PATHS = ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json")
LIMITED_PATH = "/api/auth/profile"  # cheap: answers 401 without a token, still rate limited


def client_from(api: Api, peer: str) -> httpx.AsyncClient:
    """Another client on the same app state (same limiter storage), seen from `peer`."""
    app = create_app(container=api.container)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(peer, 40000)), base_url="http://kassa.test"
    )


async def exhaust(client: httpx.AsyncClient, times: int, **kwargs: Any) -> list[httpx.Response]:
    return [await client.get(LIMITED_PATH, **kwargs) for _ in range(times)]


async def test_api_response_carries_ratelimit_headers(api_factory: Callable[..., Any]) -> None:
    api: Api = await api_factory(rate_limit="5/minute")
    response = await api.client.get(LIMITED_PATH)
    assert response.status_code == 401
    assert response.headers["ratelimit-limit"] == "5"
    assert response.headers["ratelimit-remaining"] == "4"
    assert 1 <= int(response.headers["ratelimit-reset"]) <= 60


async def test_ratelimit_remaining_decreases_with_each_request(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(rate_limit="5/minute")
    responses = await exhaust(api.client, 5)
    assert [int(r.headers["ratelimit-remaining"]) for r in responses] == [4, 3, 2, 1, 0]


async def test_successful_api_responses_carry_ratelimit_headers(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(rate_limit="50/minute")
    response = await api.client.post(
        "/api/auth/register",
        json={"name": "R", "email": "rl-ok@example.com", "password": "correct horse battery"},
    )
    assert response.status_code in {201, 409}
    assert all(h in response.headers for h in RATE_HEADERS)


async def test_error_api_responses_carry_ratelimit_headers(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(rate_limit="50/minute", max_body_bytes=2048)
    responses = [
        await api.client.get("/api/no-such-route"),
        await api.client.delete("/api/payments"),
        await api.client.post(
            "/api/auth/register", content=b"{", headers={"Content-Type": "application/json"}
        ),
        await api.client.post(
            "/api/auth/register",
            content=b" " * 4096,
            headers={"Content-Type": "application/json"},
        ),
    ]
    assert [r.status_code for r in responses] == [404, 405, 400, 413]
    for response in responses:
        assert all(h in response.headers for h in RATE_HEADERS), response.headers


async def test_request_over_the_limit_is_a_429_rate_limited_problem(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(rate_limit="3/minute")
    await exhaust(api.client, 3)
    response = await api.client.get(LIMITED_PATH)
    assert response.status_code == 429
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == "rate_limited"
    assert body["status"] == 429
    assert {"type", "title", "detail"} <= body.keys()


async def test_429_carries_retry_after_and_ratelimit_headers(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(rate_limit="3/minute")
    await exhaust(api.client, 3)
    response = await api.client.get(LIMITED_PATH)
    assert response.status_code == 429
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert response.headers["ratelimit-limit"] == "3"
    assert response.headers["ratelimit-remaining"] == "0"
    assert 1 <= int(response.headers["ratelimit-reset"]) <= 60


async def test_limit_applies_across_all_api_routes(api_factory: Callable[..., Any]) -> None:
    api: Api = await api_factory(rate_limit="3/minute")
    await api.client.get("/api/auth/profile")
    await api.client.get("/api/transactions")
    await api.client.post("/api/auth/login", json={"email": "a@example.com", "password": "x"})
    response = await api.client.get("/api/payments/anything")
    assert response.status_code == 429


async def test_429_does_not_reach_the_route(api_factory: Callable[..., Any]) -> None:
    api: Api = await api_factory(rate_limit="1/minute")
    body = {"name": "R", "email": unique_email(), "password": "correct horse battery"}
    await api.client.get(LIMITED_PATH)
    response = await api.client.post("/api/auth/register", json=body)
    assert response.status_code == 429
    # The register call above never ran: a fresh limiter lets the same email register.
    fresh: Api = await api_factory(rate_limit="5/minute")
    again = await fresh.client.post("/api/auth/register", json=body)
    assert again.status_code == 201, again.text


@pytest.mark.parametrize("path", SERVICE_PATHS)
async def test_service_endpoint_is_not_rate_limited(
    api_factory: Callable[..., Any], path: str
) -> None:
    api: Api = await api_factory(rate_limit="2/minute")
    await exhaust(api.client, 3)  # the /api budget is spent
    responses = [await api.client.get(path) for _ in range(5)]
    assert [r.status_code for r in responses] == [200] * 5


@pytest.mark.parametrize("path", SERVICE_PATHS)
async def test_service_endpoint_carries_no_ratelimit_headers(
    api_factory: Callable[..., Any], path: str
) -> None:
    api: Api = await api_factory(rate_limit="2/minute")
    response = await api.client.get(path)
    assert response.status_code == 200
    assert not any(h in response.headers for h in RATE_HEADERS)


async def test_docs_static_assets_are_not_rate_limited(api_factory: Callable[..., Any]) -> None:
    api: Api = await api_factory(rate_limit="1/minute")
    await exhaust(api.client, 2)
    for _ in range(3):
        response = await api.client.get("/docs-static/swagger-ui.css")
        assert response.status_code == 200
        assert "ratelimit-limit" not in response.headers


async def test_two_client_ips_are_counted_separately(api_factory: Callable[..., Any]) -> None:
    api: Api = await api_factory(rate_limit="2/minute")
    async with (
        client_from(api, "198.51.100.1") as first,
        client_from(api, "198.51.100.2") as second,
    ):
        await exhaust(first, 2)
        assert (await first.get(LIMITED_PATH)).status_code == 429
        response = await second.get(LIMITED_PATH)
        assert response.status_code == 401
        assert response.headers["ratelimit-remaining"] == "1"


async def test_x_forwarded_for_is_ignored_without_trusted_proxies(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(rate_limit="3/minute")
    async with client_from(api, "198.51.100.10") as client:
        for i in range(3):
            await client.get(LIMITED_PATH, headers={"X-Forwarded-For": f"192.0.2.{i}"})
        response = await client.get(LIMITED_PATH, headers={"X-Forwarded-For": "192.0.2.99"})
    assert response.status_code == 429


async def test_x_forwarded_for_is_ignored_from_an_untrusted_peer(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(rate_limit="3/minute", trusted_proxies="10.0.0.0/8")
    async with client_from(api, "198.51.100.11") as client:
        for i in range(3):
            await client.get(LIMITED_PATH, headers={"X-Forwarded-For": f"192.0.2.{i}"})
        response = await client.get(LIMITED_PATH, headers={"X-Forwarded-For": "192.0.2.99"})
    assert response.status_code == 429


async def test_clients_behind_a_trusted_proxy_are_counted_separately(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(rate_limit="2/minute", trusted_proxies="10.0.0.0/8")
    async with client_from(api, "10.1.2.3") as proxy:
        await exhaust(proxy, 2, headers={"X-Forwarded-For": "192.0.2.1"})
        blocked = await proxy.get(LIMITED_PATH, headers={"X-Forwarded-For": "192.0.2.1"})
        other = await proxy.get(LIMITED_PATH, headers={"X-Forwarded-For": "192.0.2.2"})
    assert blocked.status_code == 429
    assert other.status_code == 401


async def test_rotating_forged_x_forwarded_for_behind_a_trusted_proxy_is_still_limited(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(rate_limit="3/minute", trusted_proxies="10.0.0.0/8")
    statuses = []
    async with client_from(api, "10.0.0.5") as proxy:
        for i in range(6):
            # The client forges the left part; the proxy appends the address it really saw.
            forged = f"203.0.113.{i}, 10.9.9.{i}"
            xff = f"{forged}, 192.0.2.50"
            response = await proxy.get(LIMITED_PATH, headers={"X-Forwarded-For": xff})
            statuses.append(response.status_code)
    assert statuses == [401, 401, 401, 429, 429, 429]


async def test_right_most_untrusted_hop_is_used_through_a_chain_of_trusted_proxies(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(rate_limit="2/minute", trusted_proxies="10.0.0.0/8,172.16.0.1")
    async with client_from(api, "10.0.0.5") as proxy:
        # client 192.0.2.60 → edge proxy 172.16.0.1 → inner proxy 10.0.0.5 → kassa
        xff = {"X-Forwarded-For": "198.18.0.1, 192.0.2.60, 172.16.0.1"}
        await exhaust(proxy, 2, headers=xff)
        blocked = await proxy.get(LIMITED_PATH, headers=xff)
        spoofed_left = await proxy.get(
            LIMITED_PATH, headers={"X-Forwarded-For": "198.18.0.2, 192.0.2.60, 172.16.0.1"}
        )
        other_client = await proxy.get(
            LIMITED_PATH, headers={"X-Forwarded-For": "192.0.2.61, 172.16.0.1"}
        )
    assert blocked.status_code == 429
    assert spoofed_left.status_code == 429
    assert other_client.status_code == 401


async def test_multiple_x_forwarded_for_headers_are_read_in_order(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(rate_limit="1/minute", trusted_proxies="10.0.0.0/8")
    async with client_from(api, "10.0.0.5") as proxy:
        first = await proxy.get(
            LIMITED_PATH,
            headers=[("X-Forwarded-For", "203.0.113.1"), ("X-Forwarded-For", "192.0.2.70")],
        )
        second = await proxy.get(
            LIMITED_PATH,
            headers=[("X-Forwarded-For", "203.0.113.2"), ("X-Forwarded-For", "192.0.2.70")],
        )
    assert first.status_code == 401
    assert second.status_code == 429


async def test_trusted_proxy_without_x_forwarded_for_is_limited_as_itself(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(rate_limit="1/minute", trusted_proxies="10.0.0.0/8")
    async with client_from(api, "10.0.0.5") as proxy:
        await proxy.get(LIMITED_PATH)
        response = await proxy.get(LIMITED_PATH)
    assert response.status_code == 429
