"""Helpers for the list tests: rows written straight into the database (another mode, many
at once) and cursor walks."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from kassa.db import Runner, table_of
from kassa.payments.models import Payment
from kassa.refunds.models import Refund
from tests.conftest import Api, User


def payment_row(user_id: str, *, livemode: bool = False, **overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "id": uuid.uuid4(),
        "user_id": uuid.UUID(user_id),
        "status": "completed",
        "amount": 1000,
        "amount_refunded": 0,
        "amount_refund_pending": 0,
        "currency": "USD",
        "payment_method": "credit_card",
        "details": {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2099},
        "description": None,
        "metadata": {},
        "failure_code": None,
        "failure_message": None,
        "processor": "simulator",
        "processor_reference": None,
        "charge_attempts": 1,
        "card_fingerprint": None,
        "livemode": livemode,
        "created_at": now,
        "updated_at": now,
        **overrides,
    }


async def insert_payment(db: Runner, user: User, **overrides: Any) -> uuid.UUID:
    row = payment_row(user.id, **overrides)
    await db.execute(table_of(Payment).insert(), row)
    payment_id: uuid.UUID = row["id"]
    return payment_id


async def insert_refund(
    db: Runner, user: User, payment_id: uuid.UUID, *, livemode: bool, amount: int = 100
) -> uuid.UUID:
    now = datetime.now(UTC) + timedelta(microseconds=1)
    refund_id = uuid.uuid4()
    await db.execute(
        table_of(Refund).insert(),
        {
            "id": refund_id,
            "payment_id": payment_id,
            "user_id": uuid.UUID(user.id),
            "amount": amount,
            "currency": "USD",
            "status": "succeeded",
            "reason": None,
            "processor_reference": None,
            "livemode": livemode,
            "created_at": now,
            "updated_at": now,
        },
    )
    return refund_id


async def get_list(api: Api, user: User, path: str, **params: Any) -> dict[str, Any]:
    response = await api.client.get(path, params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"data", "has_more", "next_cursor"}
    return body


async def walk(api: Api, user: User, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every page, following next_cursor, checking has_more on the way."""
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    limit = params.get("limit", 20)
    for _ in range(1000):
        query = dict(params)
        if cursor is not None:
            query["cursor"] = cursor
        page = await get_list(api, user, path, **query)
        seen.extend(page["data"])
        if not page["has_more"]:
            assert page["next_cursor"] is None
            return seen
        assert len(page["data"]) == limit
        cursor = page["next_cursor"]
    raise AssertionError("pagination did not end")
