"""Rate limiting built on the `limits` library.

Counts live in-process, or in Redis when `KASSA_REDIS_URL` is set so that every worker and
host shares one count. Every Redis call is bounded by `KASSA_REDIS_TIMEOUT_MS`; when Redis
fails or hangs, the limits keep counting in-process (each process its own window) — they
degrade, they never switch off — and a breaker keeps requests off Redis for a moment before
one request tries it again. The outage is logged once, counted, and shown by the
`kassa_ratelimit_degraded` gauge; the shared count resumes by itself once Redis answers.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import monotonic
from typing import TypeVar, cast

import redis.asyncio
import structlog
from limits import RateLimitItem, parse, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.storage.redis.redispy import RedispyBridge
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string
from prometheus_client import Counter, Gauge
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff

LOGIN_FAILURE_LIMIT = parse("10/15minutes")
LOGIN_LOCKOUT = parse("1/30minutes")
# How long a count of password checks still running outlives its last change: a check takes
# well under a second, and a process that dies mid-check must not hold the count for long.
CHECKS_RUNNING_TTL_SECONDS = 60
# A rate limit must never make a request slow: by default Redis gets this long to connect or
# answer (`KASSA_REDIS_TIMEOUT_MS`).
REDIS_TIMEOUT_SECONDS = 0.1
# After a storage failure, the next this-many seconds skip the storage (no request waits for
# a dead or hung Redis); then one request tries it again while the others count in-process.
RETRY_STORAGE_AFTER_SECONDS = 1.0
# A dropped connection or a timed-out read is tried again twice, 10 ms apart, within the
# Redis timeout (redis-py's own default waits up to seconds between tries, which the timeout
# would always cut short: the call would fail over to the in-process count instead).
REDIS_RETRIES = 2
REDIS_RETRY_BACKOFF_SECONDS = 0.01

log = structlog.get_logger("kassa.ratelimit")
RATE_LIMIT_ERRORS = Counter(
    "kassa_rate_limit_errors_total",
    "Rate-limit storage failures (e.g. Redis unreachable or too slow), by limit name.",
    ["limit"],
)
RATE_LIMIT_FALLBACK = Counter(
    "kassa_rate_limit_fallback_total",
    "Limit decisions counted in-process because the shared storage failed, by limit name.",
    ["limit"],
)
RATE_LIMIT_DEGRADED = Gauge(
    "kassa_ratelimit_degraded",
    "1 while this process counts its limits in-process because the shared storage is "
    "unreachable (summed over live processes).",
    multiprocess_mode="livesum",
)
T = TypeVar("T")


class InProcessStorage(MemoryStorage):
    """limits' in-process storage, with `clear` taken under the key's lock.

    Its expiry task trims a key's moving window under that lock, across an await; the
    library's `clear` drops the key (and its lock) without waiting, so hits made meanwhile
    went into a new window that the task then cut back to the old one's length — a login
    lockout that lost failures and never locked."""

    async def clear(self, key: str) -> None:
        async with self.locks[key]:
            await super().clear(key)


def create_storage(
    redis_url: str | None, *, prefix: str = "kassa", timeout: float = REDIS_TIMEOUT_SECONDS
) -> Storage:
    """The in-process storage without `redis_url`; else limits' Redis storage on redis-py's
    asyncio client (hiredis parses its replies), its keys under `prefix`, every connect and
    read bounded by `timeout` seconds, its errors raised as limits' `StorageError`."""
    if not redis_url:
        return InProcessStorage()
    storage = storage_from_string(
        f"async+{redis_url}",
        implementation="redispy",
        key_prefix=prefix,
        wrap_exceptions=True,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
    )
    assert isinstance(storage, RedisStorage)
    assert isinstance(storage.bridge, RedispyBridge)
    client = storage.bridge.get_connection()
    assert isinstance(client, redis.asyncio.Redis)
    client.set_retry(Retry(ConstantBackoff(REDIS_RETRY_BACKOFF_SECONDS), REDIS_RETRIES))
    return storage


