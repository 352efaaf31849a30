"""Argon2id password hashing, off the event loop.

The cost is a setting (`KASSA_ARGON2_*`); the default is the first configuration OWASP's
Password Storage Cheat Sheet recommends for Argon2id (19 MiB of memory, 2 iterations, 1 lane),
which takes a few tens of milliseconds here instead of the hundreds that 64 MiB × 3 cost, so a
handful of logins a second cannot saturate a host. A stored hash made with other parameters is
re-hashed at the next successful login.

Each hash also takes the parameters' memory; at most HASHING_SLOTS run at once in a process,
so a burst of logins queues instead of growing the worker by that much a login — and more at
once would not finish sooner on a few cores anyway."""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import anyio
import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from kassa.db import release_held_connection

HASHING_SLOTS = 2
# OWASP Password Storage Cheat Sheet, Argon2id: "m=19456 (19 MiB), t=2, p=1".
DEFAULT_MEMORY_KIB = 19_456
DEFAULT_TIME_COST = 2
DEFAULT_PARALLELISM = 1
_DUMMY_PASSWORD = "kassa-timing-equaliser-not-a-password"  # noqa: S105  (hashed, never accepted)

_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)


def _limiter() -> anyio.CapacityLimiter:
    """The process's hashing slots (one set per event loop: a limiter belongs to its loop)."""
    loop = asyncio.get_running_loop()
    if loop not in _slots:
        _slots[loop] = anyio.CapacityLimiter(HASHING_SLOTS)
    return _slots[loop]


class Hasher(Protocol):
    """What kassa needs of argon2's `PasswordHasher` (tests stand in their own)."""

    def hash(self, password: str) -> str: ...

    def verify(self, hash: str, password: str) -> bool: ...

    def check_needs_rehash(self, hash: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Argon2Params:
    memory_kib: int = DEFAULT_MEMORY_KIB
    time_cost: int = DEFAULT_TIME_COST
    parallelism: int = DEFAULT_PARALLELISM

    def hasher(self) -> PasswordHasher:
        return PasswordHasher(
            memory_cost=self.memory_kib, time_cost=self.time_cost, parallelism=self.parallelism
        )


class Passwords:
    """Hashes and verifies passwords with one hasher, a bounded number at a time, in threads."""

    def __init__(self, hasher: Hasher | None = None) -> None:
        self._hasher: Hasher = hasher or Argon2Params().hasher()

    @cached_property
    def _dummy_hash(self) -> str:
        # Verified when the email is unknown, so both failures cost the same time; made with
        # the configured parameters, so it costs what a real hash costs.
        return self._hasher.hash(_DUMMY_PASSWORD)

    async def hash(self, password: str) -> str:
        await release_held_connection()  # a hash takes tens of ms: no connection waits on it
        return await anyio.to_thread.run_sync(self._hasher.hash, password, limiter=_limiter())

    def _verify(self, password_hash: str | None, password: str) -> bool:
        if password_hash is None:
            self._verify(self._dummy_hash, password)
            return False
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether `password` matches; an unknown user (`None`) costs one verification too."""
        await release_held_connection()  # a hash takes tens of ms: no connection waits on it
        return await anyio.to_thread.run_sync(
            self._verify, password_hash, password, limiter=_limiter()
        )

    def hasher_parameters(self) -> Argon2Params | None:
        """The Argon2 parameters new hashes are made with (None for a stand-in hasher)."""
        if not isinstance(self._hasher, PasswordHasher):
            return None
        return Argon2Params(
            self._hasher.memory_cost, self._hasher.time_cost, self._hasher.parallelism
        )

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether the hash was made with other parameters than the configured ones."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except (InvalidHashError, ValueError):
            return True
