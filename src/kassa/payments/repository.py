"""Every payment query. Gets its session; never commits."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, select, update
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
