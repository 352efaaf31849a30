"""Rate limiting built on the `limits` library.

Counts live in-process, or in Redis when `KASSA_REDIS_URL` is set so that every worker
and host shares one count.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse, parse_many
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
from limits.storage import storage_from_string

LOGIN_FAILURE_LIMIT = parse("10/15minutes")
LOGIN_LOCKOUT = parse("1/30minutes")


def create_storage(redis_url: str | None, *, prefix: str = "kassa") -> Storage:
    if not redis_url:
        return MemoryStorage()
    storage = storage_from_string(f"async+{redis_url}", key_prefix=prefix)
    assert isinstance(storage, Storage)
    return storage


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset_after: int  # whole seconds until the window resets

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(self.reset_after).encode()),
        ]


def _seconds_until(reset_time: float) -> int:
    return max(1, math.ceil(reset_time - time.time()))


class RateLimiter:
    """The per-IP limit of the contract; several limits (`100/15minutes;10/second`) all apply."""

    def __init__(self, storage: Storage, rate: str) -> None:
        self._strategy = FixedWindowRateLimiter(storage)
        self._items: list[RateLimitItem] = parse_many(rate)

    async def hit(self, scope: str, key: str) -> Verdict:
        tightest: Verdict | None = None
        for item in self._items:
            allowed = await self._strategy.hit(item, scope, key)
            stats = await self._strategy.get_window_stats(item, scope, key)
            verdict = Verdict(
                allowed=allowed,
                limit=item.amount,
                remaining=max(0, stats.remaining),
                reset_after=_seconds_until(stats.reset_time),
            )
            if not allowed:
                return verdict
            if tightest is None or verdict.remaining < tightest.remaining:
                tightest = verdict
        assert tightest is not None
        return tightest


@dataclass(frozen=True, slots=True)
class Lockout:
    locked: bool
    retry_after: int = 0


class LoginThrottle:
    """After 10 failed logins for one email within 15 minutes, refuse it for 30 minutes.

    Keyed by the normalised email whether or not the account exists (so the lockout does not
    reveal which emails are registered); attempts made while locked neither count nor extend
    the lock; a successful login clears the failures.
    """

    def __init__(self, storage: Storage) -> None:
        self._strategy = FixedWindowRateLimiter(storage)
        # "10 failures within 15 minutes" is a moving window: a fixed one would let 9 failures
        # at the end of one window and 9 at the start of the next pass unlocked.
        self._failures = MovingWindowRateLimiter(storage)

    async def check(self, email: str) -> Lockout:
        stats = await self._strategy.get_window_stats(LOGIN_LOCKOUT, "login-lock", email)
        if stats.remaining <= 0:
            return Lockout(locked=True, retry_after=_seconds_until(stats.reset_time))
        return Lockout(locked=False)

    async def record_failure(self, email: str) -> Lockout:
        await self._failures.hit(LOGIN_FAILURE_LIMIT, "login-fail", email)
        stats = await self._failures.get_window_stats(LOGIN_FAILURE_LIMIT, "login-fail", email)
        if stats.remaining > 0:
            return Lockout(locked=False)
        await self._strategy.hit(LOGIN_LOCKOUT, "login-lock", email)
        await self._failures.clear(LOGIN_FAILURE_LIMIT, "login-fail", email)
        return await self.check(email)

    async def record_success(self, email: str) -> None:
        await self._failures.clear(LOGIN_FAILURE_LIMIT, "login-fail", email)
