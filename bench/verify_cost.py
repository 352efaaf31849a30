"""What `kassa ledger verify` costs a live system: its run time on a large ledger, and the
throughput a loaded `kassa serve` keeps while it runs in a loop.

    .venv/bin/python -m bench.verify_cost [--payments 100000] [--seconds 20]

On a private PostgreSQL (bench.soak's): N charged payments with consistent books (half of
them partly refunded, with the simulator's records) are written in bulk, then
1. the verifier is timed in-process, beside the verifier kassa had before (a faithful copy
   below: ledger totals and refund totals loaded into Python dicts, payments streamed row by
   row, each in its own statement);
2. `kassa serve --workers 2` is loaded with create+process lifecycles for `--seconds` each:
   with no verify, with the current verify in a loop, and with the old one in a loop.
Prints a table. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bench.run import free_port
from bench.soak import CARD, PASSWORD, PrivatePostgres, Server, kassa, kassa_env, say
from kassa.audit.service import BooksAuditor
from kassa.db import Database, create_engine
from kassa.ledger.models import LedgerEntry
from kassa.payments.models import Payment
from kassa.payments.states import CHARGED, PaymentStatus
from kassa.refunds.models import Refund

SEED = """
WITH made AS (
  INSERT INTO payment (id, user_id, status, amount, amount_refunded, amount_refund_pending,
                       currency, payment_method, details, metadata, processor,
                       processor_reference, charge_attempts, created_at, updated_at)
  SELECT gen_random_uuid(), $1::uuid,
         CASE WHEN g % 2 = 0 THEN 'partially_refunded' ELSE 'completed' END,
         1000, CASE WHEN g % 2 = 0 THEN 300 ELSE 0 END, 0, 'USD', 'credit_card',
         '{}'::json, '{}'::json, 'simulator', 'sim_ch_' || md5(random()::text), 1, now(), now()
  FROM generate_series(1, $2::int) AS g
  RETURNING id, amount, amount_refunded, processor_reference
), charges AS (
  INSERT INTO simulator_charge (reference, processor_reference, outcome, amount, currency,
                                created_at)
  SELECT 'kassa_charge_' || replace(id::text, '-', ''), processor_reference, 'succeeded',
         amount, 'USD', now() FROM made
), postings AS (
  SELECT id, amount, amount_refunded, processor_reference, gen_random_uuid() AS posting,
         gen_random_uuid() AS refund, gen_random_uuid() AS refund_posting FROM made
), lines AS (
  INSERT INTO ledger_entry (id, posting_id, kind, account, amount, currency, payment_id,
                            refund_id, created_at)
  SELECT gen_random_uuid(), posting, 'charge', 'processor_clearing', amount, 'USD', id,
         NULL::uuid, now() FROM postings
  UNION ALL
  SELECT gen_random_uuid(), posting, 'charge', 'merchant_payable:' || $3::text, -amount, 'USD',
         id, NULL::uuid, now() FROM postings
  UNION ALL
  SELECT gen_random_uuid(), refund_posting, 'refund', 'merchant_payable:' || $3::text,
         amount_refunded, 'USD', id, refund, now() FROM postings WHERE amount_refunded > 0
  UNION ALL
  SELECT gen_random_uuid(), refund_posting, 'refund', 'processor_clearing', -amount_refunded,
         'USD', id, NULL::uuid, now() FROM postings WHERE amount_refunded > 0
), refunds AS (
  INSERT INTO refund (id, payment_id, user_id, amount, currency, status, reason,
                      processor_reference, created_at, updated_at)
  SELECT refund, id, $1::uuid, amount_refunded, 'USD', 'succeeded', NULL,
         'sim_re_' || md5(refund::text), now(), now() FROM postings WHERE amount_refunded > 0
)
INSERT INTO simulator_refund (reference, processor_reference, charge_reference, outcome,
                              amount, currency, created_at)
SELECT 'kassa_refund_' || replace(refund::text, '-', ''), 'sim_re_' || md5(refund::text),
       processor_reference, 'succeeded', amount_refunded, 'USD', now()
