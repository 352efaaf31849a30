"""The user's charge and refund history, written beside every money movement."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import CTE

from kassa.db import Database, Runner, new_id
from kassa.pagination import Cursor
from kassa.transactions import repository
from kassa.transactions.models import Transaction


@dataclass(frozen=True, slots=True)
class TransactionPage:
    data: Sequence[Transaction]
    has_more: bool
    next_cursor: str | None


def _row(
    type_: str,
    user_id: uuid.UUID,
    livemode: bool,
    payment_id: uuid.UUID,
    refund_id: uuid.UUID | None,
    amount: int,
    currency: str,
    status: str,
    payment_method: str,
    now: datetime,
) -> dict[str, object]:
    return {
        "id": new_id(),
        "user_id": user_id,
        "livemode": livemode,
        "type": type_,
        "payment_id": payment_id,
        "refund_id": refund_id,
        "amount": amount,
        "currency": currency,
        "status": status,
        "payment_method": payment_method,
        "created_at": now,
        "updated_at": now,
    }


class TransactionService:
    def __init__(self, db: Database) -> None:
        self._db = db

    # PostgreSQL: the same rows inside a statement of several writes, when its `gate`
    # returned a row (see `kassa.db.gated_insert`).

    @staticmethod
    def record_part(gate: CTE, name: str) -> CTE:
        return repository.insert_part(gate, name)

    @staticmethod
    def settle_part(gate: CTE, *, of_refund: bool) -> CTE:
        return repository.set_status_part(gate, of_refund=of_refund)

    @staticmethod
    def charge_values(
        *,
        user_id: uuid.UUID,
        livemode: bool,
        payment_id: uuid.UUID,
        amount: int,
        currency: str,
        payment_method: str,
        now: datetime,
    ) -> dict[str, object]:
        return repository.insert_values(
            _row(
                "charge",
                user_id,
                livemode,
                payment_id,
                None,
                amount,
                currency,
                "pending",
                payment_method,
                now,
            )
        )

    @staticmethod
    def refund_values(
        *,
        user_id: uuid.UUID,
        livemode: bool,
        payment_id: uuid.UUID,
        refund_id: uuid.UUID,
        amount: int,
        currency: str,
        payment_method: str,
        now: datetime,
    ) -> dict[str, object]:
        return repository.insert_values(
            _row(
                "refund",
                user_id,
                livemode,
                payment_id,
                refund_id,
                amount,
                currency,
                "pending",
                payment_method,
                now,
            )
        )

    @staticmethod
    def settle_values(of: uuid.UUID, status: str, now: datetime) -> dict[str, object]:
        return {"t_of": of, "t_status": status, "t_at": now}

    @staticmethod
    async def record_charge(
        db: Runner,
        *,
        user_id: uuid.UUID,
        livemode: bool,
        payment_id: uuid.UUID,
        amount: int,
        currency: str,
        payment_method: str,
        now: datetime,
    ) -> None:
        """Add the pending `charge` of a payment whose processing starts (of its mode); call
        inside the transaction that moves the payment to `processing`."""
        await repository.insert(
            db,
            {
                "id": new_id(),
                "user_id": user_id,
                "livemode": livemode,
                "type": "charge",
                "payment_id": payment_id,
                "refund_id": None,
                "amount": amount,
                "currency": currency,
                "status": "pending",
                "payment_method": payment_method,
                "created_at": now,
                "updated_at": now,
            },
        )

    @staticmethod
    async def record_refund(
        db: Runner,
        *,
        user_id: uuid.UUID,
        livemode: bool,
        payment_id: uuid.UUID,
        refund_id: uuid.UUID,
        amount: int,
        currency: str,
        payment_method: str,
        status: str,
        now: datetime,
    ) -> None:
        await repository.insert(
            db,
            {
                "id": new_id(),
                "user_id": user_id,
                "livemode": livemode,
                "type": "refund",
                "payment_id": payment_id,
                "refund_id": refund_id,
                "amount": amount,
                "currency": currency,
                "status": status,
                "payment_method": payment_method,
                "created_at": now,
                "updated_at": now,
            },
        )

    @staticmethod
    async def settle_charge(
        db: Runner,
        payment_id: uuid.UUID,
        succeeded: bool,
        now: datetime,
        *,
        amount: int | None = None,
    ) -> None:
        """The charge's outcome; with `amount`, what it took (a capture of part of an
        authorization), which is what the transaction then shows."""
        status = "succeeded" if succeeded else "failed"
        if amount is None:
            await repository.set_charge_status(db, payment_id, status, now)
        else:
            await repository.set_charge_captured(db, payment_id, status, amount, now)

    @staticmethod
    async def settle_refund(db: Runner, refund_id: uuid.UUID, status: str, now: datetime) -> None:
        await repository.set_refund_status(db, refund_id, status, now)

    async def list(
        self,
        user_id: uuid.UUID,
        *,
        livemode: bool,
        limit: int,
        cursor: str | None,
        type_: str | None,
        status: str | None,
    ) -> TransactionPage:
        after = Cursor.decode(cursor) if cursor else None
        rows = await repository.list_transactions(
            self._db,
            user_id,
            livemode=livemode,
            limit=limit + 1,
            cursor=after,
            type_=type_,
            status=status,
        )
        page = rows[:limit]
        has_more = len(rows) > limit
        next_cursor = Cursor(page[-1].created_at, page[-1].id).encode() if has_more else None
        return TransactionPage(data=page, has_more=has_more, next_cursor=next_cursor)