class LimitStore:
    """Where every limit counts: the configured storage, and — when that is Redis — an
    in-process count kept beside it, which decides while Redis fails.

    `run(name, call)` runs `call` on the in-process storage, then on Redis within `timeout`
    seconds unless the breaker is open. When Redis fails or does not answer in time, the
    in-process answer stands and the breaker opens for `retry_after` seconds; then one
    request tries Redis again while the others keep counting in-process. One warning per
    outage, one info line when Redis answers again; every fallback decision is counted."""

    def __init__(
        self,
        storage: Storage,
        *,
        fallback: Storage | None = None,
        timeout: float = REDIS_TIMEOUT_SECONDS,
        retry_after: float = RETRY_STORAGE_AFTER_SECONDS,
        clock: Callable[[], float] = monotonic,
    ) -> None:
        self.storage = storage
        if fallback is None:
            fallback = storage if isinstance(storage, MemoryStorage) else InProcessStorage()
        self.local: Storage = fallback
        self.timeout = timeout
        # RuntimeError: the client wrote to a connection that had closed under it (uvloop's
        # "the handler is closed", seen when a timed-out call left it closed) — an outage of
        # that connection, answered in-process like any other, not a 500.
        self._errors: tuple[type[BaseException], ...] = (
            StorageError,
            OSError,
            TimeoutError,
            RuntimeError,
        )
        base = storage.base_exceptions
        self._errors += base if isinstance(base, tuple) else (base,)
        self._retry_after = retry_after
        self._clock = clock
        self._down_until: float | None = None
        self._probing = False
        self.redis_windows = RedisWindows.of(storage)

    @property
    def shared(self) -> bool:
        """Whether counts are kept outside this process (so a fallback exists)."""
        return self.local is not self.storage

    @property
    def degraded(self) -> bool:
        return self._down_until is not None

    def _skip_storage(self) -> bool:
        if self._down_until is None:
            return False
        return self._probing or self._clock() < self._down_until

    async def run(
        self,
        name: str,
        call: Callable[[Storage], Awaitable[T]],
        stricter: Callable[[T, T], T] | None = None,
    ) -> T:
        """`call` on the in-process storage, then — when the storage is shared — on it too.

        The in-process count is always kept (this process's own share of the count), so a
        fallback never starts from zero: were it to, a Redis that fails in the middle of a
        burst would hand the burst a fresh allowance. While the shared storage answers, the
        answer is `stricter(local, shared)` (the shared one alone without `stricter`)."""
        local = await call(self.local)
        if not self.shared:
            return local
        if self._skip_storage():
            RATE_LIMIT_FALLBACK.labels(name).inc()
            return local
        probing = self._down_until is not None
        self._probing = probing
        try:
            shared = await asyncio.wait_for(call(self.storage), self.timeout)
        except self._errors as exc:
            self._trip(name, exc)
            return local
        finally:
            if probing:
                self._probing = False
        if self._down_until is not None:
            self._recovered(name)
        return stricter(local, shared) if stricter is not None else shared

    def _recovered(self, name: str) -> None:
        self._down_until = None
        RATE_LIMIT_DEGRADED.set(0)
        log.info("rate_limit_storage_recovered", limit=name)

    def _trip(self, name: str, exc: BaseException, *, fallback: bool = True) -> None:
        RATE_LIMIT_ERRORS.labels(name).inc()
        if fallback:
            RATE_LIMIT_FALLBACK.labels(name).inc()
        if self._down_until is None:
            RATE_LIMIT_DEGRADED.set(1)
            log.warning(
                "rate_limit_storage_unavailable",
                limit=name,
                error=type(getattr(exc, "storage_error", exc)).__name__,
                action="limits are counted in this process until the storage answers",
            )
        self._down_until = self._clock() + self._retry_after

    async def check(self) -> bool:
        """Whether the shared storage answers, within the timeout; False at once while the
        breaker is open (readiness must not wait on a store that just failed)."""
        if not self.shared:
            return True
        if self._skip_storage():
            return False
        try:
            ok = bool(await asyncio.wait_for(self.storage.check(), self.timeout))
        except Exception as exc:  # any failure means not ready
            self._trip("readiness", exc, fallback=False)
            return False
        if ok and self._down_until is not None:
            self._recovered("readiness")
        return ok


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


