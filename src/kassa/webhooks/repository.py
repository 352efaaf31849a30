"""Every webhook query. Gets its session; never commits."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kassa.pagination import Cursor
from kassa.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


async def get_endpoint(
    session: AsyncSession, user_id: uuid.UUID, endpoint_id: uuid.UUID
) -> WebhookEndpoint | None:
    result = await session.execute(
        select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint_id, WebhookEndpoint.user_id == user_id
        )
    )
    return result.scalar_one_or_none()


async def lock_endpoint(session: AsyncSession, endpoint_id: uuid.UUID) -> WebhookEndpoint | None:
    result = await session.execute(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return result.scalar_one_or_none()


async def count_endpoints(session: AsyncSession, user_id: uuid.UUID) -> int:
    result = await session.execute(
        select(func.count()).select_from(WebhookEndpoint).where(WebhookEndpoint.user_id == user_id)
    )
    return int(result.scalar_one())


async def list_endpoints(session: AsyncSession, user_id: uuid.UUID) -> Sequence[WebhookEndpoint]:
    result = await session.execute(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.user_id == user_id)
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    )
    return result.scalars().all()


async def delete_endpoint(
    session: AsyncSession, user_id: uuid.UUID, endpoint_id: uuid.UUID
) -> bool | None:
    """Deletes the endpoint; its deliveries and attempts go with it (ON DELETE CASCADE).
    The deleted endpoint's mode (livemode), or None when there was no such endpoint."""
    result = await session.execute(
        delete(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.user_id == user_id)
        .returning(WebhookEndpoint.livemode)
    )
    livemode: bool | None = result.scalar_one_or_none()
    return livemode


async def lock_deliveries_of_event(
    session: AsyncSession, event_id: uuid.UUID
) -> Sequence[WebhookDelivery]:
    result = await session.execute(
        select(WebhookDelivery)
        .where(WebhookDelivery.event_id == event_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return result.scalars().all()


# Claims are serialized by this transaction-scoped lock (PostgreSQL; SQLite serializes
# writers anyway), so that counting an endpoint's leased deliveries and leasing more is one
# decision: the per-endpoint cap holds across every worker. A claim is one short statement.
_CLAIM_LOCK = 0x6B61737361_01  # "kassa", 1


async def claim_due(
    session: AsyncSession, now: datetime, limit: int, per_endpoint: int
) -> Sequence[tuple[WebhookDelivery, WebhookEndpoint]]:
    """Due deliveries of enabled endpoints, oldest due first, at most `per_endpoint` in flight
    per endpoint (counting the leases already out, by any worker), row-locked with SKIP
    LOCKED (PostgreSQL) so that a delivery being recorded is passed over."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(_CLAIM_LOCK)))
    d = WebhookDelivery
    due = and_(
        d.status == "pending",
        d.next_attempt_at <= now,
        or_(d.lease_until.is_(None), d.lease_until <= now),
        WebhookEndpoint.enabled.is_(True),
    )
    in_flight = (
        select(d.endpoint_id, func.count().label("leased"))
        .where(d.status == "pending", d.lease_until > now)
        .group_by(d.endpoint_id)
        .subquery()
    )
    ranked = (
        select(
            d.id,
            d.endpoint_id,
            d.next_attempt_at,
            func.row_number()
            .over(partition_by=d.endpoint_id, order_by=(d.next_attempt_at, d.id))
            .label("rank"),
        )
        .join(WebhookEndpoint, WebhookEndpoint.id == d.endpoint_id)
        .where(due)
        .subquery()
    )
    chosen = (
        select(ranked.c.id)
        .outerjoin(in_flight, in_flight.c.endpoint_id == ranked.c.endpoint_id)
        .where(ranked.c.rank <= per_endpoint - func.coalesce(in_flight.c.leased, 0))
        .order_by(ranked.c.next_attempt_at, ranked.c.id)
        .limit(limit)
    )
    query = (
        select(d, WebhookEndpoint)
        .join(WebhookEndpoint, WebhookEndpoint.id == d.endpoint_id)
        .where(d.id.in_(chosen), due)
        .order_by(d.next_attempt_at, d.id)
        .with_for_update(skip_locked=True, of=d)
        .execution_options(populate_existing=True)
    )
    return [(row[0], row[1]) for row in (await session.execute(query)).all()]


async def lease(
    session: AsyncSession,
    delivery_ids: Iterable[uuid.UUID],
    until: datetime,
    token: uuid.UUID,
    now: datetime,
) -> None:
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(list(delivery_ids)))
        .values(lease_until=until, lease_token=token, updated_at=now)
    )


async def lock_delivery(session: AsyncSession, delivery_id: uuid.UUID) -> WebhookDelivery | None:
    result = await session.execute(
        select(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return result.scalar_one_or_none()


async def fail_pending_deliveries(
    session: AsyncSession, endpoint_id: uuid.UUID, error: str, now: datetime
) -> None:
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == "pending")
        .values(
            status="failed", lease_until=None, lease_token=None, last_error=error, updated_at=now
        )
    )


async def list_attempts(
    session: AsyncSession, endpoint_id: uuid.UUID, *, limit: int, cursor: Cursor | None
) -> Sequence[WebhookAttempt]:
    query = select(WebhookAttempt).where(WebhookAttempt.endpoint_id == endpoint_id)
    if cursor is not None:
        query = query.where(
            or_(
                WebhookAttempt.created_at < cursor.created_at,
                and_(
                    WebhookAttempt.created_at == cursor.created_at,
                    WebhookAttempt.id < cursor.id,
                ),
            )
        )
    query = query.order_by(WebhookAttempt.created_at.desc(), WebhookAttempt.id.desc()).limit(limit)
    return (await session.execute(query)).scalars().all()


async def count_secrets_to_reseal(session: AsyncSession, primary_kid: str) -> int:
    result = await session.scalar(
        select(func.count())
        .select_from(WebhookEndpoint)
        .where(WebhookEndpoint.secret_key_id != primary_kid)
    )
    return int(result or 0)


async def lock_secrets_to_reseal(
    session: AsyncSession, primary_kid: str, after_id: uuid.UUID | None, limit: int
) -> Sequence[WebhookEndpoint]:
    """Endpoints whose signing secret is sealed under another key than `primary_kid`,
    locked, in id order after `after_id` so a batch loop moves past rows it cannot open."""
    query = select(WebhookEndpoint).where(WebhookEndpoint.secret_key_id != primary_kid)
    if after_id is not None:
        query = query.where(WebhookEndpoint.id > after_id)
    result = await session.execute(
        query.order_by(WebhookEndpoint.id)
        .limit(limit)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return result.scalars().all()
