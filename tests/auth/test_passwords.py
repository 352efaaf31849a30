"""Argon2id hashing runs off the event loop, a bounded number at a time."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from kassa.auth import passwords


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


async def test_at_most_two_hashes_run_at_once_however_many_logins_arrive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hasher = CountingHasher()
    monkeypatch.setattr(passwords, "_hasher", hasher)
    hashed = await asyncio.gather(*(passwords.hash_password(f"pw {i}") for i in range(8)))
    checked = await asyncio.gather(
        *(passwords.verify_password(h, f"pw {i}") for i, h in enumerate(hashed))
    )
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
    await passwords.hash_password("correct horse battery staple")
    ticker.cancel()
    assert ticks > 5  # the loop kept turning while Argon2id worked in a thread
