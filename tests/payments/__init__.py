"""Helpers shared by the payment, refund and transaction tests."""

from __future__ import annotations

import random
import re
import uuid
from typing import Any

import httpx
from sqlalchemy import func, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from kassa.payments.models import Payment
from tests.conftest import Api, User

PROBLEM_JSON = "application/problem+json"
PAYMENT_KEYS = {
    "id",
    "user_id",
    "status",
    "amount",
    "amount_captured",
    "amount_refunded",
    "currency",
    "capture",
    "next_action",
    "payment_method",
    "details",
    "description",
    "metadata",
    "failure_code",
    "failure_message",
    "livemode",
    "created_at",
    "updated_at",
}
CARD_DETAIL_KEYS = {"brand", "last4", "exp_month", "exp_year", "holder_name"}
STATUS_KEYS = {
    "id",
    "status",
    "amount",
    "amount_captured",
    "amount_refunded",
    "currency",
    "updated_at",
}
REFUND_KEYS = {
    "id",
    "payment_id",
    "amount",
    "currency",
    "status",
    "reason",
    "livemode",
    "created_at",
}
TRANSACTION_KEYS = {
    "id",
    "type",
    "payment_id",
    "amount",
    "currency",
    "status",
    "payment_method",
    "livemode",
    "created_at",
}
DECLINING_CARDS = {
    "4000000000000002": "card_declined",
    "4000000000009995": "insufficient_funds",
    "4000000000000069": "expired_card",
    "4000000000000127": "incorrect_cvc",
    "4000000000000119": "processing_error",
}


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """An RFC 9457 problem document with the given status and stable code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail", "code"} <= body.keys()
    assert body["status"] == status
    assert body["code"] == code
    return body


def assert_invalid(response: httpx.Response, *fields: str) -> dict[str, Any]:
    """A 422 validation problem naming at least `fields` (a prefix match on the dotted name)."""
    body = assert_problem(response, 422, "validation_error")
    named = [e["field"] for e in body["errors"]]
    assert all({"field", "message"} <= e.keys() for e in body["errors"])
    for wanted in fields:
        assert any(n == wanted or n.startswith(wanted + ".") for n in named), (wanted, named)
    return body


def luhn_complete(partial: str) -> str:
    """`partial` plus the check digit that makes it pass the Luhn check."""
    total = 0
    for position, char in enumerate(reversed(partial)):
        value = int(char)
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return partial + str((10 - total % 10) % 10)


def random_visa() -> str:
    """A unique, Luhn-valid Visa number the simulator approves."""
    rng = random.SystemRandom()
    while True:
        number = luhn_complete("4" + "".join(rng.choice("0123456789") for _ in range(14)))
        if number not in DECLINING_CARDS:
            return number


async def count_payments(api: Api, user: User) -> int:
    count = await api.container.db.scalar(
        select(func.count()).select_from(Payment).where(Payment.user_id == uuid.UUID(user.id))
    )
    return int(count)


async def dump_database(engine: AsyncEngine) -> dict[str, list[str]]:
    """Every row of every table, as text (bytes decoded byte for byte), keyed by table."""

    def table_names(sync_conn: Any) -> list[str]:
        return list(inspect(sync_conn).get_table_names())

    out: dict[str, list[str]] = {}
    async with engine.connect() as conn:
        for table in await conn.run_sync(table_names):
            rows = (await conn.execute(text(f'SELECT * FROM "{table}"'))).all()  # noqa: S608
            out[table] = [" | ".join(_cell(v) for v in row) for row in rows]
    return out


def _cell(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("latin-1")
    return str(value)


_NOISE = re.compile(
    r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
    r"|\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:?\d{2}|Z)?"
)


def without_ids(text_: str) -> str:
    """`text_` with ids and timestamps blanked out, so a short secret cannot match them."""
    return _NOISE.sub("#", text_)


def rows_about(dump: dict[str, list[str]], payment_id: str) -> list[str]:
    """The rows that mention a payment, with ids and timestamps blanked out (so a short
    secret such as a CVC cannot match them by chance)."""
    ids = {payment_id, uuid.UUID(payment_id).hex}
    return [
        without_ids(row) for rows in dump.values() for row in rows if any(i in row for i in ids)
    ]
