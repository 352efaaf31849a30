"""The rate limiter over Redis counts all of one limit's rates in one round trip (one script),
with the keys, counts, expiries and verdicts that limits' own storage calls gave, and still
fails open when Redis is down, hangs or has lost its scripts."""

from __future__ import annotations

import asyncio
import math
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
import trustme
from limits import parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from prometheus_client import REGISTRY
from redis._parsers import _AsyncHiredisParser

from kassa.ratelimit.limiter import (
    RETRY_STORAGE_AFTER_SECONDS,
    LimitStore,
    RateLimiter,
    RedisWindows,
    Verdict,
)
from tests.conftest import Api, register_user
from tests.edge.conftest import REDIS_SERVER, OwnRedis, _unavailable, free_port
from tests.ratelimit.conftest import redis_storage_at, unique_prefix

RATE = "3/minute;100/hour"
MINUTE, HOUR = parse_many(RATE)
CLIENT = "198.51.100.7"


async def hit_as_before(storage: Storage, rate: str, name: str, key: str) -> Verdict:
    """`RateLimiter._hit` as it was before the script: limits' `incr` then `get_expiry`, one
    rate after the other, stopping at the first refusal."""
    tightest: Verdict | None = None
    for item in parse_many(rate):
        window = item.key_for(name, key)
        count = await storage.incr(window, item.get_expiry())
        reset_time = await storage.get_expiry(window)
        verdict = Verdict(
            allowed=count <= item.amount,
            limit=item.amount,
            remaining=max(0, item.amount - count),
            reset_after=max(1, math.ceil(reset_time - time.time())),
            name=name,
        )
        if not verdict.allowed:
            return verdict
        if tightest is None or verdict.remaining < tightest.remaining:
            tightest = verdict
    assert tightest is not None
    return tightest


def errors_counted(limit: str) -> float:
    return REGISTRY.get_sample_value("kassa_rate_limit_errors_total", {"limit": limit}) or 0.0


# What Redis receives ----------------------------------------------------------------------

MONITOR_LINE = re.compile(r"^\+\d+\.\d+ \[\d+ (?P<source>\S+)\] (?P<args>.*)$")
QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Command:
    source: str  # `lua` for a command a script ran, else the client's address
    args: list[str]

    @property
    def name(self) -> str:
        return self.args[0].upper()

    @property
    def from_client(self) -> bool:
        """A round trip: a command a client sent, not one a script ran inside Redis."""
        return self.source != "lua"


