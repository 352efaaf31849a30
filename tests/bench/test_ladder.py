"""bench/ladder.py: every rung runs the reference's lifecycle, through the layer it swaps in,
with the lean rung's statements and Redis calls; the table has a row per rung.

The tests share a PostgreSQL database of their own and a Redis key prefix of their own."""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from sqlalchemy import event, make_url

from bench.inproc import call, kassa_environment, lifecycles
from bench.ladder import (
    KASSA,
    RUNGS,
    AlchemyLean,
    PaymentAnswer,
    RedisPyLean,
    forget,
    pydantic_payment_body,
    run_ladder,
    rung,
    rungs_of,
    table,
)
from bench.openloop import PAYMENT
from bench.reference import app as reference
from bench.reference.app import Config
from bench.reference.checks import apply_schema, seed_tokens
from bench.wirecount import CountingProxy, PgFrontend, RespCommands, statements
from tests.conftest import _create_pg_database, _drop_pg_database, _pg_reachable
from tests.edge.conftest import SHARED_REDIS, _redis_answers, _unavailable

pytestmark = pytest.mark.postgres

LIFECYCLES, CONCURRENCY = 8, 2
# 8 creates and processes, a status every 2nd lifecycle, a refund every 4th.
REQUESTS = 2 * LIFECYCLES + LIFECYCLES // 2 + LIFECYCLES // 4
# create 1 statement, process 3, status 1, refund 3.
STATEMENTS = LIFECYCLES + 3 * LIFECYCLES + LIFECYCLES // 2 + 3 * (LIFECYCLES // 4)
ACCESS_FIELDS = {"ts", "event", "method", "path", "status", "client", "ms"}


@dataclass(frozen=True)
class Where:
    dsn: str
    redis_url: str
    prefix: str

    def config(self, level: int, **changes: Any) -> Config:
        config = Config(
            dsn=self.dsn,
            redis_url=self.redis_url,
            redis_prefix=f"{self.prefix}-{level}",
            jwt_secret="test-" + "s" * 40,
            card_key=os.urandom(32),
            pool_size=4,
        )
        return replace(config, **changes)


@pytest.fixture(scope="module")
def where() -> Iterator[Where]:
    if not _pg_reachable():
        _unavailable("PostgreSQL is not reachable")
    if not _redis_answers(*SHARED_REDIS):
        _unavailable("Redis is not reachable")
    name, url = _create_pg_database()
    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    redis_url = "redis://{}:{}/0".format(*SHARED_REDIS)
    prefix = f"ladder-test-{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(apply_schema(dsn))
        yield Where(dsn, redis_url, prefix)
    finally:
        asyncio.run(forget(redis_url, prefix))
        _drop_pg_database(name)


