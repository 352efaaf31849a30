"""The login lockout: 10 failures for one email within 15 minutes lock it for 30 minutes.

Time travel: the in-process `limits` storage and the throttle read `time.time()` through
their modules' `time`, which the `frozen_time` fixture replaces with a settable clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

import kassa.ratelimit.limiter
from kassa.ratelimit.limiter import InProcessStorage, LoginThrottle
from tests.auth.test_register_login import assert_problem
from tests.conftest import Api, register_user, unique_email

LIMIT = 10
LOCK_SECONDS = 30 * 60
WINDOW_SECONDS = 15 * 60


class FakeTime:
    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def frozen_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    patched = SimpleNamespace(time=fake.time)
    monkeypatch.setattr("limits.aio.storage.memory.time", patched)
    monkeypatch.setattr(kassa.ratelimit.limiter, "time", patched)
    return fake


@pytest.fixture
def throttle(frozen_time: FakeTime) -> LoginThrottle:
    return LoginThrottle(InProcessStorage())


async def fail(throttle: LoginThrottle, email: str, times: int) -> bool:
    """Reserve and record `times` failed checks; whether the last one locked the email."""
    locked = False
    for _ in range(times):
        reserved = await throttle.reserve(email)
        if reserved.locked:
            return True
        locked = (await throttle.record_failure(email)).locked
    return locked


# LoginThrottle's counting rules ----------------------------------------------------------


async def test_throttle_nine_failures_do_not_lock(throttle: LoginThrottle) -> None:
    assert not await fail(throttle, "a@example.com", LIMIT - 1)
    assert not (await throttle.check("a@example.com")).locked


async def test_throttle_tenth_failure_locks_for_thirty_minutes(throttle: LoginThrottle) -> None:
    assert await fail(throttle, "a@example.com", LIMIT)
    lockout = await throttle.check("a@example.com")
    assert lockout.locked
    assert LOCK_SECONDS - 1 <= lockout.retry_after <= LOCK_SECONDS


async def test_throttle_lock_is_per_email(throttle: LoginThrottle) -> None:
    await fail(throttle, "a@example.com", LIMIT)
    assert not (await throttle.check("b@example.com")).locked


async def test_throttle_retry_after_counts_down_while_locked(
    throttle: LoginThrottle, frozen_time: FakeTime
) -> None:
    await fail(throttle, "a@example.com", LIMIT)
    frozen_time.advance(20 * 60)
    lockout = await throttle.check("a@example.com")
    assert lockout.locked
    assert lockout.retry_after == 10 * 60


async def test_throttle_lock_expires_after_thirty_minutes(
    throttle: LoginThrottle, frozen_time: FakeTime
) -> None:
    await fail(throttle, "a@example.com", LIMIT)
    frozen_time.advance(LOCK_SECONDS - 1)
    assert (await throttle.check("a@example.com")).locked
    frozen_time.advance(1)
    assert not (await throttle.check("a@example.com")).locked


async def test_throttle_counts_afresh_after_a_lock_expires(
    throttle: LoginThrottle, frozen_time: FakeTime
) -> None:
    await fail(throttle, "a@example.com", LIMIT)
    frozen_time.advance(LOCK_SECONDS)
    assert not await fail(throttle, "a@example.com", LIMIT - 1)
    assert await fail(throttle, "a@example.com", 1)


async def test_throttle_success_resets_the_failure_count(throttle: LoginThrottle) -> None:
    await fail(throttle, "a@example.com", LIMIT - 1)
    await throttle.record_success("a@example.com")
    assert not await fail(throttle, "a@example.com", LIMIT - 1)
    assert not (await throttle.check("a@example.com")).locked


async def test_throttle_failures_older_than_fifteen_minutes_do_not_count(
    throttle: LoginThrottle, frozen_time: FakeTime
) -> None:
    await fail(throttle, "a@example.com", LIMIT - 1)
    frozen_time.advance(WINDOW_SECONDS + 1)
    assert not await fail(throttle, "a@example.com", 1)


async def test_throttle_counts_any_ten_failures_within_fifteen_minutes(
    throttle: LoginThrottle, frozen_time: FakeTime
) -> None:
    # A window fixed at the first failure would restart at minute 15 and miss these.
    await fail(throttle, "a@example.com", 1)  # minute 0
    frozen_time.advance(14 * 60)
    assert not await fail(throttle, "a@example.com", 7)  # minute 14
    frozen_time.advance(2 * 60)
    assert not await fail(throttle, "a@example.com", 2)  # minute 16: 9 in the last 15 min
    assert await fail(throttle, "a@example.com", 1)  # the 10th within 15 minutes


# Over HTTP -------------------------------------------------------------------------------


async def login(api: Api, email: str, password: str) -> httpx.Response:
    return await api.client.post("/api/auth/login", json={"email": email, "password": password})


async def fail_logins(api: Api, email: str, times: int) -> list[int]:
    return [
        (await login(api, email, "definitely wrong password")).status_code for _ in range(times)
    ]


def assert_locked(response: httpx.Response, max_retry_after: int = LOCK_SECONDS) -> int:
    assert_problem(response, 429, "too_many_attempts")
    retry_after = int(response.headers["retry-after"])
    assert 0 < retry_after <= max_retry_after
    return retry_after


async def test_each_of_ten_failed_logins_is_401(api: Api) -> None:
    user = await register_user(api.client)
    assert await fail_logins(api, user.email, LIMIT) == [401] * LIMIT


async def test_after_ten_failures_even_the_right_password_gets_429(api: Api) -> None:
    user = await register_user(api.client)
    await fail_logins(api, user.email, LIMIT)
    response = await login(api, user.email, user.password)
    retry_after = assert_locked(response)
    assert retry_after > LOCK_SECONDS - 60
    assert user.password not in response.text


async def test_nine_failures_still_let_the_right_password_in(api: Api) -> None:
    user = await register_user(api.client)
    await fail_logins(api, user.email, LIMIT - 1)
    assert (await login(api, user.email, user.password)).status_code == 200


async def test_unknown_email_is_locked_the_same_way(api: Api) -> None:
    email = unique_email()
    assert await fail_logins(api, email, LIMIT) == [401] * LIMIT
    assert_locked(await login(api, email, "definitely wrong password"))


async def test_lockout_counts_failures_across_letter_case(api: Api) -> None:
    user = await register_user(api.client)
    for i in range(LIMIT):
        variant = user.email.upper() if i % 2 else user.email
        await login(api, variant, "definitely wrong password")
    assert_locked(await login(api, user.email, user.password))


async def test_lockout_of_one_email_leaves_others_alone(api: Api) -> None:
    locked = await register_user(api.client)
    other = await register_user(api.client)
    await fail_logins(api, locked.email, LIMIT)
    assert (await login(api, other.email, other.password)).status_code == 200


async def test_successful_login_resets_the_failure_count(api: Api) -> None:
    user = await register_user(api.client)
    await fail_logins(api, user.email, LIMIT - 1)
    assert (await login(api, user.email, user.password)).status_code == 200
    assert await fail_logins(api, user.email, LIMIT - 1) == [401] * (LIMIT - 1)
    assert (await login(api, user.email, user.password)).status_code == 200


async def test_lockout_does_not_end_existing_sessions(api: Api) -> None:
    user = await register_user(api.client)
    await fail_logins(api, user.email, LIMIT)
    response = await api.client.get("/api/auth/profile", headers=user.headers)
    assert response.status_code == 200


async def test_attempts_while_locked_do_not_extend_the_lock(
    api: Api, frozen_time: FakeTime
) -> None:
    user = await register_user(api.client)
    await fail_logins(api, user.email, LIMIT)
    frozen_time.advance(20 * 60)
    for _ in range(5):
        assert_locked(await login(api, user.email, "definitely wrong password"), 10 * 60)
    frozen_time.advance(10 * 60)
    assert (await login(api, user.email, user.password)).status_code == 200


async def test_lock_expires_after_thirty_minutes(api: Api, frozen_time: FakeTime) -> None:
    user = await register_user(api.client)
    await fail_logins(api, user.email, LIMIT)
    frozen_time.advance(LOCK_SECONDS - 1)
    assert_locked(await login(api, user.email, user.password), 1)
    frozen_time.advance(1)
    assert (await login(api, user.email, user.password)).status_code == 200


async def test_a_success_clearing_the_window_loses_no_later_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The in-process storage trims windows in a task that holds the key's lock across an
    # await (here held open by a gate); a success's clear must wait for it, or the failures
    # recorded meanwhile are cut back to the old window's length and the lock never comes.
    gate = asyncio.Event()

    async def gated(function: Callable[..., Any], *args: Any) -> Any:
        await gate.wait()
        return function(*args)

    monkeypatch.setattr(asyncio, "to_thread", gated)
    throttle = LoginThrottle(InProcessStorage())
    assert not (await throttle.reserve("a@example.com")).locked  # starts the trimming task
    cleared = asyncio.create_task(throttle.record_success("a@example.com"))
    half = LIMIT // 2
    failures = [asyncio.create_task(fail(throttle, "a@example.com", 1)) for _ in range(half)]
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(cleared, *failures)
    assert not await fail(throttle, "a@example.com", LIMIT - half - 1)
    assert await fail(throttle, "a@example.com", 1)  # the 10th failure locks