# A hit given back: each window (KEYS) loses one count, never below zero, and a window that
# has ended stays ended (nothing is created).
_GIVE_BACK_LUA = """
for i = 1, #KEYS do
    local count = tonumber(redis.call("GET", KEYS[i]) or "0")
    if count > 0 then
        redis.call("DECR", KEYS[i])
    end
end
return #KEYS
"""


class RedisWindows:
    """Counts a hit in all of one limit's windows with one EVALSHA, on the storage's own
    redis-py client and through redis-py's `Script`, which loads the script again and retries
    once when Redis answers NOSCRIPT (after a restart or a SCRIPT FLUSH)."""

    def __init__(
        self, storage: RedisStorage, bridge: RedispyBridge, client: redis.asyncio.Redis
    ) -> None:
        self._bridge = bridge
        self._script = client.register_script(_HIT_WINDOWS_LUA)
        self._give_back = client.register_script(_GIVE_BACK_LUA)
        self._base_exceptions = storage.base_exceptions
        self._wrap_exceptions = storage.wrap_exceptions

    @classmethod
    def of(cls, storage: Storage) -> RedisWindows | None:
        """The script counter for a Redis storage on redis-py; None for any other storage,
        and for a Redis Cluster, which refuses a script over keys in several hash slots."""
        if (
            isinstance(storage, RedisStorage)
            and storage.MODE != "CLUSTER"
            and isinstance(storage.bridge, RedispyBridge)
        ):
            client = storage.bridge.get_connection()
            if isinstance(client, redis.asyncio.Redis):
                return cls(storage, storage.bridge, client)
        return None

    async def hit(self, windows: list[tuple[str, RateLimitItem]]) -> list[tuple[int, int]]:
        keys = tuple(self._bridge.prefixed_key(window) for window, _ in windows)
        args = (*(item.amount for _, item in windows), *(item.get_expiry() for _, item in windows))
        try:
            reply = await self._script(keys, args)
        except self._base_exceptions as exc:
            # As limits' own storage calls do, so FailOpen sees the same errors either way.
            if self._wrap_exceptions:
                raise StorageError(exc) from exc
            raise
        values = [int(value) for value in cast("list[int]", reply)]
        return [(count, max(1, ttl)) for count, ttl in zip(values[::2], values[1::2], strict=True)]

    async def give_back(self, windows: list[str]) -> None:
        keys = tuple(self._bridge.prefixed_key(window) for window in windows)
        try:
            await self._give_back(keys, ())
        except self._base_exceptions as exc:
            if self._wrap_exceptions:
                raise StorageError(exc) from exc
            raise


def _stricter_verdict(local: Verdict, shared: Verdict) -> Verdict:
    """The shared count's verdict, unless this process's own count already refuses (the
    shared one lost hits, e.g. Redis restarted empty)."""
    return local if not local.allowed and shared.allowed else shared


def _stricter_pair(
    local: tuple[Verdict, Verdict | None], shared: tuple[Verdict, Verdict | None]
) -> tuple[Verdict, Verdict | None]:
    """`_stricter_verdict` for each of two limits counted together."""
    first = _stricter_verdict(local[0], shared[0])
    if local[1] is None or shared[1] is None:
        return first, shared[1] if local[1] is None else local[1]
    return first, _stricter_verdict(local[1], shared[1])


def _as_store(store: LimitStore | Storage) -> LimitStore:
    return store if isinstance(store, LimitStore) else LimitStore(store)