FROM postings WHERE amount_refunded > 0
"""


async def old_verify(sessions: async_sessionmaker[AsyncSession]) -> int:
    """The verifier as it was before kassa.audit (its algorithm, copied): returns the number
    of mismatches it would report."""
    mismatches = 0
    async with sessions() as session:
        await session.execute(
            select(LedgerEntry.posting_id, LedgerEntry.currency, func.sum(LedgerEntry.amount))
            .group_by(LedgerEntry.posting_id, LedgerEntry.currency)
            .having(func.sum(LedgerEntry.amount) != 0)
            .limit(20)
        )
        await session.scalar(select(func.count(func.distinct(LedgerEntry.posting_id))))

        async def clearing(kind: str) -> dict[uuid.UUID, int]:
            result = await session.execute(
                select(LedgerEntry.payment_id, func.sum(LedgerEntry.amount))
                .where(LedgerEntry.account == "processor_clearing", LedgerEntry.kind == kind)
                .group_by(LedgerEntry.payment_id)
            )
            return {pid: int(total) for pid, total in result}

        charged = await clearing("charge")
        refunded = {pid: -total for pid, total in (await clearing("refund")).items()}
        refund_totals = {
            pid: int(total)
            for pid, total in await session.execute(
                select(Refund.payment_id, func.sum(Refund.amount))
                .where(Refund.status == "succeeded")
                .group_by(Refund.payment_id)
            )
        }
        rows = await session.stream(
            select(Payment.id, Payment.status, Payment.amount, Payment.amount_refunded)
        )
        async for row in rows:
            settled = PaymentStatus(row.status) in CHARGED
            mismatches += charged.pop(row.id, 0) != (row.amount if settled else 0)
            mismatches += refunded.pop(row.id, 0) != row.amount_refunded
            mismatches += refund_totals.get(row.id, 0) != row.amount_refunded
    return mismatches


async def new_verify(engine: AsyncEngine) -> int:
    report = await BooksAuditor(Database(engine), processor_records=True).verify()
    return len(report.mismatches)


async def timed(work: Callable[[], Awaitable[int]]) -> tuple[float, int]:
    started = time.monotonic()
    found = await work()
    return time.monotonic() - started, found


@contextlib.asynccontextmanager
async def looping(work: Callable[[], Awaitable[int]]) -> AsyncIterator[list[float]]:
    """Run `work` back to back until the block ends; yields the list of run times."""
    times: list[float] = []
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            seconds, _ = await timed(work)
            times.append(seconds)

    task = asyncio.create_task(loop())
    try:
        yield times
    finally:
        stop.set()
        await task


async def load(base: str, clients: int, seconds: float, errors: Counter[str]) -> float:
    """create + process lifecycles per second over `clients` concurrent users; what went
    wrong is counted in `errors`."""
    done = 0
    until = time.monotonic() + seconds

    async def user(index: int) -> None:
        nonlocal done
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            email = f"cost-{index}-{uuid.uuid4().hex[:8]}@example.com"
            await http.post(
                "/api/auth/register", json={"name": "C", "email": email, "password": PASSWORD}
            )
            token = (
                await http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            body = {"amount": 1500, "currency": "USD", "payment_method": "credit_card"}
            while time.monotonic() < until:
                try:
                    created = await http.post(
                        "/api/payments", json={**body, "details": CARD}, headers=headers
                    )
                    processed = await http.post(
                        "/api/payments/process",
                        json={"payment_id": created.json()["id"]},
                        headers=headers,
                    )
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] += 1
                    continue
                if processed.status_code == 200:
                    done += 1
                else:
                    errors[str(processed.status_code)] += 1

    started = time.monotonic()
    await asyncio.gather(*(user(i) for i in range(clients)))
    return done / (time.monotonic() - started)


async def measure(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    work = root / "kassa"
    work.mkdir()
    pg = PrivatePostgres(root / "pg")
    pg.init()
    server: Server | None = None
    engine = None
    try:
        admin = await asyncpg.connect(pg.admin_dsn)
        await admin.execute("CREATE DATABASE kassa")
        await admin.close()
        env = kassa_env(pg.url("kassa"))
        env.pop("KASSA_SIMULATOR_DELAY_MS")
        if kassa(env, work, "migrate").returncode != 0:
            raise RuntimeError("kassa migrate failed")
        conn = await asyncpg.connect(pg.dsn("kassa"))
        user = uuid.uuid4()
        await conn.execute(
            "INSERT INTO user_account (id, name, email, email_key, password_hash, created_at, "
            "updated_at) VALUES ($1, 'seed', 'seed@example.com', 'seed@example.com', 'x', "
            "now(), now())",
            user,
        )
        say(f"seeding {args.payments} payments")
        for start in range(0, args.payments, 20_000):
            await conn.execute(SEED, user, min(20_000, args.payments - start), str(user))
        await conn.execute("VACUUM ANALYZE")
        await conn.close()

        engine = create_engine(pg.url("kassa"), pool_size=4)
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        new_idle, new_found = await timed(lambda: new_verify(engine))
        old_idle, old_found = await timed(lambda: old_verify(sessions))
        say(
            f"idle: verify {new_idle:.2f} s ({new_found} mismatches), "
            f"old {old_idle:.2f} s ({old_found} mismatches)"
        )

        server = Server("serve", free_port(), env, work, workers=2)
        server.start()
        await server.ready()
        base = server.base
        errors: Counter[str] = Counter()
        await load(base, args.clients, 3, errors)  # warm up
        plain = await load(base, args.clients, args.seconds, errors)
        async with looping(lambda: new_verify(engine)) as new_runs:
            with_new = await load(base, args.clients, args.seconds, errors)
        async with looping(lambda: old_verify(sessions)) as old_runs:
            with_old = await load(base, args.clients, args.seconds, errors)
        return {
            "payments in the ledger": args.payments,
            "verify, idle (s)": round(new_idle, 2),
            "old verify, idle (s)": round(old_idle, 2),
            "lifecycles/s, no verify": round(plain, 1),
            "lifecycles/s, verify in a loop": round(with_new, 1),
            "lifecycles/s, old verify in a loop": round(with_old, 1),
            "throughput cost of verify": f"{100 * (1 - with_new / plain):.0f} %",
            "throughput cost of old verify": f"{100 * (1 - with_old / plain):.0f} %",
            "verify runs under load (mean s)": round(sum(new_runs) / max(1, len(new_runs)), 2),
            "old verify runs under load (mean s)": round(sum(old_runs) / max(1, len(old_runs)), 2),
            "failed requests": dict(errors) or 0,
        }
    finally:
        if engine is not None:
            await engine.dispose()
        if server is not None:
            server.stop()
        pg.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="kassa-verify-cost-"))
    root.chmod(0o711)
    try:
        figures = asyncio.run(measure(args, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    width = max(len(name) for name in figures)
    for name, value in figures.items():
        print(f"{name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
