"""bench/wirecount.py: the proxies read the client's half of PostgreSQL's and Redis's wire
protocols, message by message however the bytes are split, and count a round trip each time
a client speaks after its server answered."""

from __future__ import annotations

import asyncio
import struct
from collections import Counter

import asyncpg
import pytest

from bench.reference.resp import Redis, encode
from bench.wirecount import (
    GSSENC_REQUEST,
    PROTOCOL_3,
    SSL_REQUEST,
    CountingProxy,
    EndpointCounts,
    PgFrontend,
    RespCommands,
    round_trips,
    statements,
)
from tests.conftest import PG_ADMIN_DSN, _pg_reachable
from tests.edge.conftest import SHARED_REDIS, _redis_answers, _unavailable


def _untyped(code: int, payload: bytes = b"") -> bytes:
    return struct.pack("!ii", 8 + len(payload), code) + payload


def _message(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + struct.pack("!i", 4 + len(payload)) + payload


def _feed_bytewise(parser: PgFrontend | RespCommands, data: bytes) -> bytes:
    answered = b""
    for index in range(len(data)):
        answered += parser.feed(data[index : index + 1])
    return answered


def test_pg_frontend_refuses_encryption_itself_and_does_not_forward_the_request() -> None:
    counts: Counter[str] = Counter()
    parser = PgFrontend(counts)
    ssl = _untyped(SSL_REQUEST)
    assert parser.forwarded(ssl) == b""
    assert parser.feed(ssl) == b"N"
    gss = _untyped(GSSENC_REQUEST)
    assert parser.forwarded(gss) == b""
    assert parser.feed(gss) == b"N"
    startup = _untyped(PROTOCOL_3, b"user\0postgres\0\0")
    assert parser.forwarded(startup) == startup
    assert parser.feed(startup) == b""
    assert counts == Counter({"encryption_refused": 2, "startup": 1})


def test_pg_frontend_counts_typed_messages_split_anywhere() -> None:
    counts: Counter[str] = Counter()
    parser = PgFrontend(counts)
    stream = _untyped(PROTOCOL_3, b"user\0postgres\0\0")
    stream += _message(b"P", b"\0SELECT 1\0\0\0") + _message(b"D", b"S\0") + _message(b"H")
    stream += _message(b"B", b"\0\0" + b"\0" * 6) + _message(b"E", b"\0\0\0\0\0")
    stream += _message(b"S") + _message(b"Q", b"BEGIN\0") + _message(b"X")
    assert _feed_bytewise(parser, stream) == b""
    assert counts == Counter(
        {"startup": 1, "P": 1, "D": 1, "H": 1, "B": 1, "E": 1, "S": 1, "Q": 1, "X": 1}
    )
    assert statements(counts) == 2  # one Execute, one simple Query


def test_pg_frontend_waits_for_a_whole_message() -> None:
    counts: Counter[str] = Counter()
    parser = PgFrontend(counts)
    parser.feed(_untyped(PROTOCOL_3, b"\0"))
    query = _message(b"Q", b"SELECT 1\0")
    parser.feed(query[:-1])
    assert counts["Q"] == 0
    parser.feed(query[-1:])
    assert counts["Q"] == 1


def test_resp_commands_are_counted_by_name_split_anywhere() -> None:
    counts: Counter[str] = Counter()
    parser = RespCommands(counts)
    stream = encode(("EVALSHA", "abc", 2, "k1", "k2", 10, 10, 60))
    stream += encode(("get", "x" * 300)) + b"PING\r\n" + encode(("EVALSHA", "abc", 0))
    assert _feed_bytewise(parser, stream) == b""
    assert counts == Counter({"EVALSHA": 2, "GET": 1, "PING": 1})


def test_endpoint_counts_take_medians_and_leave_the_turns_out_of_redis_calls() -> None:
    counts = EndpointCounts()
    for turns in (3, 3, 9):  # a background task's stray statement in one sample
        counts.add(Counter({"turns": turns, "S": turns, "E": turns}), Counter({"turns": 1, "X": 1}))
    summary = counts.summary()
    assert summary["round_trips"] == 3
    assert summary["statements"] == 3
    assert summary["redis_calls"] == 1


# --- through a real server --------------------------------------------------------------------


@pytest.mark.postgres
def test_a_round_trip_is_counted_each_time_the_client_speaks_after_postgres_answered() -> None:
    if not _pg_reachable():
        _unavailable("PostgreSQL is not reachable")
    host_port = PG_ADMIN_DSN.split("@", 1)[1].split("/", 1)[0]
    host, _, port = host_port.partition(":")

    async def drive(proxy: CountingProxy) -> list[Counter[str]]:
        dsn = PG_ADMIN_DSN.replace(host_port, f"127.0.0.1:{proxy.port}")
        connection = await asyncpg.connect(dsn)
        seen = []
        try:
            for step in ("first", "again", "transaction"):
                before = proxy.snapshot()
                if step == "transaction":
                    async with connection.transaction():
                        await connection.fetchval("SELECT 41 + 1")
                else:
                    await connection.fetchval("SELECT 41 + 1")
                seen.append(proxy.snapshot() - before)
        finally:
            await connection.close()
        return seen

    with CountingProxy(host or "127.0.0.1", int(port or 5432), PgFrontend) as proxy:
        first, again, transaction = asyncio.run(drive(proxy))
    # Prepare (Parse/Describe/Flush, wait), then Bind/Execute/Sync: two round trips.
    assert (round_trips(first), first["P"], first["S"]) == (2, 1, 1)
    assert (round_trips(again), again["P"]) == (1, 0)
    # BEGIN and COMMIT are simple queries, each a round trip of its own.
    assert (round_trips(transaction), transaction["Q"]) == (3, 2)


def test_the_redis_proxy_counts_one_command_per_call() -> None:
    host, port = SHARED_REDIS
    if not _redis_answers(host, port):
        _unavailable(f"Redis is not reachable at {host}:{port}")

    async def drive(proxy: CountingProxy) -> Counter[str]:
        client = Redis(f"redis://127.0.0.1:{proxy.port}/0")
        try:
            before = proxy.snapshot()
            assert await client.call("PING") == "PONG"
            assert await client.call("ECHO", "x" * 70000) == b"x" * 70000
            return proxy.snapshot() - before
        finally:
            await client.close()

    with CountingProxy(host, port, RespCommands) as proxy:
        seen = asyncio.run(drive(proxy))
    assert (seen["PING"], seen["ECHO"], round_trips(seen)) == (1, 1, 2)