class RateLimiter:
    """One named limit (`ip`, `user`); several rates (`100/15minutes;10/second`) all apply.

    Each rate is a fixed window in the storage, counted in turn until one refuses; a refused
    request is not counted in the windows after the refusing one. Over Redis a hit costs one
    round trip, whatever the number of rates; while Redis fails, the hit is counted in this
    process's own windows instead."""

    def __init__(self, store: LimitStore | Storage, rate: str, *, name: str = "ip") -> None:
        self.name = name
        self._store = _as_store(store)
        self._items: list[RateLimitItem] = parse_many(rate)

    async def hit(self, key: str) -> Verdict:
        return await self._store.run(
            self.name, lambda storage: self._hit(storage, key), _stricter_verdict
        )

    async def hit_with(
        self, key: str, then: RateLimiter | None, then_key: str | None
    ) -> tuple[Verdict, Verdict | None]:
        """Hit this limit for `key` and, when it allows, `then` for `then_key` — over Redis
        in one round trip for both (one script over both limits' windows, which stops at the
        first refusing window, so a request this limit refuses spends nothing of `then`).
        `then`'s verdict is None when it was not counted. Both limits share this store."""
        if then is None or then_key is None:
            return await self.hit(key), None
        if then._store is not self._store:
            raise ValueError("limits counted together must share one store")
        second = then

        async def call(storage: Storage) -> tuple[Verdict, Verdict | None]:
            windows = self._windows(key)
            counted = await self._count(storage, windows + second._windows(then_key))
            first, rest = counted[: len(windows)], counted[len(windows) :]
            return self._verdict(first), (second._verdict(rest) if rest else None)

        return await self._store.run(self.name, call, _stricter_pair)

    async def give_back(self, key: str) -> None:
        """Undo one allowed hit of `key` in every window (a request that turned out not to
        be `key`'s to count: a login token whose session had ended)."""

        async def call(storage: Storage) -> None:
            windows = [window for window, _ in self._windows(key)]
            redis = self._store.redis_windows
            if redis is not None and storage is self._store.storage:
                await redis.give_back(windows)
                return
            for window in windows:
                if isinstance(storage, MemoryStorage):
                    await storage.decr(window)  # never below zero
                elif await storage.get(window) > 0:
                    await storage.incr(window, 1, amount=-1)

        await self._store.run(self.name, call)

    def _windows(self, key: str) -> list[tuple[str, RateLimitItem]]:
        return [(item.key_for(self.name, key), item) for item in self._items]

    async def _count(
        self, storage: Storage, windows: list[tuple[str, RateLimitItem]]
    ) -> list[tuple[int, int]]:
        redis = self._store.redis_windows
        if redis is not None and storage is self._store.storage:
            return await redis.hit(windows)
        return await self._hit_each(storage, windows)

    async def _hit(self, storage: Storage, key: str) -> Verdict:
        return self._verdict(await self._count(storage, self._windows(key)))

    async def _hit_each(
        self, storage: Storage, windows: list[tuple[str, RateLimitItem]]
    ) -> list[tuple[int, int]]:
        """The same count as the script, through limits' storage calls one by one: the count
        `incr` returns is what get_window_stats would read back."""
        counted: list[tuple[int, int]] = []
        for window, item in windows:
            count = await storage.incr(window, item.get_expiry())
            counted.append((count, _seconds_until(await storage.get_expiry(window))))
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


def _stricter_lock(local: Lockout, shared: Lockout) -> Lockout:
    if local.locked and shared.locked:
        return local if local.retry_after >= shared.retry_after else shared
    return local if local.locked else shared


@dataclass(frozen=True, slots=True)
class _Strategies:
    lock: FixedWindowRateLimiter
    failures: MovingWindowRateLimiter