class Monitor:
    """Every command a Redis server executes, read through MONITOR on a connection of its
    own; `commands()` answers those executed since the monitor started."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def __aenter__(self) -> Monitor:
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._writer.write(b"MONITOR\r\n")
        await self._writer.drain()
        assert await self._reader.readline() == b"+OK\r\n"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._writer.close()
        await self._writer.wait_closed()

    async def commands(self) -> list[Command]:
        # A marker from another connection: every command before it has been seen once the
        # marker is, since one server executes (and reports) commands in order.
        marker = f"monitor-end-{uuid.uuid4().hex}"
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(f"ECHO {marker}\r\n".encode())
        await writer.drain()
        await reader.readline()
        writer.close()
        await writer.wait_closed()
        seen: list[Command] = []
        while True:
            line = (await asyncio.wait_for(self._reader.readline(), 10)).decode().rstrip("\r\n")
            if marker in line:
                return seen
            match = MONITOR_LINE.match(line)
            assert match is not None, line
            seen.append(Command(match["source"], QUOTED.findall(match["args"])))


def prefixed(storage: RedisStorage, *windows: str) -> list[str]:
    return [storage.bridge.prefixed_key(window) for window in windows]


# Counts, remaining, reset and keys: as limits' own calls gave them ---------------------------


async def test_two_rates_answer_as_limits_own_calls_did_and_refuse_the_fourth_hit(
    shared_storage: RedisStorage,
) -> None:
    limiter = RateLimiter(shared_storage, RATE)
    now, before = [], []
    for _ in range(5):
        now.append(await limiter.hit(CLIENT))
        before.append(await hit_as_before(shared_storage, RATE, "ip", "198.51.100.8"))
    assert [(v.allowed, v.limit, v.remaining, v.name) for v in now] == [
        (True, 3, 2, "ip"),
        (True, 3, 1, "ip"),
        (True, 3, 0, "ip"),
        (False, 3, 0, "ip"),
        (False, 3, 0, "ip"),
    ]
    assert [(v.allowed, v.limit, v.remaining) for v in now] == [
        (v.allowed, v.limit, v.remaining) for v in before
    ]
    # Redis rounds a TTL to whole seconds: a slow moment may cost either path one second.
    for new, old in zip(now, before, strict=True):
        assert new.reset_after in (59, 60)
        assert abs(new.reset_after - old.reset_after) <= 1
    for item in (MINUTE, HOUR):
        assert await shared_storage.get(item.key_for("ip", CLIENT)) == await shared_storage.get(
            item.key_for("ip", "198.51.100.8")
        )


@pytest.mark.parametrize("shared", [True, False])
async def test_a_hit_given_back_leaves_every_window_one_lower_and_never_below_zero(
    shared_storage: RedisStorage, shared: bool
) -> None:
    store = LimitStore(shared_storage) if shared else LimitStore(MemoryStorage())
    limiter = RateLimiter(store, RATE, name="user")
    key = uuid.uuid4().hex
    for _ in range(3):
        await limiter.hit(key)
    await limiter.give_back(key)
    allowed = await limiter.hit(key)  # the third count again, not a fourth
    assert (allowed.allowed, allowed.remaining) == (True, 0)
    assert not (await limiter.hit(key)).allowed
    # Never below zero, and nothing created for a window that holds no count.
    other = uuid.uuid4().hex
    await limiter.give_back(other)
    await limiter.give_back(other)
    assert (await limiter.hit(other)).remaining == 2
    if shared:
        assert await shared_storage.get(MINUTE.key_for("user", other)) == 1
        assert await shared_storage.get(HOUR.key_for("user", other)) == 1


async def test_the_windows_are_limits_keys_with_each_rates_expiry(
    shared_storage: RedisStorage,
) -> None:
    limiter = RateLimiter(shared_storage, RATE)
    for _ in range(5):
        await limiter.hit(CLIENT)
    client = shared_storage.bridge.get_connection()
    minute, hour = MINUTE.key_for("ip", CLIENT), HOUR.key_for("ip", CLIENT)
    keys = await client.keys(shared_storage.bridge.prefixed_key("*"))
    assert sorted(key.decode() for key in keys) == sorted(prefixed(shared_storage, minute, hour))
    assert await client.ttl(shared_storage.bridge.prefixed_key(minute)) in (59, 60)
    assert await client.ttl(shared_storage.bridge.prefixed_key(hour)) in (3599, 3600)
    assert await shared_storage.get(minute) == 5
    assert await shared_storage.get(hour) == 3  # the refused hits spent nothing of the hour
    # limits' own strategy reads the same windows.
    strategy = FixedWindowRateLimiter(shared_storage)
    assert (await strategy.get_window_stats(MINUTE, "ip", CLIENT)).remaining == 0
    assert (await strategy.get_window_stats(HOUR, "ip", CLIENT)).remaining == 97


async def test_counts_are_shared_with_a_process_still_on_limits_own_calls(
    shared_storage: RedisStorage,
) -> None:
    limiter = RateLimiter(shared_storage, RATE)
    await hit_as_before(shared_storage, RATE, "ip", CLIENT)
    assert (await limiter.hit(CLIENT)).remaining == 1
    assert (await hit_as_before(shared_storage, RATE, "ip", CLIENT)).remaining == 0
    refused = await limiter.hit(CLIENT)
    assert not refused.allowed
    assert refused.reset_after in (59, 60)


async def test_a_window_left_without_expiry_is_given_one(shared_storage: RedisStorage) -> None:
    # As a client that died between limits' INCR and EXPIRE would leave it.
    minute = shared_storage.bridge.prefixed_key(MINUTE.key_for("ip", CLIENT))
    client = shared_storage.bridge.get_connection()
    await client.incr(minute)
    verdict = await RateLimiter(shared_storage, RATE).hit(CLIENT)
    assert (verdict.remaining, verdict.reset_after) == (1, 60)
    assert await client.ttl(minute) in (59, 60)


async def test_the_in_memory_storage_keeps_limits_own_calls() -> None:
    storage = MemoryStorage()
    assert RedisWindows.of(storage) is None
    limiter = RateLimiter(storage, RATE)
    verdicts = [await limiter.hit(CLIENT) for _ in range(5)]
    assert [v.remaining for v in verdicts] == [2, 1, 0, 0, 0]
    assert [v.allowed for v in verdicts] == [True, True, True, False, False]
    assert await storage.get(HOUR.key_for("ip", CLIENT)) == 3


# One round trip per limit ------------------------------------------------------------------


async def test_a_limit_with_two_rates_costs_one_round_trip_per_hit(
    private_redis: OwnRedis,
) -> None:
    storage = redis_storage_at(private_redis.url)
    limiter = RateLimiter(storage, RATE)
    await limiter.hit("warm-up")  # connects, and loads the script
    async with Monitor(private_redis.port) as monitor:
        verdicts = [await limiter.hit(CLIENT) for _ in range(4)]
        seen = await monitor.commands()
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    minute, hour = prefixed(storage, MINUTE.key_for("ip", CLIENT), HOUR.key_for("ip", CLIENT))
    sent = [c for c in seen if c.from_client]
    assert [c.name for c in sent] == ["EVALSHA"] * 4
    assert all(c.args[2:5] == ["2", minute, hour] for c in sent)
    ran = [(c.name, c.args[1]) for c in seen if not c.from_client]
    opened = [("INCR", minute), ("EXPIRE", minute), ("INCR", hour), ("EXPIRE", hour)]
    counted = [("INCR", minute), ("TTL", minute), ("INCR", hour), ("TTL", hour)]
    refused = [("INCR", minute), ("TTL", minute)]  # the hour is not counted
    assert ran == opened + counted + counted + refused


async def test_a_request_with_a_token_counts_both_limits_in_one_round_trip_the_ip_limit_first(
    api_factory: Callable[..., Any], private_redis: OwnRedis
) -> None:
    prefix = unique_prefix()
    api: Api = await api_factory(
        redis_url=private_redis.url,
        # What is sent is the point here, not how fast: a loaded machine must not make the
        # call time out into the in-process fallback, which sends nothing.
        redis_timeout_ms=2000,
        redis_key_prefix=prefix,
        rate_limit="100/minute;1000/hour",
        user_rate_limit="50/minute;500/hour",
    )
    user = await register_user(api.client)
    async with Monitor(private_redis.port) as monitor:
        response = await api.client.get("/api/auth/profile", headers=user.headers)
        seen = await monitor.commands()
    assert response.status_code == 200
    assert response.headers["ratelimit-remaining"] == "49"  # the user limit, tighter
    sent = [c for c in seen if c.from_client]
    assert [c.name for c in sent] == ["EVALSHA"]
    assert sent[0].args[2] == "4"  # two windows of each limit, the client's first
    ip, per_user = sent[0].args[3:5], sent[0].args[5:7]
    assert all(key.startswith(f"{prefix}:LIMITER/ip/203.0.113.7/") for key in ip)
    assert all(key.startswith(f"{prefix}:LIMITER/user/{user.id}/") for key in per_user)


async def test_a_request_the_ip_limit_refuses_spends_nothing_of_the_user_limit(
    api_factory: Callable[..., Any], private_redis: OwnRedis
) -> None:
    prefix = unique_prefix()
    api: Api = await api_factory(
        redis_url=private_redis.url,
        # What is sent is the point here, not how fast: a loaded machine must not make the
        # call time out into the in-process fallback, which sends nothing.
        redis_timeout_ms=2000,
        redis_key_prefix=prefix,
        rate_limit="3/minute",
        user_rate_limit="50/minute",
    )
    user = await register_user(api.client)
    answers = [
        (await api.client.get("/api/auth/profile", headers=user.headers)).status_code
        for _ in range(4)
    ]
    allowed = answers.count(200)
    assert allowed >= 1, answers
    assert answers[allowed:] == [429] * (4 - allowed), answers
    connection = api.container.limits.storage.bridge.get_connection()  # type: ignore[attr-defined]
    [user_window] = await connection.keys(f"{prefix}:LIMITER/user/{user.id}/*")
    assert int(await connection.get(user_window)) == allowed  # the refused counted nothing


# Lost scripts, outages, a hanging Redis ----------------------------------------------------


async def test_the_script_is_loaded_again_after_a_script_flush(private_redis: OwnRedis) -> None:
    storage = redis_storage_at(private_redis.url)
    limiter = RateLimiter(storage, RATE)
    assert (await limiter.hit(CLIENT)).remaining == 2
    await storage.bridge.get_connection().script_flush()
    errors = errors_counted("ip")
    async with Monitor(private_redis.port) as monitor:
        verdict = await limiter.hit(CLIENT)
        seen = await monitor.commands()
    assert (verdict.allowed, verdict.remaining) == (True, 1)
    assert errors_counted("ip") == errors
    # The client may take a fresh connection for the retry, which first introduces itself.
    sent = [c.args[:2] for c in seen if c.from_client and c.name not in {"HELLO", "CLIENT"}]
    assert [args[0].upper() for args in sent] == ["EVALSHA", "SCRIPT", "EVALSHA"]
    assert sent[1][1].upper() == "LOAD"


class DroppingProxy:
    """Forwards a local port to a Redis; after `drop_next()`, the next command any client
    sends is swallowed and that client's connection closed, unanswered (as a Redis that
    restarted or a load balancer that cut an idle connection would leave it)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.connections = 0
        self._drop = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> DroppingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def drop_next(self) -> None:
        self._drop = True

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        server_in, server_out = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        for source, sink, upward in ((client_in, server_out, True), (server_in, client_out, False)):
            task = asyncio.create_task(self._pipe(source, sink, client_out, upward))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        client_out: asyncio.StreamWriter,
        upward: bool,
    ) -> None:
        try:
            while data := await source.read(65536):
                if upward and self._drop:
                    self._drop = False
                    client_out.close()
                    break
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.close()


