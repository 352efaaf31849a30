"""The reference's database around a benchmark run: its schema, a login for pgbench, and
the checks after the load (the books balance, every charge is where its requests put it,
none charged twice)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import jwt

SCHEMA = Path(__file__).with_name("schema.sql")


async def apply_schema(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(SCHEMA.read_text())
    finally:
        await connection.close()


async def seed_login(dsn: str) -> tuple[str, str]:
    """A shopper and a live login row written directly (pgbench's lifecycles use them);
    returns (login id, shopper id)."""
    shopper, login = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "INSERT INTO shopper (id, email, name, secret_hash, joined_at) "
            "VALUES ($1, $2, 'pgbench', 'none', $3)",
            shopper,
            f"pgbench-{shopper.hex[:8]}@example.com",
            now,
        )
        await connection.execute(
            "INSERT INTO login (id, shopper_id, expires_at) VALUES ($1, $2, $3)",
            login,
            shopper,
            now + timedelta(days=1),
        )
    finally:
        await connection.close()
    return str(login), str(shopper)


async def seed_tokens(dsn: str, jwt_secret: str, count: int, hours: int = 6) -> list[str]:
    """`count` shoppers, each with a live login and its bearer token, written directly (the
    benchmark measures payments, not Argon2id): the token is what /api/auth/login signs."""
    now = datetime.now(UTC)
    expires = now + timedelta(hours=hours)
    rows = [(uuid.uuid4(), uuid.uuid4()) for _ in range(count)]
    connection = await asyncpg.connect(dsn)
    try:
        await connection.executemany(
            "INSERT INTO shopper (id, email, name, secret_hash, joined_at) "
            "VALUES ($1, $2, 'bench', 'none', $3)",
            [(shopper, f"bench-{shopper.hex[:12]}@example.com", now) for shopper, _ in rows],
        )
        await connection.executemany(
            "INSERT INTO login (id, shopper_id, expires_at) VALUES ($1, $2, $3)",
            [(login, shopper, expires) for shopper, login in rows],
        )
    finally:
        await connection.close()
    return [
        jwt.encode({"sub": str(shopper), "sid": str(login), "exp": expires}, jwt_secret)
        for shopper, login in rows
    ]


async def check_reference(dsn: str, max_pending: int) -> dict[str, Any]:
    """Raises when a check fails; returns the states and counts."""
    connection = await asyncpg.connect(dsn)
    try:
        states = {
            r["state"]: int(r["n"])
            for r in await connection.fetch("SELECT state, count(*) AS n FROM charge GROUP BY 1")
        }
        unbalanced = await connection.fetchval(
            "SELECT count(*) FROM (SELECT posting FROM book_line GROUP BY posting "
            "HAVING sum(debit) <> sum(credit) OR count(*) <> 2) AS odd"
        )
        # Per charge, what the customer's card book holds must be the charge less refunds.
        wrong_books = await connection.fetchval(
            """
            SELECT count(*) FROM charge AS c
            LEFT JOIN (SELECT charge_id, sum(debit - credit) AS net FROM book_line
                       WHERE book = 'customer_cards' GROUP BY charge_id) AS b
                   ON b.charge_id = c.id
            WHERE c.state IN ('completed', 'partially_refunded', 'refunded')
              AND coalesce(b.net, 0) <> c.amount - c.refunded
            """
        )
        network = await connection.fetchrow(
            "SELECT count(*) FILTER (WHERE kind = 'charge' AND outcome = 'succeeded') AS charges, "
            "count(*) FILTER (WHERE kind = 'refund') AS refunds FROM network_record"
        )
        odd_refunds = await connection.fetchval(
            "SELECT count(*) FROM charge WHERE refund_held <> 0 "
            "OR (state = 'partially_refunded' AND refunded <> 1000) "
            "OR (state = 'completed' AND refunded <> 0)"
        )
        sealed_left = await connection.fetchval(
            "SELECT count(*) FROM charge WHERE state <> 'pending' AND card_sealed IS NOT NULL"
        )
        refunds = await connection.fetchval(
            "SELECT count(*) FROM give_back WHERE state = 'succeeded'"
        )
        unanswered = await connection.fetchval(
            "SELECT count(*) FROM replay WHERE reply_status IS NULL"
        )
    finally:
        await connection.close()
    settled = sum(states.get(s, 0) for s in ("completed", "partially_refunded", "refunded"))
    problems = []
    for bad in ("processing", "failed", "refunded"):
        if states.get(bad):
            problems.append(f"{states[bad]} charges {bad}")
    if states.get("pending", 0) > max_pending:
        problems.append(f"{states['pending']} pending (at most {max_pending} may be cut off)")
    if unbalanced:
        problems.append(f"{unbalanced} postings do not balance")
    if wrong_books:
        problems.append(f"{wrong_books} charges whose card book is not amount less refunds")
    if int(network["charges"]) != settled:
        problems.append(f"{network['charges']} network charges for {settled} settled charges")
    if int(network["refunds"]) != refunds:
        problems.append(f"{network['refunds']} network refunds for {refunds} refunds")
    if odd_refunds:
        problems.append(f"{odd_refunds} charges with refunds other than one 1000")
    if sealed_left:
        problems.append(f"{sealed_left} settled charges still hold a sealed card")
    if unanswered > max_pending:
        problems.append(f"{unanswered} claimed keys never answered")
    if problems:
        raise RuntimeError("reference check failed: " + "; ".join(problems))
    return {"states": states, "network_charges": int(network["charges"]), "refunds": refunds}
