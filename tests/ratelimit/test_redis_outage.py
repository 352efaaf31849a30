"""With Redis dead or hung, the limits and the login lockout keep counting in-process (each
process its own window): they degrade, they never switch off; every Redis call is bounded by
`KASSA_REDIS_TIMEOUT_MS` and a breaker keeps requests off a store that just failed, so a
hung Redis costs milliseconds, `/readyz` included. The outage is logged once and shown by
`kassa_ratelimit_degraded`.

Each test runs its own `redis-server`, which it kills or stops (SIGSTOP) and resumes."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

import kassa.ratelimit.limiter
from tests.conftest import Api, register_user
from tests.edge.conftest import OwnRedis
from tests.test_ratelimit import Recorder

LIMITED_PATH = "/api/auth/profile"  # answers 401 without a token, still rate limited
# Well under a second, well over what a request costs here: a hung Redis must not be paid
# for in seconds (the Redis timeout is 100 ms by default).
FAST = 0.6


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorded = Recorder()
    monkeypatch.setattr(kassa.ratelimit.limiter, "log", recorded)
    return recorded


@pytest.fixture
def stopped(private_redis: OwnRedis) -> Iterator[Callable[[bool], None]]:
    """`stopped(True)` freezes the private Redis (SIGSTOP), `stopped(False)` resumes it; it
    is resumed in any case before it is killed."""
    assert private_redis.process is not None
    pid = private_redis.process.pid

    def freeze(on: bool) -> None:
        os.kill(pid, signal.SIGSTOP if on else signal.SIGCONT)

    yield freeze
    os.kill(pid, signal.SIGCONT)


def degraded() -> float:
    return REGISTRY.get_sample_value("kassa_ratelimit_degraded") or 0.0


def unavailable_warnings(recorder: Recorder) -> int:
    return sum(1 for event, _ in recorder.events if event == "rate_limit_storage_unavailable")


async def timed(request: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


async def test_with_redis_dead_the_login_lockout_still_locks(
    api_factory: Callable[..., Any], private_redis: OwnRedis, recorder: Recorder
) -> None:
    api: Api = await api_factory(redis_url=private_redis.url)
    user = await register_user(api.client)
    private_redis.kill()
    wrong = {"email": user.email, "password": "definitely wrong password"}
    statuses = [
        (await api.client.post("/api/auth/login", json=wrong)).status_code for _ in range(14)
    ]
    assert statuses == [401] * 10 + [429] * 4
    right = {"email": user.email, "password": user.password}
    response = await api.client.post("/api/auth/login", json=right)
    assert response.status_code == 429
    assert response.json()["code"] == "too_many_attempts"
    assert unavailable_warnings(recorder) == 1  # once for the outage, not once a request
    assert degraded() == 1


async def test_with_redis_dead_the_ip_limit_still_refuses(
    api_factory: Callable[..., Any], private_redis: OwnRedis, recorder: Recorder
) -> None:
    api: Api = await api_factory(redis_url=private_redis.url, rate_limit="100/minute")
    private_redis.kill()
    fallback_before = (
        REGISTRY.get_sample_value("kassa_rate_limit_fallback_total", {"limit": "ip"}) or 0.0
    )
    responses = [await api.client.get(LIMITED_PATH) for _ in range(130)]
    statuses = [r.status_code for r in responses]
    assert statuses == [401] * 100 + [429] * 30
    assert responses[99].headers["ratelimit-remaining"] == "0"
    assert responses[-1].json()["code"] == "rate_limited"
    fallback_after = REGISTRY.get_sample_value("kassa_rate_limit_fallback_total", {"limit": "ip"})
    assert fallback_after is not None
    assert fallback_after - fallback_before >= 130
    assert unavailable_warnings(recorder) == 1


async def test_a_hung_redis_costs_milliseconds_and_readiness_fails_fast(
    api_factory: Callable[..., Any],
    private_redis: OwnRedis,
    stopped: Callable[[bool], None],
    recorder: Recorder,
) -> None:
    api: Api = await api_factory(redis_url=private_redis.url, rate_limit="50/minute")
    user = await register_user(api.client)
    # Ready first (on a busy machine a first connection may miss the 100 ms once).
    deadline = time.monotonic() + 15
    while (await api.client.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, "not ready with Redis running"
        await asyncio.sleep(0.2)

    stopped(True)
    for _ in range(20):
        response, took = await timed(api.client.get(LIMITED_PATH, headers=user.headers))
        assert response.status_code == 200
        assert took < FAST, f"a request took {took:.2f}s with Redis hung"
    wrong = {"email": user.email, "password": "definitely wrong password"}
    response, took = await timed(api.client.post("/api/auth/login", json=wrong))
    assert response.status_code == 401
    assert took < FAST
    ready, took = await timed(api.client.get("/readyz"))
    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"] == "unavailable"
    assert took < FAST
    assert degraded() == 1
    assert unavailable_warnings(recorder) == 1

    stopped(False)
    deadline = time.monotonic() + 15
    while (await api.client.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, "readiness did not recover after SIGCONT"
        await asyncio.sleep(0.2)
    # The breaker lets one request try Redis again; from then on counts are shared again.
    while api.container.limits.degraded:
        assert time.monotonic() < deadline, "the limits did not go back to Redis"
        await api.client.get(LIMITED_PATH, headers=user.headers)
        await asyncio.sleep(0.2)
    assert any(event == "rate_limit_storage_recovered" for event, _ in recorder.events)
    # Counted in Redis again: a fresh window there (the first 22 hits went to Redis or to
    # this process), so the limit headers count down from what Redis holds.
    before = int((await api.client.get(LIMITED_PATH)).headers["ratelimit-remaining"])
    after = int((await api.client.get(LIMITED_PATH)).headers["ratelimit-remaining"])
    assert after == before - 1
