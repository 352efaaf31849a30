"""Rate limiting built on the `limits` library.

Counts live in-process, or in Redis when `KASSA_REDIS_URL` is set so that every worker
and host shares one count. A limit whose storage fails is not enforced (it fails open): the
API keeps answering, a warning is logged and `kassa_rate_limit_errors_total` counts it, and
limiting resumes by itself once the storage answers again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import monotonic
from typing import TypeVar, cast

import structlog
from limits import RateLimitItem, parse, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.storage.redis.coredis import CoredisBridge
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string
from prometheus_client import Counter

LOGIN_FAILURE_LIMIT = parse("10/15minutes")
LOGIN_LOCKOUT = parse("1/30minutes")
# A rate limit must never make a request slow: Redis gets this long to connect or answer.
REDIS_TIMEOUT_SECONDS = 0.5
# After a storage failure, the next this-many seconds skip the storage (no request waits for
# a dead Redis); then one request tries it again.
RETRY_STORAGE_AFTER_SECONDS = 1.0

log = structlog.get_logger("kassa.ratelimit")
RATE_LIMIT_ERRORS = Counter(
    "kassa_rate_limit_errors_total",
    "Rate-limit storage failures (e.g. Redis unreachable), by limit name.",
    ["limit"],
)
RATE_LIMIT_FAIL_OPEN = Counter(
    "kassa_rate_limit_fail_open_total",
    "Requests let through unchecked because the rate-limit storage failed, by limit name.",
    ["limit"],
)
T = TypeVar("T")


def create_storage(redis_url: str | None, *, prefix: str = "kassa") -> Storage:
    if not redis_url:
        return MemoryStorage()
    storage = storage_from_string(
        f"async+{redis_url}",
        key_prefix=prefix,
        wrap_exceptions=True,
        connect_timeout=REDIS_TIMEOUT_SECONDS,
        stream_timeout=REDIS_TIMEOUT_SECONDS,
    )
    assert isinstance(storage, Storage)
    return storage


class FailOpen:
    """Runs storage calls for one limit; when the storage fails, answers `fallback` instead,
    logs one warning per outage, counts every failure, and keeps off the storage for
    `retry_after` seconds before trying it again."""

    def __init__(
        self,
        name: str,
        storage: Storage,
        *,
        retry_after: float = RETRY_STORAGE_AFTER_SECONDS,
        clock: Callable[[], float] = monotonic,
    ) -> None:
        self.name = name
        self._errors: tuple[type[BaseException], ...] = (StorageError, OSError, TimeoutError)
        base = storage.base_exceptions
        self._errors += base if isinstance(base, tuple) else (base,)
        self._retry_after = retry_after
        self._clock = clock
        self._down_until: float | None = None

    @property
    def storage_down(self) -> bool:
        return self._down_until is not None

    async def run(self, call: Callable[[], Awaitable[T]], fallback: T) -> T:
        if self._down_until is not None and self._clock() < self._down_until:
            RATE_LIMIT_FAIL_OPEN.labels(self.name).inc()
            return fallback
        try:
            result = await call()
        except self._errors as exc:
            RATE_LIMIT_ERRORS.labels(self.name).inc()
            RATE_LIMIT_FAIL_OPEN.labels(self.name).inc()
            if self._down_until is None:
                log.warning(
                    "rate_limit_storage_unavailable",
                    limit=self.name,
                    error=type(getattr(exc, "storage_error", exc)).__name__,
                    action="requests are served without this limit until the storage answers",
                )
            self._down_until = self._clock() + self._retry_after
            return fallback
        if self._down_until is not None:
            self._down_until = None
            log.info("rate_limit_storage_recovered", limit=self.name)
        return result


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset_after: int  # whole seconds until the window resets
    name: str = "ip"  # which limit: `ip`, `user`

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(self.reset_after).encode()),
        ]


def _seconds_until(reset_time: float) -> int:
    return max(1, math.ceil(reset_time - time.time()))


# One limit's fixed windows counted in one round trip. KEYS are the windows in order; ARGV
# holds each window's amount, then each window's length in seconds. Each INCR is limits'
# fixed window: a window starts at its first hit and lasts its length (the same keys and
# rule as limits' `incr`, so processes on either code path share one count). The count
# stops after the first window over its amount, so a refused request spends nothing in the
# windows after it. Answers count and TTL for each window counted, flattened.
_HIT_WINDOWS_LUA = """
local n = #KEYS
local counted = {}
for i = 1, n do
    local count = redis.call("INCR", KEYS[i])
    local ttl = tonumber(ARGV[n + i])
    if count == 1 then
        redis.call("EXPIRE", KEYS[i], ttl)
    else
        local left = redis.call("TTL", KEYS[i])
        if left >= 0 then
            ttl = left
        else
            -- A window without expiry, left by a client that died between INCR and
            -- EXPIRE on limits' own path, would never reset: give it one.
            redis.call("EXPIRE", KEYS[i], ttl)
        end
    end
    counted[#counted + 1] = count
    counted[#counted + 1] = ttl
    if count > tonumber(ARGV[i]) then
        break
    end
end
return counted
"""


class RedisWindows:
    """Counts a hit in all of one limit's windows with one EVALSHA, on the storage's own
    coredis client and through coredis' `Script`, which loads the script again and retries
    once when Redis answers NOSCRIPT (after a restart or a SCRIPT FLUSH)."""

    def __init__(self, storage: RedisStorage, bridge: CoredisBridge) -> None:
        self._bridge = bridge
        self._script = bridge.get_connection().register_script(_HIT_WINDOWS_LUA)
        self._base_exceptions = storage.base_exceptions
        self._wrap_exceptions = storage.wrap_exceptions

    @classmethod
    def of(cls, storage: Storage) -> RedisWindows | None:
        """The script counter for a Redis storage on coredis; None for any other storage,
        and for a Redis Cluster, which refuses a script over keys in several hash slots."""
        if (
            isinstance(storage, RedisStorage)
            and storage.MODE != "CLUSTER"
            and isinstance(storage.bridge, CoredisBridge)
        ):
            return cls(storage, storage.bridge)
        return None

    async def hit(self, windows: list[tuple[str, RateLimitItem]]) -> list[tuple[int, int]]:
        keys = tuple(self._bridge.prefixed_key(window) for window, _ in windows)
        args = (*(item.amount for _, item in windows), *(item.get_expiry() for _, item in windows))
        try:
            reply = await self._script.execute(keys, args)
        except self._base_exceptions as exc:
            # As limits' own storage calls do, so FailOpen sees the same errors either way.
            if self._wrap_exceptions:
                raise StorageError(exc) from exc
            raise
        values = [int(value) for value in cast("list[int]", reply)]
        return [(count, max(1, ttl)) for count, ttl in zip(values[::2], values[1::2], strict=True)]


class RateLimiter:
    """One named limit (`ip`, `user`); several rates (`100/15minutes;10/second`) all apply.

    Each rate is a fixed window in the storage, counted in turn until one refuses; a refused
    request is not counted in the windows after the refusing one. Over Redis a hit costs one
    round trip, whatever the number of rates.

    When the storage fails the request is allowed, and its headers show the full limit: the
    count is unknown, and the contract wants the headers on every answer."""

    def __init__(self, storage: Storage, rate: str, *, name: str = "ip") -> None:
        self.name = name
        self._storage = storage
        self._items: list[RateLimitItem] = parse_many(rate)
        self._guard = FailOpen(name, storage)
        self._redis = RedisWindows.of(storage)

    async def hit(self, key: str) -> Verdict:
        first = self._items[0]
        unchecked = Verdict(True, first.amount, first.amount, first.get_expiry(), self.name)
        return await self._guard.run(lambda: self._hit(key), unchecked)

    async def _hit(self, key: str) -> Verdict:
        windows = [(item.key_for(self.name, key), item) for item in self._items]
        if self._redis is not None:
            counted = await self._redis.hit(windows)
        else:
            counted = await self._hit_each(windows)
        return self._verdict(counted)

    async def _hit_each(self, windows: list[tuple[str, RateLimitItem]]) -> list[tuple[int, int]]:
        """The same count as the script, through limits' storage calls one by one: the count
        `incr` returns is what get_window_stats would read back."""
        counted: list[tuple[int, int]] = []
        for window, item in windows:
            count = await self._storage.incr(window, item.get_expiry())
            counted.append((count, _seconds_until(await self._storage.get_expiry(window))))
            if count > item.amount:
                break
        return counted

    def _verdict(self, counted: list[tuple[int, int]]) -> Verdict:
        """The first refusing window's verdict, else the one with the least remaining."""
        tightest: Verdict | None = None
        # `counted` ends at the first refusing window, so it may be shorter than the items.
        for item, (count, reset_after) in zip(self._items, counted, strict=False):
            verdict = Verdict(
                allowed=count <= item.amount,
                limit=item.amount,
                remaining=max(0, item.amount - count),
                reset_after=reset_after,
                name=self.name,
            )
            if not verdict.allowed:
                return verdict
            if tightest is None or verdict.remaining < tightest.remaining:
                tightest = verdict
        assert tightest is not None
        return tightest


@dataclass(frozen=True, slots=True)
class Lockout:
    locked: bool
    retry_after: int = 0


_UNLOCKED = Lockout(locked=False)


class LoginThrottle:
    """After 10 failed logins for one email within 15 minutes, refuse it for 30 minutes.

    Keyed by the normalised email whether or not the account exists (so the lockout does not
    reveal which emails are registered); attempts made while locked neither count nor extend
    the lock; a successful login clears the failures. Like the other limits it fails open:
    while its storage is down, no email is locked (Argon2 still makes guessing slow).
    """

    def __init__(self, storage: Storage) -> None:
        self._strategy = FixedWindowRateLimiter(storage)
        # "10 failures within 15 minutes" is a moving window: a fixed one would let 9 failures
        # at the end of one window and 9 at the start of the next pass unlocked.
        self._failures = MovingWindowRateLimiter(storage)
        self._guard = FailOpen("login", storage)

    async def check(self, email: str) -> Lockout:
        return await self._guard.run(lambda: self._check(email), _UNLOCKED)

    async def record_failure(self, email: str) -> Lockout:
        return await self._guard.run(lambda: self._record_failure(email), _UNLOCKED)

    async def record_success(self, email: str) -> None:
        await self._guard.run(lambda: self._record_success(email), None)

    async def _check(self, email: str) -> Lockout:
        stats = await self._strategy.get_window_stats(LOGIN_LOCKOUT, "login-lock", email)
        if stats.remaining <= 0:
            return Lockout(locked=True, retry_after=_seconds_until(stats.reset_time))
        return _UNLOCKED

    async def _record_failure(self, email: str) -> Lockout:
        await self._failures.hit(LOGIN_FAILURE_LIMIT, "login-fail", email)
        stats = await self._failures.get_window_stats(LOGIN_FAILURE_LIMIT, "login-fail", email)
        if stats.remaining > 0:
            return _UNLOCKED
        await self._strategy.hit(LOGIN_LOCKOUT, "login-lock", email)
        await self._failures.clear(LOGIN_FAILURE_LIMIT, "login-fail", email)
        return await self._check(email)

    async def _record_success(self, email: str) -> None:
        await self._failures.clear(LOGIN_FAILURE_LIMIT, "login-fail", email)
