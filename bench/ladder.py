"""The mandated libraries' CPU, one layer at a time, on the lean reference's own lifecycle.

The reference (bench/reference/) is FastAPI + asyncpg, a hand-written RESP client, orjson
access lines and answers. This drives it in process through bench.inproc's lifecycle with
its layers swapped one at a time for the libraries kassa's brief mandates, each rung keeping
the swaps before it:

    lean                the reference as it is
    + sqlalchemy        Lean.row through an AsyncEngine: exec_driver_sql on the same text, the
                        first row as a mapping (no Core compile, no ORM: a lower bound)
    + redis-py/limits   Lean.limit: the same Lua script through redis.asyncio, its limits
                        from `limits.parse` RateLimitItems
    + structlog         the access line through structlog (TimeStamper, JSONRenderer on orjson)
    + prometheus        a Counter and a Histogram per request, in a private CollectorRegistry
    + pydantic answers  create's and process's answers from a BaseModel's model_dump_json
                        (status and refund answers stay orjson: the routes build them inline)

Otherwise every rung does the lean rung's work: the same statements, one round trip each,
one Redis call a request. A round runs every rung in order, each on a fresh app with fresh
tokens and a warm-up of a tenth, on one database made for the run (dropped afterwards) and a
Redis key prefix of its own; access lines go to /dev/null. CPU is the process's, per
lifecycle; the table gives medians over the rounds.

    .venv/bin/python -m bench.ladder [--lifecycles 800] [--concurrency 8] [--rounds 3]
                                     [--with-kassa]

`--with-kassa` adds kassa itself as a last rung, in the same rounds and process (its own
database, migrated; users made through its API; its log lines to the same sink): the step
from the mandated stack to kassa is what kassa's own code costs on the same lifecycle.

A diagnostic, like bench.inproc; not part of `make test` or `make bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO, cast
from unittest.mock import patch

import limits
import orjson
import structlog
import uvloop
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import BaseModel, Field
from redis.asyncio import Redis
from redis.exceptions import NoScriptError
from sqlalchemy import RowMapping, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench.inproc import (
    BIN,
    App,
    Lifespan,
    admin,
    kassa_environment,
    kassa_tokens,
    lifecycles,
    say,
)
from bench.reference import app as reference
from bench.reference import checks as reference_checks
from bench.reference import sql
from bench.reference.app import (
    RATE_SCRIPT,
    RATE_SHA,
    AccessLog,
    Config,
    Lean,
    Refusal,
    Scope,
    create_app,
)

LAYERS = ("sqlalchemy", "redis-py/limits", "structlog", "prometheus", "pydantic answers")
RUNGS = ("lean", *(f"+ {layer}" for layer in LAYERS))
KASSA = "kassa"


class AlchemyLean(Lean):
    """Lean.row through SQLAlchemy's AsyncEngine on asyncpg: the same text, one round trip."""

    engine: AsyncEngine | None = None

    async def open(self) -> None:
        url = make_url(self.config.dsn).set(drivername="postgresql+asyncpg")
        self.engine = create_async_engine(
            url, pool_size=self.config.pool_size, max_overflow=0, isolation_level="AUTOCOMMIT"
        )
        async with AsyncExitStack() as opened:  # the pool's connections open now, as Lean's do
            for _ in range(self.config.pool_size):
                await opened.enter_async_context(self.engine.connect())

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.dispose()
        await self.redis.close()

    async def row(self, statement: sql.Statement, **values: Any) -> RowMapping | None:
        """The routes read `row["column"]`: a RowMapping answers it as a Record does."""
        assert self.engine is not None
        async with self.engine.connect() as connection:
            result = await connection.exec_driver_sql(
                statement.text, tuple(statement.bind(**values))
            )
            return result.mappings().first() if result.returns_rows else None


