"""However the requests are timed, no more than 10 passwords are checked for one email (or, at
a password change, for one user) in the lockout's window: each check reserves its slot
before the password is looked at.

The burst is 40 concurrent requests, 39 wrong passwords and the right one; a counting hasher
stands in for Argon2id and counts every verification (the dummy one for an unknown email
included), each slow enough that the whole burst is in flight at once. Limits are kept
in-process and in Redis (the shared one, under a key prefix of the test's own)."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from kassa.auth.passwords import Argon2Params, Passwords
from tests.conftest import Api, register_user, unique_email
from tests.edge.conftest import SHARED_REDIS, _redis_answers, _unavailable

LIMIT = 10
BURST = 40


class CountingHasher:
    """Cheap Argon2id that counts the verifications it is asked for."""

    def __init__(self) -> None:
        self._argon2 = Argon2Params(memory_kib=8, time_cost=1, parallelism=1).hasher()
        self._lock = threading.Lock()
        self.verified = 0
        self.wrong_takes = 0.02  # long enough for the rest of the burst to arrive
        self.right_takes = 0.0

    def hash(self, password: str) -> str:
        return self._argon2.hash(password)

    def verify(self, hash: str, password: str) -> bool:
        with self._lock:
            self.verified += 1
        try:
            right = self._argon2.verify(hash, password)
        except Exception:
            time.sleep(self.wrong_takes)
            raise
        time.sleep(self.right_takes)
        return right

    def check_needs_rehash(self, hash: str) -> bool:
        return self._argon2.check_needs_rehash(hash)


@pytest.fixture(params=["in-process", "redis"])
async def limits_settings(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, str]]:
    if request.param == "in-process":
        yield {}
        return
    host, port = SHARED_REDIS
    if not _redis_answers(host, port):
        _unavailable(f"Redis is not reachable at {host}:{port}")
    yield {
        "redis_url": f"redis://{host}:{port}/0",
        "redis_key_prefix": f"kassa-test-{uuid.uuid4().hex[:12]}",
    }


@pytest.fixture
async def counted(
    api_factory: Callable[..., Any], limits_settings: dict[str, str]
) -> AsyncIterator[tuple[Api, CountingHasher]]:
    hasher = CountingHasher()
    # A small pool: the burst queues for connections instead of taking 40 of the shared
    # PostgreSQL's (which other test runs use too).
    api: Api = await api_factory(
        passwords=Passwords(hasher), database_pool_size=4, **limits_settings
    )
    yield api, hasher
    if limits_settings:
        await api.container.storage.reset()  # this test's keys only


def burst_passwords(right: str) -> list[str]:
    """39 wrong passwords and the right one, at a random place in the burst."""
    passwords = [f"wrong password {i:02d}" for i in range(BURST - 1)]
    passwords.insert(random.randrange(BURST), right)
    return passwords


def assert_at_most_ten_checked(statuses: list[int], checked: int, failed: int) -> None:
    assert checked <= LIMIT, f"{checked} passwords were checked"
    assert set(statuses) <= {200, 204, failed, 429}
    assert statuses.count(429) >= BURST - LIMIT
    # Every request that was not refused had its password checked.
    assert len(statuses) - statuses.count(429) <= checked


async def test_a_login_burst_checks_at_most_ten_passwords(
    counted: tuple[Api, CountingHasher],
) -> None:
    api, hasher = counted
    user = await register_user(api.client)
    await api.client.post("/api/auth/logout", headers=user.headers)
    hasher.verified = 0  # registration's own login verified once

    async def login(password: str) -> httpx.Response:
        body = {"email": user.email, "password": password}
        return await api.client.post("/api/auth/login", json=body)

    responses = await asyncio.gather(*(login(p) for p in burst_passwords(user.password)))
    statuses = [r.status_code for r in responses]
    assert_at_most_ten_checked(statuses, hasher.verified, 401)
    for response in responses:
        if response.status_code == 429:
            assert response.json()["code"] == "too_many_attempts"
            assert int(response.headers["retry-after"]) > 0


async def test_a_login_burst_for_an_unknown_email_checks_at_most_ten(
    counted: tuple[Api, CountingHasher],
) -> None:
    api, hasher = counted
    email = unique_email()

    async def login(password: str) -> int:
        body = {"email": email, "password": password}
        return (await api.client.post("/api/auth/login", json=body)).status_code

    statuses = await asyncio.gather(*(login(f"guess number {i:02d}") for i in range(BURST)))
    assert_at_most_ten_checked(list(statuses), hasher.verified, 401)
    assert statuses.count(401) == hasher.verified


async def test_after_a_burst_the_email_is_locked(counted: tuple[Api, CountingHasher]) -> None:
    api, hasher = counted
    user = await register_user(api.client)
    wrong = [f"wrong password {i:02d}" for i in range(BURST)]
    await asyncio.gather(
        *(
            api.client.post("/api/auth/login", json={"email": user.email, "password": p})
            for p in wrong
        )
    )
    hasher.verified = 0
    right = {"email": user.email, "password": user.password}
    response = await api.client.post("/api/auth/login", json=right)
    assert response.status_code == 429
    assert hasher.verified == 0


async def test_a_password_change_burst_checks_at_most_ten_current_passwords(
    counted: tuple[Api, CountingHasher],
) -> None:
    api, hasher = counted
    user = await register_user(api.client)
    hasher.verified = 0

    async def change(current: str) -> int:
        body = {"current_password": current, "new_password": "a brand new password 123"}
        response = await api.client.post("/api/auth/password", json=body, headers=user.headers)
        if response.status_code == 429:
            assert response.json()["code"] == "too_many_attempts"
        return response.status_code

    statuses = await asyncio.gather(*(change(p) for p in burst_passwords(user.password)))
    assert_at_most_ten_checked(list(statuses), hasher.verified, 401)


async def test_ten_wrong_current_passwords_lock_password_changes_not_logins(
    counted: tuple[Api, CountingHasher],
) -> None:
    api, _ = counted
    user = await register_user(api.client)
    wrong = {"current_password": "not my password", "new_password": "a brand new password 123"}
    statuses = [
        (await api.client.post("/api/auth/password", json=wrong, headers=user.headers)).status_code
        for _ in range(LIMIT + 1)
    ]
    assert statuses == [401] * LIMIT + [429]
    right = {"current_password": user.password, "new_password": "a brand new password 123"}
    locked = await api.client.post("/api/auth/password", json=right, headers=user.headers)
    assert locked.status_code == 429
    assert locked.json()["code"] == "too_many_attempts"
    assert "current password" in locked.json()["detail"]
    assert int(locked.headers["retry-after"]) > 0
    # Another throttle: the account's logins are not locked by its password changes.
    login = {"email": user.email, "password": user.password}
    assert (await api.client.post("/api/auth/login", json=login)).status_code == 200


async def test_the_right_password_early_in_a_burst_buys_no_more_checks(
    counted: tuple[Api, CountingHasher],
) -> None:
    # The right password leads the burst and succeeds while wrong ones are still being
    # checked: that success must not free the slots for the requests arriving after it.
    api, hasher = counted
    user = await register_user(api.client)
    hasher.verified = 0
    hasher.right_takes, hasher.wrong_takes = 0.15, 0.4

    async def login(password: str, after: float) -> int:
        await asyncio.sleep(after)
        body = {"email": user.email, "password": password}
        return (await api.client.post("/api/auth/login", json=body)).status_code

    attempts = [login(user.password, 0.0)]
    attempts += [login(f"wrong password {i:02d}", 0.005 + 0.01 * i) for i in range(BURST - 1)]
    statuses = await asyncio.gather(*attempts)
    assert statuses[0] == 200
    assert_at_most_ten_checked(list(statuses), hasher.verified, 401)


@pytest.mark.parametrize("path", ["/api/auth/login", "/api/auth/password"])
async def test_the_openapi_declares_the_lockout_429(api: Api, path: str) -> None:
    document = (await api.client.get("/openapi.json")).json()
    refused = document["paths"][path]["post"]["responses"]["429"]
    schema = refused["content"]["application/problem+json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/Problem"}
    codes = document["components"]["schemas"]["ProblemCode"]["enum"]
    assert "too_many_attempts" in codes
    assert "too_many_attempts" in refused["description"]
