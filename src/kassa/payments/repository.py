"""Every payment query. Gets its session; never commits."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kassa.payments.models import Payment, PaymentSecret
from kassa.payments.states import PaymentStatus


async def get_payment(
    session: AsyncSession, user_id: uuid.UUID, payment_id: uuid.UUID
) -> Payment | None:
    result = await session.execute(
        select(Payment).where(Payment.id == payment_id, Payment.user_id == user_id)
    )
    return result.scalar_one_or_none()


async def lock_payment(
    session: AsyncSession, user_id: uuid.UUID, payment_id: uuid.UUID
) -> Payment | None:
    """The payment with a row lock held until the transaction ends (PostgreSQL); SQLite's
    write transactions are already serialized."""
    result = await session.execute(
        select(Payment)
        .where(Payment.id == payment_id, Payment.user_id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return result.scalar_one_or_none()


async def transition(
    session: AsyncSession,
    user_id: uuid.UUID,
    payment_id: uuid.UUID,
    sources: Iterable[PaymentStatus],
    target: PaymentStatus,
    **values: Any,
) -> Payment | None:
    """Move the payment to `target` only if it is in one of `sources` — one statement, so
    of two racing requests exactly one wins. None when the payment was not in a source."""
    result = await session.execute(
        update(Payment)
        .where(
            Payment.id == payment_id,
            Payment.user_id == user_id,
            Payment.status.in_([s.value for s in sources]),
        )
        .values(status=target.value, **values)
        .returning(Payment)
        .execution_options(populate_existing=True, synchronize_session=False)
    )
    return result.scalar_one_or_none()


async def get_secret(session: AsyncSession, payment_id: uuid.UUID) -> PaymentSecret | None:
    return await session.get(PaymentSecret, payment_id, populate_existing=True)


async def forget_cvc(session: AsyncSession, payment_id: uuid.UUID) -> None:
    await session.execute(
        update(PaymentSecret)
        .where(PaymentSecret.payment_id == payment_id)
        .values(cvc_key_id=None, cvc_sealed=None)
    )


async def delete_secret(session: AsyncSession, payment_id: uuid.UUID) -> None:
    await session.execute(delete(PaymentSecret).where(PaymentSecret.payment_id == payment_id))


async def list_stale_processing(
    session: AsyncSession, before: datetime, after_id: uuid.UUID | None, limit: int
) -> Sequence[Payment]:
    """Payments left `processing` since before `before` (a crash or an unknown answer),
    in id order so a batch loop can resume after the last one it saw."""
    query = select(Payment).where(
        Payment.status == PaymentStatus.PROCESSING.value, Payment.updated_at < before
    )
    if after_id is not None:
        query = query.where(Payment.id > after_id)
    result = await session.execute(query.order_by(Payment.id).limit(limit))
    return result.scalars().all()


async def count_stale_processing(session: AsyncSession, before: datetime) -> int:
    result = await session.scalar(
        select(func.count())
        .select_from(Payment)
        .where(Payment.status == PaymentStatus.PROCESSING.value, Payment.updated_at < before)
    )
    return int(result or 0)