class RedisPyLean(AlchemyLean):
    """Lean.limit through redis-py: the reference's script, one EVALSHA a request, its
    limits described by `limits` RateLimitItems."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        per = f"{config.rate_limit}/{config.rate_window} seconds"
        self.per_address, self.per_shopper = limits.parse(per), limits.parse(per)
        self.client: Redis | None = None
        self.calls = 0

    async def open(self) -> None:
        await super().open()
        self.client = Redis.from_url(self.config.redis_url)

    async def close(self) -> None:
        await super().close()
        if self.client is not None:
            await self.client.aclose()

    async def limit(self, address: str, shopper: uuid.UUID | None) -> None:
        assert self.client is not None
        expiry = self.per_address.get_expiry()
        window = int(time.time()) // expiry
        prefix = self.config.redis_prefix
        keys = [f"{prefix}:ip:{address}:{window}"]
        amounts = [str(self.per_address.amount)]
        if shopper is not None:
            keys.append(f"{prefix}:user:{shopper}:{window}")
            amounts.append(str(self.per_shopper.amount))
        args = (*keys, *amounts, str(expiry))
        self.calls += 1
        try:
            over = await cast(Awaitable[int], self.client.evalsha(RATE_SHA, len(keys), *args))
        except NoScriptError:
            over = await cast(Awaitable[int], self.client.eval(RATE_SCRIPT, len(keys), *args))
        if over:
            raise Refusal(429, "rate_limited", "too many requests")


class MandatedAccess(AccessLog):
    """The reference's access line (same fields) through structlog; given a registry, a
    Prometheus Counter and Histogram per request as well."""

    def __init__(self, app: FastAPI, out: TextIO, registry: CollectorRegistry | None) -> None:
        super().__init__(app, out)
        self.log: Any = structlog.wrap_logger(
            structlog.WriteLogger(out),
            processors=[
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
                structlog.processors.JSONRenderer(
                    serializer=lambda event, **_: orjson.dumps(event, default=str).decode()
                ),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            cache_logger_on_first_use=True,
        )
        self.requests: Counter | None = None
        self.seconds: Histogram | None = None
        if registry is not None:
            labels = ["method", "route", "status"]
            self.requests = Counter("http_requests", "Answers.", labels, registry=registry)
            self.seconds = Histogram(
                "http_request_duration_seconds", "Time to answer.", labels[:2], registry=registry
            )

    def record(self, scope: Scope, status: int, seconds: float) -> None:
        client = (scope.get("client") or ("-", 0))[0]
        method, path, ms = scope["method"], scope["path"], round(1000 * seconds, 2)
        self.log.info("request", method=method, path=path, status=status, client=client, ms=ms)
        if self.requests is not None and self.seconds is not None:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.requests.labels(method, route, status).inc()
            self.seconds.labels(method, route).observe(seconds)


class CardAnswer(BaseModel):
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    holder_name: str | None = None


class PaymentAnswer(BaseModel):
    """The fields of the reference's `payment_body`, in its order."""

    id: uuid.UUID
    user_id: uuid.UUID
    status: str
    amount: int
    amount_refunded: int = 0
    currency: str
    payment_method: str = "credit_card"
    details: CardAnswer
    description: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    failure_code: str | None = None
    failure_message: str | None = None
    created_at: datetime
    updated_at: datetime


def pydantic_payment_body(
    charge: uuid.UUID,
    shopper: uuid.UUID,
    state: str,
    amount: int,
    currency: str,
    card: tuple[str, str, int, int],
    opened: datetime,
    changed: datetime,
    failure: str | None = None,
) -> bytes:
    """`reference.payment_body` through PaymentAnswer: the same bytes."""
    brand, last4, month, year = card
    answer = PaymentAnswer(
        id=charge,
        user_id=shopper,
        status=state,
        amount=amount,
        currency=currency,
        details=CardAnswer(brand=brand, last4=last4, exp_month=month, exp_year=year),
        failure_code=failure,
        failure_message=failure and failure.replace("_", " "),
        created_at=opened,
        updated_at=changed,
    )
    return answer.model_dump_json().encode()


@dataclass
class Rung:
    name: str
    app: App
    lean: Lean
    registry: CollectorRegistry | None  # from `+ prometheus` on


@asynccontextmanager
async def rung(level: int, config: Config, sink: TextIO) -> AsyncIterator[Rung]:
    """RUNGS[level] built on a fresh app, started, stopped on leaving."""
    lean = Lean(config) if level < 1 else AlchemyLean(config) if level < 2 else RedisPyLean(config)
    plain = create_app(config, sink, lean=lean)
    registry = CollectorRegistry() if level >= 4 else None
    access = MandatedAccess(plain.app, sink, registry) if level >= 3 else None
    app: App = access or plain
    answers = patch.object(reference, "payment_body", pydantic_payment_body)  # routes call it
    with answers if level >= 5 else nullcontext():
        async with Lifespan(app):
            yield Rung(RUNGS[level], app, lean, registry)


async def measured(app: App, tokens: list[str], count: int, warmup: int, concurrency: int) -> float:
    """CPU ms per lifecycle over `count` lifecycles, after `warmup` of them."""
    await lifecycles(app, tokens, warmup, concurrency)
    gc.collect()
    cpu = time.process_time()
    await lifecycles(app, tokens, count, concurrency)
    return 1000 * (time.process_time() - cpu) / count


