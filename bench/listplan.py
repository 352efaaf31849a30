"""The query plans of the list endpoints for a user with a million payments.

Creates a private PostgreSQL database, migrates it, seeds one merchant with N payments
(generate_series: statuses, currencies, methods, amounts, metadata and one second between
payments, 1% of them live), other merchants beside it, refunds and audit events; VACUUM
ANALYZEs; then runs EXPLAIN (ANALYZE, BUFFERS) on the exact statements kassa's repositories
build (first page, a page half a million rows deep, each filter) and times each through
kassa's database handle (the median of 5 runs). The database is dropped afterwards.

    python -m bench.listplan [--payments 1000000] [--others 200000]
        [--dsn postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import ClauseElement, Executable, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler

from kassa.auditlog import repository as audit_repository
from kassa.db import Database, Runner, create_engine
from kassa.pagination import Cursor
from kassa.payments import repository as payment_repository
from kassa.payments.repository import PaymentFilters
from kassa.refunds import repository as refund_repository

DEFAULT_DSN = os.environ.get("KASSA_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
PAGE = 21  # a default page (20) and the one row that says more follow


class Explain(Executable, ClauseElement):
    """`EXPLAIN (options) <statement>`, with the statement's parameters bound as usual."""

    inherit_cache = False

    def __init__(self, statement: Any, options: str) -> None:
        self.statement = statement
        self.explain_options = options


@compiles(Explain, "postgresql")
def _explain(element: Explain, compiler: SQLCompiler, **kw: Any) -> str:
    return f"EXPLAIN ({element.explain_options}) " + compiler.process(element.statement, **kw)


async def explain(
    db: Runner, statement: Any, params: Mapping[str, Any], options: str = "FORMAT JSON"
) -> Any:
    """The plan PostgreSQL makes for `statement` (FORMAT JSON: the plan tree)."""
    rows = await db.rows(Explain(statement, options), params)
    lines = [row["QUERY PLAN"] for row in rows]
    if "JSON" in options:
        document = json.loads(lines[0]) if isinstance(lines[0], str) else lines[0]
        return document[0]["Plan"]
    return "\n".join(lines)


