"""Argon2id password hashing, off the event loop (each hash costs tens of milliseconds).

Each hash also takes the parameters' memory (64 MiB); at most HASHING_SLOTS run at once in a
process, so a burst of logins queues instead of growing the worker by 64 MiB a login — and
more at once would not finish sooner on a few cores anyway."""

from __future__ import annotations

import asyncio
import weakref

import anyio
import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # Argon2id with the library's current recommended parameters
# Verified when the email is unknown, so both failures cost the same time.
_DUMMY_HASH = _hasher.hash("kassa-timing-equaliser-not-a-password")


HASHING_SLOTS = 2
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)


def _limiter() -> anyio.CapacityLimiter:
    """The process's hashing slots (one set per event loop: a limiter belongs to its loop)."""
    loop = asyncio.get_running_loop()
    if loop not in _slots:
        _slots[loop] = anyio.CapacityLimiter(HASHING_SLOTS)
    return _slots[loop]


async def hash_password(password: str) -> str:
    return await anyio.to_thread.run_sync(_hasher.hash, password, limiter=_limiter())


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str | None, password: str) -> bool:
    if password_hash is None:
        await anyio.to_thread.run_sync(_verify, _DUMMY_HASH, password, limiter=_limiter())
        return False
    return await anyio.to_thread.run_sync(_verify, password_hash, password, limiter=_limiter())


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