def shape(value: Any) -> Any:
    """A JSON value's structure: its keys, the types of its leaves."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    return type(value).__name__


@pytest.mark.parametrize("level", range(len(RUNGS)))
async def test_a_rung_runs_the_lifecycle_through_its_layers(where: Where, level: int) -> None:
    config = where.config(level)
    sink = io.StringIO()
    executed = Counter[str]()
    async with rung(level, config, sink) as built:
        assert built.name == RUNGS[level]
        assert (reference.payment_body is pydantic_payment_body) == (level >= 5)
        lean = built.lean
        if isinstance(lean, AlchemyLean):
            assert lean.engine is not None

            def count(*_args: Any) -> None:
                executed["statements"] += 1

            event.listen(lean.engine.sync_engine, "before_cursor_execute", count)
        tokens = await seed_tokens(where.dsn, config.jwt_secret, CONCURRENCY)
        # raises on any answer but the lifecycle's own
        made = await lifecycles(built.app, tokens, LIFECYCLES, CONCURRENCY)
        assert made == REQUESTS
        auth = {"authorization": f"Bearer {tokens[0]}", "idempotency-key": uuid.uuid4().hex}
        status, created = await call(built.app, "POST", "/api/payments", auth, PAYMENT)
        assert status == 201

        if level >= 1:  # every statement through the engine, none through an asyncpg pool
            assert isinstance(lean, AlchemyLean)
            assert lean.pool is None
            assert executed["statements"] == STATEMENTS + 1
        else:
            assert lean.pool is not None
        if level >= 2:  # every limit through redis-py, the reference's RESP client unused
            assert isinstance(lean, RedisPyLean)
            assert lean.client is not None
            assert lean.calls == REQUESTS + 1
            assert lean.redis._writer is None
            assert [k async for k in lean.client.scan_iter(match=f"{config.redis_prefix}:*")]
        if level >= 4:  # one count and one observation per request
            assert built.registry is not None
            total = built.registry.get_sample_value
            counted = sum(
                sample.value
                for metric in built.registry.collect()
                for sample in metric.samples
                if sample.name == "http_requests_total"
            )
            assert counted == REQUESTS + 1
            labels = {"method": "GET", "route": "/api/payments/{charge}/status"}
            assert total("http_request_duration_seconds_count", labels) == LIFECYCLES // 2
        else:
            assert built.registry is None
    assert reference.payment_body is not pydantic_payment_body  # restored

    lines = [orjson.loads(line) for line in sink.getvalue().splitlines()]
    assert len(lines) == REQUESTS + 1
    assert all(set(line) == ACCESS_FIELDS and line["event"] == "request" for line in lines)
    assert sorted(Counter(line["status"] for line in lines).items()) == [
        (200, LIFECYCLES + LIFECYCLES // 2),
        (201, LIFECYCLES + 1 + LIFECYCLES // 4),
    ]
    stamp = lines[0]["ts"]
    if level >= 3:  # structlog's ISO stamp, not the reference's epoch seconds
        assert isinstance(stamp, str)
        assert stamp.endswith("Z")
    else:
        assert isinstance(stamp, float)

    answer = orjson.loads(created)
    PaymentAnswer.model_validate(answer)
    now = datetime.now(UTC)
    card = ("visa", "4242", 12, 2035)
    lean_body = reference.payment_body(
        uuid.uuid4(), uuid.uuid4(), "pending", 2500, "USD", card, now, now
    )
    assert shape(answer) == shape(orjson.loads(lean_body))


@pytest.mark.parametrize("failure", [None, "card_declined"])
def test_pydantic_answers_are_the_references_bytes(failure: str | None) -> None:
    args = (uuid.uuid4(), uuid.uuid4(), "failed", 2500, "USD", ("visa", "0002", 1, 2031))
    opened = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    for changed in (opened, opened.replace(microsecond=0)):
        body = pydantic_payment_body(*args, opened, changed, failure)
        assert body == reference.payment_body(*args, opened, changed, failure)


async def test_every_rung_sends_the_lean_rungs_statements_and_redis_calls(where: Where) -> None:
    pg = make_url(where.dsn)
    sent: dict[str, tuple[int, int]] = {}
    with ExitStack() as stack:
        pg_proxy = stack.enter_context(CountingProxy(pg.host or "", pg.port or 5432, PgFrontend))
        redis_proxy = stack.enter_context(CountingProxy(*SHARED_REDIS, RespCommands))
        dsn = pg.set(host="127.0.0.1", port=pg_proxy.port).render_as_string(hide_password=False)
        redis_url = f"redis://127.0.0.1:{redis_proxy.port}/0"
        for level, name in enumerate(RUNGS):
            config = where.config(level, dsn=dsn, redis_url=redis_url)
            async with rung(level, config, io.StringIO()) as built:
                tokens = await seed_tokens(where.dsn, config.jwt_secret, CONCURRENCY)
                await lifecycles(built.app, tokens, LIFECYCLES, CONCURRENCY)  # warm-up
                pg_before, redis_before = pg_proxy.snapshot(), redis_proxy.snapshot()
                await lifecycles(built.app, tokens, LIFECYCLES, CONCURRENCY)
                pg_sent = pg_proxy.snapshot() - pg_before
                redis_sent = redis_proxy.snapshot() - redis_before
            commands = redis_sent.copy()
            del commands["turns"]
            del commands["CLIENT"]  # redis-py's setup of a connection its pool adds on demand
            assert set(commands) == {"EVALSHA"}, name
            sent[name] = (statements(pg_sent), commands["EVALSHA"])
    assert set(sent.values()) == {(STATEMENTS, REQUESTS)}, sent


async def test_a_small_ladder_times_every_rung_and_tables_them(where: Where) -> None:
    args = argparse.Namespace(
        lifecycles=LIFECYCLES, concurrency=CONCURRENCY, rounds=2, warmup=2, with_kassa=False
    )
    runs = await run_ladder(where.dsn, where.redis_url, where.prefix, args, io.StringIO())
    assert len(runs) == 2
    assert all(len(run) == len(RUNGS) and all(ms > 0 for ms in run) for run in runs)
    rows = table(runs).splitlines()
    assert len(rows) == 1 + len(RUNGS)
    assert [row[:20].strip() for row in rows[1:]] == list(RUNGS)
    assert rows[1].split()[1:3] == [f"{(runs[0][0] + runs[1][0]) / 2:.3f}", "1.00"]


async def test_kassa_runs_as_the_last_rung_on_the_settings_it_is_given(
    where: Where, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = kassa_environment(postgres_url, where.redis_url, f"{where.prefix}-kassa")
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    args = argparse.Namespace(
        lifecycles=LIFECYCLES, concurrency=CONCURRENCY, rounds=1, warmup=2, with_kassa=True
    )
    assert rungs_of(args) == (*RUNGS, KASSA)
    runs = await run_ladder(where.dsn, where.redis_url, where.prefix, args, io.StringIO())
    assert len(runs[0]) == len(RUNGS) + 1
    assert all(ms > 0 for ms in runs[0])
    rows = table(runs, rungs_of(args)).splitlines()
    assert rows[-1].split()[:2] == [KASSA, f"{runs[0][-1]:.3f}"]


def test_the_table_gives_medians_steps_and_ratios() -> None:
    runs = [[1.0, 1.5, 2.0], [2.0, 2.5, 4.0], [1.2, 1.4, 2.6]]
    rows = table(runs, ["lean", "+ a", "+ b"]).splitlines()
    assert rows[0].split()[:3] == ["rung", "CPU", "ms/lifecycle"]
    assert rows[1].split() == ["lean", "1.200", "1.00", "1.000–2.000"]
    assert rows[2].split() == ["+", "a", "1.500", "+0.300", "1.25", "1.400–2.500"]
    assert rows[3].split() == ["+", "b", "2.600", "+1.100", "2.17", "2.000–4.000"]