async def test_a_connection_dropped_in_the_middle_of_a_hit_is_tried_again_within_the_timeout(
    private_redis: OwnRedis,
) -> None:
    async with DroppingProxy(private_redis.port) as proxy:
        store = LimitStore(redis_storage_at(f"redis://127.0.0.1:{proxy.port}/0"), timeout=2.0)
        limiter = RateLimiter(store, RATE)
        assert (await limiter.hit(CLIENT)).remaining == 2  # connects, loads the script
        errors = errors_counted("ip")
        proxy.drop_next()
        started = time.monotonic()
        verdict = await limiter.hit(CLIENT)
        elapsed = time.monotonic() - started
    # Redis's count, on a second connection: not the in-process fallback, not a lost hit.
    assert proxy.connections == 2
    assert (verdict.allowed, verdict.remaining) == (True, 1)
    assert errors_counted("ip") == errors
    assert not store.degraded
    # Well within the default Redis timeout (100 ms): the client waits 10 ms, not seconds.
    assert elapsed < 0.1


async def test_replies_are_parsed_by_hiredis(shared_storage: RedisStorage) -> None:
    await RateLimiter(shared_storage, RATE).hit(CLIENT)
    pool = shared_storage.bridge.get_connection().connection_pool  # type: ignore[attr-defined]
    connection = await pool.get_connection()
    try:
        assert isinstance(connection._parser, _AsyncHiredisParser)
    finally:
        await pool.release(connection)