async def kassa_rung(count: int, warmup: int, concurrency: int) -> float:
    """kassa itself (settings from the environment, see `main`), on a fresh app."""
    from kassa.app import create_app_from_env

    app = create_app_from_env()
    async with Lifespan(app):
        tokens = await kassa_tokens(app, concurrency)
        return await measured(app, tokens, count, warmup, concurrency)


async def run_ladder(
    dsn: str, redis_url: str, prefix: str, args: argparse.Namespace, sink: TextIO
) -> list[list[float]]:
    """Per round, every rung's CPU ms per lifecycle (after its warm-up), in RUNGS order
    (then kassa's, with `args.with_kassa`)."""
    secret = secrets.token_urlsafe(48)
    count, concurrency = args.lifecycles, args.concurrency
    warmup = args.warmup if args.warmup is not None else max(20, count // 10)
    runs = []
    for number in range(1, args.rounds + 1):
        run = []
        for level, name in enumerate(rungs_of(args)):
            wall = time.perf_counter()
            if name == KASSA:
                ms = await kassa_rung(count, warmup, concurrency)
            else:
                key = secrets.token_bytes(32)
                config = Config(dsn, redis_url, f"{prefix}-{level}", secret, key)
                async with rung(level, config, sink) as built:
                    tokens = await reference_checks.seed_tokens(dsn, secret, concurrency)
                    ms = await measured(built.app, tokens, count, warmup, concurrency)
            wall = time.perf_counter() - wall
            say(f"round {number}/{args.rounds}  {name:18} {ms:7.3f} ms/lifecycle  ({wall:.1f} s)")
            run.append(ms)
        runs.append(run)
    return runs


def rungs_of(args: argparse.Namespace) -> tuple[str, ...]:
    return (*RUNGS, KASSA) if args.with_kassa else RUNGS


def table(runs: Sequence[Sequence[float]], names: Sequence[str] = RUNGS) -> str:
    """Medians over the rounds: CPU ms per lifecycle, the step's added ms, × the lean rung."""
    medians = [statistics.median(run[index] for run in runs) for index in range(len(names))]
    lines = [f"{'rung':20} {'CPU ms/lifecycle':>16} {'step ms':>8} {'× lean':>7}  rounds (min–max)"]
    for index, name in enumerate(names):
        step = "" if index == 0 else f"{medians[index] - medians[index - 1]:+.3f}"
        low, high = min(run[index] for run in runs), max(run[index] for run in runs)
        lines.append(
            f"{name:20} {medians[index]:16.3f} {step:>8} {medians[index] / medians[0]:7.2f}"
            f"  {low:.3f}–{high:.3f}"
        )
    return "\n".join(lines)


async def forget(redis_url: str, prefix: str) -> None:
    """Deletes the run's keys (and only those)."""
    async with Redis.from_url(redis_url) as client:
        keys = [key async for key in client.scan_iter(match=f"{prefix}-*", count=1000)]
        if keys:
            await client.delete(*keys)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lifecycles", type=int, default=800)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, help="lifecycles first (a tenth, at least 20)")
    parser.add_argument("--with-kassa", action="store_true", help="kassa as a last rung")
    args = parser.parse_args(argv)
    admin_dsn = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    tag = uuid.uuid4().hex[:8]
    database, prefix = f"kassa_ladder_{tag}", f"kassa-ladder-{tag}"
    base = admin_dsn.rsplit("/", 1)[0]
    dsn = f"{base}/{database}"
    databases = [database, f"{database}_kassa"] if args.with_kassa else [database]
    for name in databases:
        asyncio.run(admin(admin_dsn, f'CREATE DATABASE "{name}"'))
    try:
        asyncio.run(reference_checks.apply_schema(dsn))
        with open(os.devnull, "w", encoding="utf-8") as sink:  # every rung's log lines
            if args.with_kassa:
                url = f"{base}/{databases[1]}".replace("postgresql://", "postgresql+asyncpg://", 1)
                os.environ.update(kassa_environment(url, redis_url, f"{prefix}-kassa"))
                subprocess.run([str(BIN / "kassa"), "migrate"], check=True, capture_output=True)
            with contextlib.redirect_stdout(sink):  # kassa logs to stdout
                runs = uvloop.run(run_ladder(dsn, redis_url, prefix, args, sink))
        print(table(runs, rungs_of(args)), flush=True)
    finally:
        for name in databases:
            asyncio.run(admin(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        asyncio.run(forget(redis_url, prefix))
    return 0


if __name__ == "__main__":
    sys.exit(main())
