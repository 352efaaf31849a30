"""Argon2id hashing: off the event loop, a bounded number at a time, at the configured cost
(OWASP's by default), re-hashed at login when the cost changes."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from kassa.auth import passwords, repository
from kassa.auth.service import email_key
from kassa.settings import Settings, SettingsError, load_settings
from tests.conftest import Api, register_user


class CountingHasher:
    """Stands in for argon2's hasher and records how many hashes ran at once."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    def hash(self, password: str) -> str:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.05)
        with self._lock:
            self.running -= 1
        return "hashed:" + password

    def verify(self, password_hash: str, password: str) -> bool:
        return self.hash(password) == password_hash

    def check_needs_rehash(self, password_hash: str) -> bool:
        return False


async def test_at_most_two_hashes_run_at_once_however_many_logins_arrive() -> None:
    hasher = CountingHasher()
    hashing = passwords.Passwords(hasher)
    hashed = await asyncio.gather(*(hashing.hash(f"pw {i}") for i in range(8)))
    checked = await asyncio.gather(*(hashing.verify(h, f"pw {i}") for i, h in enumerate(hashed)))
    assert all(checked)
    assert hasher.most == passwords.HASHING_SLOTS == 2


async def test_hashing_leaves_the_event_loop_free() -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    ticker = asyncio.create_task(tick())
    await passwords.Passwords().hash("correct horse battery staple")
    ticker.cancel()
    assert ticks > 5  # the loop kept turning while Argon2id worked in a thread


# The cost: OWASP's parameters by default, settings to change them, re-hash on login ------


def test_default_parameters_are_owasps_recommendation_for_argon2id() -> None:
    # OWASP Password Storage Cheat Sheet: Argon2id, 19 MiB of memory, 2 iterations, 1 lane.
    made = passwords.Passwords().hasher_parameters()
    assert made == passwords.Argon2Params(memory_kib=19_456, time_cost=2, parallelism=1)
    settings = Settings()
    assert (settings.argon2_memory_kib, settings.argon2_time_cost, settings.argon2_parallelism) == (
        19_456,
        2,
        1,
    )


async def test_a_hash_carries_the_configured_parameters() -> None:
    hashing = passwords.Passwords(passwords.Argon2Params(64, 3, 2).hasher())
    stored = await hashing.hash("correct horse battery staple")
    assert stored.startswith("$argon2id$v=19$m=64,t=3,p=2$")
    assert await hashing.verify(stored, "correct horse battery staple")
    assert not await hashing.verify(stored, "wrong horse battery staple")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KASSA_ARGON2_MEMORY_KIB", "7"),
        ("KASSA_ARGON2_MEMORY_KIB", "lots"),
        ("KASSA_ARGON2_TIME_COST", "0"),
        ("KASSA_ARGON2_PARALLELISM", "0"),
        ("KASSA_ARGON2_PARALLELISM", "65"),
    ],
)
def test_invalid_argon2_settings_are_refused_in_one_line(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings({name: value})
    assert name in str(refused.value)
    assert "\n" not in str(refused.value)


def test_memory_below_argon2s_minimum_for_the_lanes_is_refused() -> None:
    with pytest.raises(SettingsError, match="KASSA_ARGON2_MEMORY_KIB must be at least 8"):
        load_settings({"KASSA_ARGON2_MEMORY_KIB": "16", "KASSA_ARGON2_PARALLELISM": "4"})


async def stored_hash(api: Api, email: str) -> str:
    user = await repository.get_user_by_email_key(api.container.db, email_key(email))
    assert user is not None
    return user.password_hash


async def test_login_rehashes_a_password_made_with_other_parameters(
    api_factory: Callable[..., Any],
) -> None:
    before: Api = await api_factory(argon2_memory_kib=8, argon2_time_cost=1)
    user = await register_user(before.client)
    assert "$m=8,t=1,p=1$" in await stored_hash(before, user.email)

    after: Api = await api_factory(argon2_memory_kib=16, argon2_time_cost=2)
    login = {"email": user.email, "password": user.password}
    assert (await after.client.post("/api/auth/login", json=login)).status_code == 200
    rehashed = await stored_hash(after, user.email)
    assert "$m=16,t=2,p=1$" in rehashed
    # The new hash holds the same password, and a second login leaves it alone.
    assert (await after.client.post("/api/auth/login", json=login)).status_code == 200
    assert await stored_hash(after, user.email) == rehashed


async def test_a_failed_login_does_not_rehash(api_factory: Callable[..., Any]) -> None:
    before: Api = await api_factory(argon2_memory_kib=8, argon2_time_cost=1)
    user = await register_user(before.client)
    stored = await stored_hash(before, user.email)
    after: Api = await api_factory(argon2_memory_kib=16, argon2_time_cost=2)
    wrong = {"email": user.email, "password": "not the password at all"}
    assert (await after.client.post("/api/auth/login", json=wrong)).status_code == 401
    assert await stored_hash(after, user.email) == stored