async def test_a_password_in_the_url_is_sent(private_redis: OwnRedis) -> None:
    admin = redis_storage_at(private_redis.url).bridge.get_connection()
    await admin.config_set("requirepass", "s3cret-for-tests")  # type: ignore[attr-defined]
    without = LimitStore(redis_storage_at(private_redis.url))
    assert not await without.check()
    with_password = redis_storage_at(f"redis://:s3cret-for-tests@127.0.0.1:{private_redis.port}/0")
    assert await LimitStore(with_password).check()
    assert (await RateLimiter(with_password, RATE).hit(CLIENT)).remaining == 2
    assert await with_password.get(MINUTE.key_for("ip", CLIENT)) == 1


async def test_an_unreachable_redis_is_counted_in_process() -> None:
    # Nothing listens on port 1.
    limiter = RateLimiter(redis_storage_at("redis://127.0.0.1:1/0"), RATE, name="user")
    errors = errors_counted("user")
    verdicts = [await limiter.hit(CLIENT) for _ in range(4)]
    assert [(v.allowed, v.remaining) for v in verdicts] == [
        (True, 2),
        (True, 1),
        (True, 0),
        (False, 0),
    ]
    assert errors_counted("user") == errors + 1  # then the storage is left alone a while


async def test_a_redis_that_never_answers_costs_only_the_timeout() -> None:
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accepted, read from by nobody, never answered

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        limiter = RateLimiter(redis_storage_at(f"redis://127.0.0.1:{port}/0"), RATE)
        errors = errors_counted("ip")
        started = time.monotonic()
        verdict = await limiter.hit(CLIENT)
        elapsed = time.monotonic() - started
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    assert verdict == Verdict(True, 3, 2, 60, "ip")  # counted in this process
    assert errors_counted("ip") == errors + 1
    assert elapsed < 1.0  # the Redis timeout is 100 ms


