"""The rate limits over /api: the per-client-IP limit (headers, 429 problems, exempt service
endpoints, which address counts when X-Forwarded-For is present), the per-user limit, counts
shared through Redis, and failing open when the storage is down."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from limits.aio.storage import MemoryStorage
from prometheus_client import REGISTRY

import kassa.ratelimit.limiter
from kassa.app import create_app
from kassa.container import build_container
from kassa.ratelimit.limiter import LimitStore, LoginThrottle, RateLimiter, Verdict
from tests.conftest import Api, make_settings, register_user, unique_email

RATE_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")
SERVICE_PATHS = ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json")
LIMITED_PATH = "/api/auth/profile"  # cheap: answers 401 without a token, still rate limited


def redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


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


# The per-user limit ----------------------------------------------------------------------


async def test_per_user_limit_follows_the_user_across_client_ips(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(rate_limit="100/minute", user_rate_limit="3/minute")
    user = await register_user(api.client)
    other = await register_user(api.client)
    async with (
        client_from(api, "198.51.100.21") as first,
        client_from(api, "198.51.100.22") as second,
    ):
        allowed = [
            await first.get(LIMITED_PATH, headers=user.headers),
            await first.get(LIMITED_PATH, headers=user.headers),
            await second.get(LIMITED_PATH, headers=user.headers),
        ]
        refused = await second.get(LIMITED_PATH, headers=user.headers)
        others = await second.get(LIMITED_PATH, headers=other.headers)
    assert [r.status_code for r in allowed] == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit-limit"] == "3"
    assert refused.headers["ratelimit-remaining"] == "0"
    assert others.status_code == 200


async def test_headers_show_the_user_limit_when_it_is_the_tighter(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(rate_limit="100/minute", user_rate_limit="5/minute")
    user = await register_user(api.client)
    response = await api.client.get(LIMITED_PATH, headers=user.headers)
    assert response.status_code == 200
    assert response.headers["ratelimit-limit"] == "5"
    assert response.headers["ratelimit-remaining"] == "4"


async def test_headers_show_the_ip_limit_when_it_is_the_tighter(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(rate_limit="10/minute", user_rate_limit="100/minute")
    user = await register_user(api.client)  # register and login: two of the ten
    response = await api.client.get(LIMITED_PATH, headers=user.headers)
    assert response.headers["ratelimit-limit"] == "10"
    assert response.headers["ratelimit-remaining"] == "7"


async def test_requests_without_a_token_are_not_counted_per_user(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(rate_limit="100/minute", user_rate_limit="2/minute")
    user = await register_user(api.client)
    for _ in range(4):
        await api.client.get(LIMITED_PATH)
    assert (await api.client.get(LIMITED_PATH, headers=user.headers)).status_code == 200


async def test_per_user_refusals_are_counted_by_limit_name(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(rate_limit="100/minute", user_rate_limit="1/minute")
    user = await register_user(api.client)
    before = REGISTRY.get_sample_value("kassa_rate_limited_total", {"limit": "user"}) or 0.0
    await api.client.get(LIMITED_PATH, headers=user.headers)
    assert (await api.client.get(LIMITED_PATH, headers=user.headers)).status_code == 429
    after = REGISTRY.get_sample_value("kassa_rate_limited_total", {"limit": "user"}) or 0.0
    assert after == before + 1


# Redis: shared counts, and failing open ----------------------------------------------------

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


async def test_two_apps_on_one_redis_share_the_count(database_url: str) -> None:
    if not redis_reachable():
        pytest.skip("Redis is not reachable at 127.0.0.1:6379")
    prefix = f"kassa-test-{uuid.uuid4().hex[:12]}"
    settings = make_settings(
        database_url,
        redis_url="redis://127.0.0.1:6379/0",
        redis_key_prefix=prefix,
        rate_limit="3/minute",
        redis_timeout_ms=1000,  # a busy machine must not split the shared count
    )
    containers = [build_container(settings), build_container(settings)]
    clients = [
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(container=c)), base_url="http://kassa.test"
        )
        for c in containers
    ]
    try:
        statuses = [(await clients[i % 2].get(LIMITED_PATH)).status_code for i in range(5)]
    finally:
        for client in clients:
            await client.aclose()
        await containers[0].storage.reset()
        for container in containers:
            await container.aclose()
    assert statuses == [401, 401, 401, 429, 429]


async def test_requests_are_counted_in_process_while_the_limit_storage_is_down(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(redis_url=DEAD_REDIS, rate_limit="2/minute")
    before = REGISTRY.get_sample_value("kassa_rate_limit_errors_total", {"limit": "ip"}) or 0.0
    responses = [await api.client.get(LIMITED_PATH) for _ in range(5)]
    assert [r.status_code for r in responses] == [401, 401, 429, 429, 429]
    for response in responses:
        assert response.headers["ratelimit-limit"] == "2"
    assert [r.headers["ratelimit-remaining"] for r in responses[:2]] == ["1", "0"]
    after = REGISTRY.get_sample_value("kassa_rate_limit_errors_total", {"limit": "ip"}) or 0.0
    assert after >= before + 1


async def test_login_works_while_the_limit_storage_is_down(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(redis_url=DEAD_REDIS, user_rate_limit="3/minute")
    user = await register_user(api.client)  # register and log in
    statuses = [
        (await api.client.get(LIMITED_PATH, headers=user.headers)).status_code for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    ready = await api.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"database": "ok", "redis": "unavailable"}


class FlakyStorage(MemoryStorage):
    """In-process storage that fails (with `error`) while `down` is set."""

    def __init__(self, error: Exception | None = None) -> None:
        super().__init__()
        self.down = False
        self.calls = 0
        self.error = error or ConnectionError("storage is down")

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        self.calls += 1
        if self.down:
            raise self.error
        return await super().incr(key, expiry, amount)


async def test_a_write_to_a_closed_connection_falls_back_instead_of_failing_the_request() -> None:
    """Seen under load: a Redis call that timed out left its connection closed, and the next
    write on it raised RuntimeError from the event loop's transport."""
    storage = FlakyStorage(RuntimeError("unable to perform operation; the handler is closed"))
    store = LimitStore(storage, fallback=MemoryStorage(), retry_after=1.0, clock=Clock())
    limiter = RateLimiter(store, "2/minute")
    storage.down = True
    verdicts = [await limiter.hit("client") for _ in range(3)]
    assert [v.allowed for v in verdicts] == [True, True, False]  # counted in-process
    assert store.degraded


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))

    def info(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorded = Recorder()
    monkeypatch.setattr(kassa.ratelimit.limiter, "log", recorded)
    return recorded


async def test_limit_store_falls_back_logs_once_per_outage_and_resumes(
    recorder: Recorder,
) -> None:
    storage, clock = FlakyStorage(), Clock()
    # As for Redis: a separate in-process fallback.
    store = LimitStore(storage, fallback=MemoryStorage(), retry_after=1.0, clock=clock)

    async def count(where: Any) -> int:
        return int(await where.incr("k", 60))

    assert await store.run("ip", count) == 1  # the shared count
    storage.down = True
    # This process's own count, kept all along, answers: 2 hits so far.
    assert await store.run("ip", count) == 2
    assert await store.run("ip", count) == 3  # within retry_after: the storage is not asked
    assert storage.calls == 2
    clock.now += 1.5
    assert await store.run("ip", count) == 4  # asked again, still down
    assert storage.calls == 3
    assert [e for e, _ in recorder.events] == ["rate_limit_storage_unavailable"]
    assert recorder.events[0][1]["limit"] == "ip"
    assert store.degraded
    storage.down = False
    clock.now += 1.5
    assert await store.run("ip", count) == 2  # the shared count again
    assert [e for e, _ in recorder.events][-1] == "rate_limit_storage_recovered"
    assert not store.degraded


async def test_rate_limiter_over_a_failing_storage_keeps_counting(recorder: Recorder) -> None:
    storage = FlakyStorage()
    storage.down = True
    store = LimitStore(storage, fallback=MemoryStorage())
    limiter = RateLimiter(store, "2/minute", name="user")
    verdicts = [await limiter.hit("someone") for _ in range(3)]
    assert [v.allowed for v in verdicts] == [True, True, False]
    assert verdicts[0] == Verdict(True, 2, 1, 60, "user")


async def test_login_throttle_over_a_failing_storage_still_locks(recorder: Recorder) -> None:
    storage = FlakyStorage()
    store = LimitStore(storage, fallback=MemoryStorage())
    throttle = LoginThrottle(store)
    storage.down = True
    for _ in range(10):
        assert not (await throttle.reserve("a@example.com")).locked
        await throttle.record_failure("a@example.com")
    assert (await throttle.check("a@example.com")).locked
    assert (await throttle.reserve("a@example.com")).locked


def _sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_refused_request_is_counted_under_its_route_template(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(rate_limit="1/minute")
    labels = {"route": LIMITED_PATH, "method": "GET", "status": "429"}
    before = _sample("http_requests_total", labels)
    unmatched = {"route": "unmatched", "method": "GET", "status": "429"}
    unmatched_before = _sample("http_requests_total", unmatched)
    responses = await exhaust(api.client, 3)
    assert [r.status_code for r in responses] == [401, 429, 429]
    assert _sample("http_requests_total", labels) == before + 2
    assert _sample("http_requests_total", unmatched) == unmatched_before


async def test_rate_limited_series_exist_at_zero_before_the_first_refusal(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(rate_limit="100/minute")
    metrics = (await api.client.get("/metrics")).text
    assert 'kassa_rate_limited_total{limit="ip"}' in metrics
    assert 'kassa_rate_limited_total{limit="user"}' in metrics