def nodes(plan: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every node of a FORMAT JSON plan tree."""
    found = [plan]
    for child in plan.get("Plans", []):
        found += nodes(child)
    return found


_SEED_USER = text(
    "INSERT INTO user_account (id, name, email, email_key, password_hash, created_at,"
    " updated_at) VALUES (:id, 'Bench', :email, :email, 'x', now(), now())"
)
# One payment a second going back from now; a spread of every filter's values.
_SEED_PAYMENTS = text(
    """
INSERT INTO payment (id, user_id, status, amount, amount_refunded, amount_refund_pending,
    currency, payment_method, details, description, metadata, processor, charge_attempts,
    livemode, created_at, updated_at)
SELECT gen_random_uuid(), :owner,
    (ARRAY['completed','completed','completed','completed','completed','failed','pending',
           'canceled','refunded','partially_refunded'])[1 + i % 10],
    100 + (i::bigint * 7919) % 100000, 0, 0,
    (ARRAY['USD','USD','EUR','GBP','JPY'])[1 + i % 5],
    (ARRAY['credit_card','debit_card','digital_wallet'])[1 + i % 3],
    '{}'::json, NULL, json_build_object('order_id', :tag || i::text), 'simulator', 1,
    i % 100 = 0,
    now() - make_interval(secs => i), now() - make_interval(secs => i)
FROM generate_series(1, :count) AS i
"""
)
_SEED_REFUNDS = text(
    """
INSERT INTO refund (id, payment_id, user_id, amount, currency, status, reason,
    processor_reference, livemode, created_at, updated_at)
SELECT gen_random_uuid(), id, user_id, 1, currency, 'succeeded', NULL, NULL, livemode,
    created_at + interval '1 minute', created_at + interval '1 minute'
FROM payment WHERE status IN ('refunded', 'partially_refunded') AND user_id = :owner
"""
)
_SEED_AUDIT = text(
    """
INSERT INTO audit_event (id, user_id, actor_type, actor_id, action, object_type, object_id,
    livemode, ip, request_id, details, created_at)
SELECT gen_random_uuid(), :owner, 'user', :owner,
    (ARRAY['login','refund.created','webhook_endpoint.created'])[1 + i % 3], 'user', NULL,
    NULL, '192.0.2.1', 'bench', NULL, now() - make_interval(secs => i)
FROM generate_series(1, :count) AS i
"""
)


async def seed(db: Database, payments: int, others: int, other_users: int = 20) -> uuid.UUID:
    """The merchant (`payments` payments) and `other_users` sharing `others` payments;
    refunds of the merchant's refunded payments, audit events; ANALYZEd. The merchant's id."""
    merchant = uuid.uuid4()
    async with db.transaction() as tx:
        for index in range(other_users + 1):
            owner = merchant if index == 0 else uuid.uuid4()
            await tx.execute(_SEED_USER, {"id": owner, "email": f"{owner}@bench.example"})
            count = payments if index == 0 else max(others // other_users, 1)
            await tx.execute(_SEED_PAYMENTS, {"owner": owner, "count": count, "tag": ""})
        await tx.execute(_SEED_REFUNDS, {"owner": merchant})
        await tx.execute(_SEED_AUDIT, {"owner": merchant, "count": max(payments // 10, 1)})
    for table in ("payment", "refund", "audit_event"):
        # VACUUM as autovacuum would soon: the visibility map, and the GIN index's pending
        # list (fast-update entries a bulk insert leaves) merged into the index proper.
        await db.execute(text(f"VACUUM ANALYZE {table}"))
    return merchant


@dataclass(frozen=True)
class Query:
    name: str
    statement: Any
    params: dict[str, Any]


async def queries(db: Runner, merchant: uuid.UUID) -> list[Query]:
    """The list statements kassa runs for the merchant (test mode), by what they ask."""
    deep = await db.first(
        text(
            "SELECT created_at, id FROM payment WHERE user_id = :owner AND NOT livemode"
            " ORDER BY created_at DESC, id DESC OFFSET :offset LIMIT 1"
        ),
        {"owner": merchant, "offset": 500_000},
    )
    if deep is None:  # a small seed: the middle of what there is
        deep = await db.first(
            text(
                "SELECT created_at, id FROM payment WHERE user_id = :owner AND NOT livemode"
                " ORDER BY created_at DESC, id DESC OFFSET (SELECT count(*) / 2 FROM payment"
                " WHERE user_id = :owner) LIMIT 1"
            ),
            {"owner": merchant},
        )
    assert deep is not None  # seeded just before
    cursor = Cursor(deep["created_at"], deep["id"])
    newest = await db.scalar(
        text("SELECT max(created_at) FROM payment WHERE user_id = :owner"), {"owner": merchant}
    )
    assert isinstance(newest, datetime)
    params = {"owner": merchant, "livemode": False, "limit": PAGE}
    payment = payment_repository.list_statement
    return [
        Query("payments, first page", payment("postgresql", PaymentFilters(), None), params),
        Query(
            "payments, a page 500,000 deep", payment("postgresql", PaymentFilters(), cursor), params
        ),
        Query(
            "payments, status=failed",
            payment("postgresql", PaymentFilters(status="failed"), None),
            params,
        ),
        Query(
            "payments, status=failed, 500,000 deep",
            payment("postgresql", PaymentFilters(status="failed"), cursor),
            params,
        ),
        Query(
            "payments, currency=JPY",
            payment("postgresql", PaymentFilters(currency="JPY"), None),
            params,
        ),
        Query(
            "payments, created in an hour a day back",
            payment(
                "postgresql",
                PaymentFilters(
                    created_gte=newest - timedelta(days=1, hours=1),
                    created_lt=newest - timedelta(days=1),
                ),
                None,
            ),
            params,
        ),
        Query(
            "payments, metadata[order_id]=777777",
            payment("postgresql", PaymentFilters(metadata={"order_id": "777777"}), None),
            params,
        ),
        Query(
            "payments, amount 100..150 (about 1 in 2,000)",
            payment("postgresql", PaymentFilters(amount_gte=100, amount_lte=150), None),
            params,
        ),
        Query("refunds, first page", refund_repository.list_statement(None, None), params),
        Query("audit events, first page", audit_repository.list_statement(None, None), params),
    ]


async def _timed(db: Runner, query: Query, runs: int = 5) -> float:
    """The median wall time (ms) of the query through kassa's database handle."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await db.rows(query.statement, query.params)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def run(admin_dsn: str, payments: int, others: int) -> None:
    name = f"kassa_listplan_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = "postgresql+asyncpg://" + admin_dsn.split("://", 1)[1].rsplit("/", 1)[0] + "/" + name
    try:
        from kassa.migrate import upgrade

        await asyncio.to_thread(upgrade, url)
        db = Database(create_engine(url, pool_size=2))
        try:
            started = time.perf_counter()
            merchant = await seed(db, payments, others)
            count = await db.scalar(text("SELECT count(*) FROM payment"))
            print(
                f"seeded {count} payments ({payments} of the merchant) in "
                f"{time.perf_counter() - started:.1f} s\n"
            )
            for query in await queries(db, merchant):
                await db.rows(query.statement, query.params)  # warm
                plan = await explain(db, query.statement, query.params, "ANALYZE, BUFFERS")
                median = await _timed(db, query)
                print(f"### {query.name}: median {median:.2f} ms through kassa's handle\n")
                print(plan + "\n")
        finally:
            await db.dispose()
    finally:
        admin = await asyncpg.connect(admin_dsn)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=1_000_000)
    parser.add_argument("--others", type=int, default=200_000)
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    args = parser.parse_args()
    asyncio.run(run(args.dsn, args.payments, args.others))


if __name__ == "__main__":
    main()