async def test_counting_resumes_in_a_fresh_redis_window_when_redis_returns(
    private_redis: OwnRedis,
) -> None:
    store = LimitStore(redis_storage_at(private_redis.url))
    limiter = RateLimiter(store, "10/minute")
    assert (await limiter.hit(CLIENT)).remaining == 9
    private_redis.kill()
    errors = errors_counted("ip")
    assert (await limiter.hit(CLIENT)).remaining == 8  # this process's own count
    assert errors_counted("ip") == errors + 1
    assert store.degraded
    private_redis.start()  # same port, empty, without the script
    deadline = time.monotonic() + 30
    while not await store.check():
        assert time.monotonic() < deadline, "Redis was not tried again"
        await asyncio.sleep(RETRY_STORAGE_AFTER_SECONDS / 4)
    assert not store.degraded
    assert (await limiter.hit(CLIENT)).remaining == 9  # Redis's fresh window
    assert (await limiter.hit(CLIENT)).remaining == 8


@pytest.mark.parametrize("rate", ["5/minute", "3/minute;100/hour", "10/minute;3/hour;1/day"])
async def test_the_verdict_is_the_first_refusal_else_the_least_remaining(
    shared_storage: RedisStorage, rate: str
) -> None:
    limiter = RateLimiter(shared_storage, rate)
    reference = RateLimiter(MemoryStorage(), rate)
    for _ in range(6):
        new, old = await limiter.hit(CLIENT), await reference.hit(CLIENT)
        assert (new.allowed, new.limit, new.remaining) == (old.allowed, old.limit, old.remaining)
        assert abs(new.reset_after - old.reset_after) <= 1


@dataclass(frozen=True)
class TlsRedis:
    process: subprocess.Popen[bytes]
    url: str  # rediss://, with the password and the CA that signed the server's certificate


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TlsRedis]:
    """A `redis-server` of this test's own on a TLS port only, with a password."""
    if REDIS_SERVER is None:
        _unavailable("redis-server is not installed")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    cert.private_key_pem.write_to_path(tmp_path / "key.pem")
    cert.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    port = free_port()
    process = subprocess.Popen(
        [
            *(REDIS_SERVER, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"),
            *("--tls-cert-file", str(tmp_path / "cert.pem")),
            *("--tls-key-file", str(tmp_path / "key.pem")),
            *("--tls-auth-clients", "no", "--requirepass", "s3cret-for-tests"),
            *("--save", "", "--appendonly", "no", "--dir", str(tmp_path)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ca_file = tmp_path / "ca.pem"
    yield TlsRedis(process, f"rediss://:s3cret-for-tests@127.0.0.1:{port}/0?ssl_ca_certs={ca_file}")
    process.kill()
    process.wait(timeout=10)


async def test_a_rediss_url_with_a_password_counts_over_tls(tls_redis: TlsRedis) -> None:
    storage = redis_storage_at(tls_redis.url)
    deadline = time.monotonic() + 10
    while not await storage.check():
        if tls_redis.process.poll() is not None:
            _unavailable("redis-server was built without TLS")
        assert time.monotonic() < deadline, "redis-server did not answer over TLS"
        await asyncio.sleep(0.05)
    store = LimitStore(storage, timeout=2.0)
    verdicts = [await RateLimiter(store, RATE).hit(CLIENT) for _ in range(2)]
    assert [v.remaining for v in verdicts] == [2, 1]
    assert not store.degraded
    assert await storage.get(MINUTE.key_for("ip", CLIENT)) == 2
