"""Every refund query. Runs on the `Runner` it is given; never commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update

from kassa.db import Runner, record_of, table_of
from kassa.pagination import Cursor, before_cursor
from kassa.refunds.models import Refund

_REFUND = table_of(Refund)
_INSERT = _REFUND.insert()
_GET = select(_REFUND).where(_REFUND.c.id == bindparam("refund"))
_SET_OUTCOME = update(_REFUND).where(_REFUND.c.id == bindparam("refund"))


async def insert_refund(db: Runner, values: dict[str, Any]) -> Refund:
    await db.execute(_INSERT, values)
    return record_of(Refund, values)


async def get_refund(db: Runner, refund_id: uuid.UUID) -> Refund | None:
    row = await db.first(_GET, {"refund": refund_id})
    return None if row is None else record_of(Refund, row)


async def set_outcome(db: Runner, refund: Refund) -> None:
    """Write a settled refund's status, processor reference and update time back."""
    await db.execute(
        _SET_OUTCOME,
        {
            "refund": refund.id,
            "status": refund.status,
            "processor_reference": refund.processor_reference,
            "updated_at": refund.updated_at,
        },
    )


async def list_stale_pending(
    db: Runner, before: datetime, after_id: uuid.UUID | None, limit: int
) -> Sequence[Refund]:
    query = select(_REFUND).where(_REFUND.c.status == "pending", _REFUND.c.updated_at < before)
    if after_id is not None:
        query = query.where(_REFUND.c.id > after_id)
    rows = await db.rows(query.order_by(_REFUND.c.id).limit(limit))
    return [record_of(Refund, row) for row in rows]


_OWN_MODE = (_REFUND.c.user_id == bindparam("owner")) & (
    _REFUND.c.livemode == bindparam("livemode")
)
_NEWEST_FIRST = (_REFUND.c.created_at.desc(), _REFUND.c.id.desc())


def list_statement(payment_id: uuid.UUID | None, cursor: Cursor | None) -> Any:
    """The statement `list_refunds` runs (its parameters: owner, livemode, limit)."""
    statement = select(_REFUND).where(_OWN_MODE)
    if payment_id is not None:
        statement = statement.where(_REFUND.c.payment_id == payment_id)
    if cursor is not None:
        statement = statement.where(before_cursor(_REFUND.c.created_at, _REFUND.c.id, cursor))
    return statement.order_by(*_NEWEST_FIRST).limit(bindparam("limit"))


async def list_refunds(
    db: Runner,
    user_id: uuid.UUID,
    livemode: bool,
    *,
    payment_id: uuid.UUID | None,
    cursor: Cursor | None,
    limit: int,
) -> list[Refund]:
    """The user's refunds of one mode (of one payment when `payment_id` is given), newest
    first (created_at, id descending), after `cursor`, at most `limit`."""
    rows = await db.rows(
        list_statement(payment_id, cursor), {"owner": user_id, "livemode": livemode, "limit": limit}
    )
    return [record_of(Refund, row) for row in rows]
