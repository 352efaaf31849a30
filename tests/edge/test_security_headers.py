"""Response headers every answer carries, the Content-Security-Policy of /docs, HSTS behind a
trusted proxy, and CORS (off unless configured)."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from kassa.app import create_app
from tests.conftest import Api, register_user

PATHS = ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/api/auth/profile", "/nope")
RATE_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


def client_from(api: Api, peer: str) -> httpx.AsyncClient:
    app = create_app(container=api.container)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(peer, 40000)), base_url="http://kassa.test"
    )


def directives(policy: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


@pytest.mark.parametrize("path", PATHS)
async def test_every_response_carries_the_security_headers(api: Api, path: str) -> None:
    response = await api.client.get(path)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "content-security-policy" in response.headers
    assert "server" not in response.headers


@pytest.mark.parametrize("path", ["/api/auth/profile", "/api/nope", "/api/transactions"])
async def test_api_responses_are_not_stored_by_caches(api: Api, path: str) -> None:
    response = await api.client.get(path)
    assert response.headers["cache-control"] == "no-store"


async def test_successful_api_response_is_not_stored_by_caches(api: Api) -> None:
    user = await register_user(api.client)
    response = await api.client.get("/api/auth/profile", headers=user.headers)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers.get_list("cache-control") == ["no-store"]


async def test_json_responses_get_a_policy_that_allows_nothing(api: Api) -> None:
    response = await api.client.get("/api/auth/profile")
    policy = directives(response.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]


async def test_docs_policy_allows_its_own_inline_script_by_hash_only(api: Api) -> None:
    response = await api.client.get("/docs")
    assert response.headers.get_list("content-security-policy") == [
        response.headers["content-security-policy"]
    ]
    policy = directives(response.headers["content-security-policy"])
    scripts = re.findall(r"<script>(.*?)</script>", response.text, re.DOTALL)
    assert scripts, "Swagger UI is started by an inline script"
    for script in scripts:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy["script-src"]
    assert "'self'" in policy["script-src"]
    assert "'unsafe-inline'" not in policy["script-src"]
    assert "'unsafe-eval'" not in policy["script-src"]
    assert "'unsafe-inline'" not in policy["style-src"]
    assert policy["connect-src"] == ["'self'"]  # "Try it out" calls this service only
    assert policy["frame-ancestors"] == ["'none'"]


async def test_plain_http_gets_no_strict_transport_security(api: Api) -> None:
    response = await api.client.get("/api/auth/profile")
    assert "strict-transport-security" not in response.headers


async def test_https_said_by_a_trusted_proxy_gets_strict_transport_security(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(trusted_proxies="10.0.0.0/8")
    async with client_from(api, "10.0.0.5") as proxy:
        response = await proxy.get(
            "/healthz", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.1"}
        )
    assert response.headers["strict-transport-security"] == "max-age=63072000"


@pytest.mark.parametrize(
    "proto", ["http", "https, http"], ids=["http", "client-forged-https-then-proxy-http"]
)
async def test_trusted_proxy_saying_http_gets_no_strict_transport_security(
    api_factory: Callable[..., Any], proto: str
) -> None:
    api: Api = await api_factory(trusted_proxies="10.0.0.0/8")
    async with client_from(api, "10.0.0.5") as proxy:
        response = await proxy.get("/healthz", headers={"X-Forwarded-Proto": proto})
    assert "strict-transport-security" not in response.headers


async def test_https_said_by_an_untrusted_peer_is_ignored(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(trusted_proxies="10.0.0.0/8")
    async with client_from(api, "198.51.100.9") as client:
        response = await client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert "strict-transport-security" not in response.headers


# CORS ------------------------------------------------------------------------------------

ORIGIN = "https://shop.example.com"


async def test_cors_is_off_by_default(api: Api) -> None:
    response = await api.client.get("/api/auth/profile", headers={"Origin": ORIGIN})
    assert not any(h.startswith("access-control-") for h in response.headers)
    preflight = await api.client.options(
        "/api/payments",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers


async def test_cors_answers_a_listed_origin(api_factory: Callable[..., Any]) -> None:
    api: Api = await api_factory(cors_origins=f"{ORIGIN}, https://admin.example.com")
    response = await api.client.get("/api/auth/profile", headers={"Origin": ORIGIN})
    assert response.headers["access-control-allow-origin"] == ORIGIN
    exposed = response.headers["access-control-expose-headers"].lower()
    assert all(h in exposed for h in (*RATE_HEADERS, "retry-after", "x-request-id"))
    assert "access-control-allow-credentials" not in response.headers


async def test_cors_preflight_for_a_listed_origin_allows_the_api_headers(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(cors_origins=ORIGIN, rate_limit="1/minute")
    for _ in range(3):  # preflights are answered before the rate limit and do not spend it
        preflight = await api.client.options(
            "/api/payments",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": (
                    "authorization, content-type, idempotency-key, kassa-mode"
                ),
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        allowed = preflight.headers["access-control-allow-headers"].lower()
        assert "authorization" in allowed
        assert "idempotency-key" in allowed
        assert "kassa-mode" in allowed
    assert (await api.client.get("/api/auth/profile")).status_code == 401


async def test_cors_ignores_an_origin_not_listed(api_factory: Callable[..., Any]) -> None:
    api: Api = await api_factory(cors_origins=ORIGIN)
    response = await api.client.get(
        "/api/auth/profile", headers={"Origin": "https://evil.example.net"}
    )
    assert "access-control-allow-origin" not in response.headers
    preflight = await api.client.options(
        "/api/payments",
        headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    assert preflight.status_code == 400
    assert preflight.headers["content-type"] == "application/problem+json"
    assert preflight.json()["code"] == "cors_preflight_refused"
