"""Every transaction query. Runs on the `Runner` it is given; never commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import CTE, and_, bindparam, or_, select, update

from kassa.db import Runner, bound_row, gated_insert, happened, record_of, table_of
from kassa.pagination import Cursor
from kassa.transactions.models import Transaction

_TRANSACTION = table_of(Transaction)
_INSERT = _TRANSACTION.insert()
_SET_CHARGE_STATUS = update(_TRANSACTION).where(
    _TRANSACTION.c.payment_id == bindparam("of_payment"), _TRANSACTION.c.type == "charge"
)
_SET_CHARGE_CAPTURED = _SET_CHARGE_STATUS.values(amount=bindparam("captured"))
_SET_REFUND_STATUS = update(_TRANSACTION).where(_TRANSACTION.c.refund_id == bindparam("of_refund"))


def insert_part(gate: CTE, name: str) -> CTE:
    """PostgreSQL: a transaction row (parameters `t_<column>`) written when `gate` returned
    a row."""
    return gated_insert(_TRANSACTION, "t_", gate, name)


def insert_values(values: dict[str, object]) -> dict[str, object]:
    return bound_row(_TRANSACTION, "t_", values)


def set_status_part(gate: CTE, *, of_refund: bool) -> CTE:
    """PostgreSQL: set the charge's (or, `of_refund`, the refund's) transaction status
    (`t_status`, `t_at`, `t_of`) when `gate` returned a row."""
    t = _TRANSACTION.c
    which = (
        t.refund_id == bindparam("t_of")
        if of_refund
        else (t.payment_id == bindparam("t_of")) & (t.type == "charge")
    )
    return (
        update(_TRANSACTION)
        .where(which, happened(gate))
        .values(
            status=bindparam("t_status"),
            updated_at=bindparam("t_at", type_=t.updated_at.type),
        )
        .returning(t.id)
        .cte("refund_transaction_settled" if of_refund else "charge_transaction_settled")
    )


async def insert(db: Runner, values: dict[str, object]) -> None:
    await db.execute(_INSERT, values)


async def list_transactions(
    db: Runner,
    user_id: uuid.UUID,
    *,
    livemode: bool,
    limit: int,
    cursor: Cursor | None,
    type_: str | None,
    status: str | None,
) -> Sequence[Transaction]:
    t = _TRANSACTION.c
    query = select(_TRANSACTION).where(t.user_id == user_id, t.livemode == livemode)
    if type_ is not None:
        query = query.where(t.type == type_)
    if status is not None:
        query = query.where(t.status == status)
    if cursor is not None:
        query = query.where(
            or_(
                t.created_at < cursor.created_at,
                and_(t.created_at == cursor.created_at, t.id < cursor.id),
            )
        )
    query = query.order_by(t.created_at.desc(), t.id.desc()).limit(limit)
    return [record_of(Transaction, row) for row in await db.rows(query)]


async def set_charge_status(db: Runner, payment_id: uuid.UUID, status: str, now: datetime) -> None:
    await db.execute(
        _SET_CHARGE_STATUS, {"of_payment": payment_id, "status": status, "updated_at": now}
    )


async def set_charge_captured(
    db: Runner, payment_id: uuid.UUID, status: str, amount: int, now: datetime
) -> None:
    await db.execute(
        _SET_CHARGE_CAPTURED,
        {"of_payment": payment_id, "status": status, "captured": amount, "updated_at": now},
    )


async def set_refund_status(db: Runner, refund_id: uuid.UUID, status: str, now: datetime) -> None:
    await db.execute(
        _SET_REFUND_STATUS, {"of_refund": refund_id, "status": status, "updated_at": now}
    )