class LoginThrottle:
    """After 10 failed password checks for one key within 15 minutes, refuse it for 30 minutes.

    The key is the normalised email for logins (whether or not the account exists, so the
    lockout does not reveal which emails are registered), the user for password changes —
    `scope` keeps the two apart. Each check of a password first reserves one of the 10 slots
    atomically (`reserve`); a check that finds no slot free is refused without looking at the
    password, so however the requests are timed — a concurrent burst included — no more than
    10 passwords are checked in the window. A reservation stays as a failure unless the
    password was right: a success clears the failures, once no other check of the key is
    still running (a burst that holds the right password cannot buy itself more guesses).
    The 10th failure locks the key; attempts made while locked neither count nor extend the
    lock.

    While a shared storage fails, the slots are counted in this process instead."""

    def __init__(self, store: LimitStore | Storage, *, scope: str = "login") -> None:
        self._store = _as_store(store)
        self._scope = scope
        self._by_storage = {
            id(storage): _Strategies(
                FixedWindowRateLimiter(storage),
                # "10 failures within 15 minutes" is a moving window: a fixed one would let
                # 9 failures at the end of one window and 9 at the start of the next pass.
                MovingWindowRateLimiter(storage),
            )
            for storage in (self._store.storage, self._store.local)
        }

    @property
    def store(self) -> LimitStore:
        return self._store

    def _on(self, storage: Storage) -> _Strategies:
        return self._by_storage[id(storage)]

    async def check(self, key: str) -> Lockout:
        return await self._store.run(self._scope, lambda s: self._check(s, key), _stricter_lock)

    async def reserve(self, key: str) -> Lockout:
        """Take one password check for `key`: unlocked if it may go ahead (then report its
        outcome with `record_failure` or `record_success`), locked if it must be refused.

        The slot is taken in this process's count and in the shared one; a check goes ahead
        only if both have a slot free, so one process never checks more than 10 passwords,
        whatever the shared storage does meanwhile."""
        return await self._store.run(self._scope, lambda s: self._reserve(s, key), _stricter_lock)

    async def record_failure(self, key: str) -> Lockout:
        """A reserved check failed: lock the key if that was the last free slot."""
        return await self._store.run(
            self._scope, lambda s: self._record_failure(s, key), _stricter_lock
        )

    async def record_success(self, key: str) -> None:
        await self._store.run(self._scope, lambda s: self._record_success(s, key))

    async def _check(self, storage: Storage, key: str) -> Lockout:
        stats = await self._on(storage).lock.get_window_stats(
            LOGIN_LOCKOUT, f"{self._scope}-lock", key
        )
        if stats.remaining <= 0:
            return Lockout(locked=True, retry_after=_seconds_until(stats.reset_time))
        return _UNLOCKED

    async def _reserve(self, storage: Storage, key: str) -> Lockout:
        lockout = await self._check(storage, key)
        if lockout.locked:
            return lockout
        failures = self._on(storage).failures
        if await failures.hit(LOGIN_FAILURE_LIMIT, f"{self._scope}-fail", key):
            await storage.incr(self._running(key), CHECKS_RUNNING_TTL_SECONDS)
            return _UNLOCKED
        # Every slot is taken by failures or by checks still running: refused until the
        # oldest slot frees, or for the lock one of the running checks may set.
        stats = await failures.get_window_stats(LOGIN_FAILURE_LIMIT, f"{self._scope}-fail", key)
        return Lockout(locked=True, retry_after=_seconds_until(stats.reset_time))

    def _running(self, key: str) -> str:
        return f"{self._scope}-running/{key}"

    async def _record_failure(self, storage: Storage, key: str) -> Lockout:
        await storage.incr(self._running(key), CHECKS_RUNNING_TTL_SECONDS, amount=-1)
        strategies = self._on(storage)
        stats = await strategies.failures.get_window_stats(
            LOGIN_FAILURE_LIMIT, f"{self._scope}-fail", key
        )
        if stats.remaining > 0:
            return _UNLOCKED
        # The failures stay in their window (they age out in 15 minutes, before the lock
        # ends): a check that slipped past the lock check still finds no free slot.
        await strategies.lock.hit(LOGIN_LOCKOUT, f"{self._scope}-lock", key)
        return await self._check(storage, key)

    async def _record_success(self, storage: Storage, key: str) -> None:
        running = await storage.incr(self._running(key), CHECKS_RUNNING_TTL_SECONDS, amount=-1)
        if running <= 0:
            await self._on(storage).failures.clear(LOGIN_FAILURE_LIMIT, f"{self._scope}-fail", key)
