"""Every webhook query. Runs on the `Runner` it is given; never commits."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import and_, bindparam, delete, func, or_, select, update

from kassa.db import Runner, record_of, table_of, values_of
from kassa.pagination import Cursor
from kassa.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

_ENDPOINT = table_of(WebhookEndpoint)
_DELIVERY = table_of(WebhookDelivery)
_ATTEMPT = table_of(WebhookAttempt)
_GET_ENDPOINT = select(_ENDPOINT).where(
    _ENDPOINT.c.id == bindparam("endpoint"),
    _ENDPOINT.c.user_id == bindparam("owner"),
    _ENDPOINT.c.livemode == bindparam("livemode"),
)
_LOCK_ENDPOINT = select(_ENDPOINT).where(_ENDPOINT.c.id == bindparam("endpoint")).with_for_update()
_LOCK_DELIVERY = select(_DELIVERY).where(_DELIVERY.c.id == bindparam("delivery")).with_for_update()
_SAVE_ENDPOINT = update(_ENDPOINT).where(_ENDPOINT.c.id == bindparam("endpoint"))
_SAVE_DELIVERY = update(_DELIVERY).where(_DELIVERY.c.id == bindparam("delivery"))


async def get_endpoint(
    db: Runner, user_id: uuid.UUID, endpoint_id: uuid.UUID, livemode: bool
) -> WebhookEndpoint | None:
    """One of the user's endpoints of one mode."""
    row = await db.first(
        _GET_ENDPOINT, {"endpoint": endpoint_id, "owner": user_id, "livemode": livemode}
    )
    return None if row is None else record_of(WebhookEndpoint, row)


async def lock_endpoint(db: Runner, endpoint_id: uuid.UUID) -> WebhookEndpoint | None:
    """The endpoint, row-locked until the transaction ends; a detached copy whose changes
    `save_endpoint` writes back."""
    row = await db.first(_LOCK_ENDPOINT, {"endpoint": endpoint_id})
    return None if row is None else record_of(WebhookEndpoint, row)


async def insert_endpoint(db: Runner, endpoint: WebhookEndpoint) -> None:
    await db.execute(_ENDPOINT.insert(), values_of(endpoint))


async def save_endpoint(db: Runner, endpoint: WebhookEndpoint) -> None:
    """Write a locked endpoint's columns back."""
    values = values_of(endpoint)
    values.pop("id")
    await db.execute(_SAVE_ENDPOINT, {"endpoint": endpoint.id, **values})


async def count_endpoints(db: Runner, user_id: uuid.UUID, livemode: bool) -> int:
    result = await db.scalar(
        select(func.count())
        .select_from(_ENDPOINT)
        .where(_ENDPOINT.c.user_id == user_id, _ENDPOINT.c.livemode == livemode)
    )
    return int(result or 0)


async def list_endpoints(
    db: Runner, user_id: uuid.UUID, livemode: bool
) -> Sequence[WebhookEndpoint]:
    rows = await db.rows(
        select(_ENDPOINT)
        .where(_ENDPOINT.c.user_id == user_id, _ENDPOINT.c.livemode == livemode)
        .order_by(_ENDPOINT.c.created_at, _ENDPOINT.c.id)
    )
    return [record_of(WebhookEndpoint, row) for row in rows]


async def delete_endpoint(
    db: Runner, user_id: uuid.UUID, endpoint_id: uuid.UUID, livemode: bool
) -> bool | None:
    """Deletes the user's endpoint of that mode; its deliveries and attempts go with it (ON
    DELETE CASCADE). The deleted endpoint's mode (livemode), or None when there was no such
    endpoint."""
    row = await db.first(
        delete(_ENDPOINT)
        .where(
            _ENDPOINT.c.id == endpoint_id,
            _ENDPOINT.c.user_id == user_id,
            _ENDPOINT.c.livemode == livemode,
        )
        .returning(_ENDPOINT.c.livemode)
    )
    return None if row is None else bool(row["livemode"])


async def lock_deliveries_of_event(db: Runner, event_id: uuid.UUID) -> Sequence[WebhookDelivery]:
    rows = await db.rows(
        select(_DELIVERY).where(_DELIVERY.c.event_id == event_id).with_for_update()
    )
    return [record_of(WebhookDelivery, row) for row in rows]


async def insert_deliveries(db: Runner, deliveries: Sequence[dict[str, object]]) -> None:
    await db.execute(_DELIVERY.insert(), list(deliveries))


async def save_delivery(db: Runner, delivery: WebhookDelivery) -> None:
    """Write a locked delivery's columns back."""
    values = values_of(delivery)
    values.pop("id")
    await db.execute(_SAVE_DELIVERY, {"delivery": delivery.id, **values})


# Claims are serialized by this transaction-scoped lock (PostgreSQL; SQLite serializes
# writers anyway), so that counting an endpoint's leased deliveries and leasing more is one
# decision: the per-endpoint cap holds across every worker. A claim is one short statement.
_CLAIM_LOCK = 0x6B61737361_01  # "kassa", 1


async def claim_due(
    db: Runner, now: datetime, limit: int, per_endpoint: int
) -> Sequence[tuple[WebhookDelivery, WebhookEndpoint]]:
    """Due deliveries of enabled endpoints, oldest due first, at most `per_endpoint` in flight
    per endpoint (counting the leases already out, by any worker), row-locked with SKIP
    LOCKED (PostgreSQL) so that a delivery being recorded is passed over."""
    if db.dialect == "postgresql":
        await db.scalar(select(func.pg_advisory_xact_lock(_CLAIM_LOCK)))
    d = _DELIVERY.c
    e = _ENDPOINT.c
    due = and_(
        d.status == "pending",
        d.next_attempt_at <= now,
        or_(d.lease_until.is_(None), d.lease_until <= now),
        e.enabled.is_(True),
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
        .join(_ENDPOINT, e.id == d.endpoint_id)
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
    endpoint_columns = [column.label(f"endpoint__{column.name}") for column in _ENDPOINT.c]
    query = (
        select(_DELIVERY, *endpoint_columns)
        .join(_ENDPOINT, e.id == d.endpoint_id)
        .where(d.id.in_(chosen), due)
        .order_by(d.next_attempt_at, d.id)
        .with_for_update(skip_locked=True, of=_DELIVERY)
    )
    found = []
    for row in await db.rows(query):
        delivery = {c.name: row[c.name] for c in _DELIVERY.c}
        endpoint = {c.name: row[f"endpoint__{c.name}"] for c in _ENDPOINT.c}
        found.append((record_of(WebhookDelivery, delivery), record_of(WebhookEndpoint, endpoint)))
    return found


async def lease(
    db: Runner,
    delivery_ids: Iterable[uuid.UUID],
    until: datetime,
    token: uuid.UUID,
    now: datetime,
) -> None:
    await db.execute(
        update(_DELIVERY)
        .where(_DELIVERY.c.id.in_(list(delivery_ids)))
        .values(lease_until=until, lease_token=token, updated_at=now)
    )


async def lock_delivery(db: Runner, delivery_id: uuid.UUID) -> WebhookDelivery | None:
    """The delivery, row-locked until the transaction ends; a detached copy whose changes
    `save_delivery` writes back."""
    row = await db.first(_LOCK_DELIVERY, {"delivery": delivery_id})
    return None if row is None else record_of(WebhookDelivery, row)


async def insert_attempt(db: Runner, attempt: WebhookAttempt) -> None:
    await db.execute(_ATTEMPT.insert(), values_of(attempt))


async def fail_pending_deliveries(
    db: Runner, endpoint_id: uuid.UUID, error: str, now: datetime
) -> None:
    await db.execute(
        update(_DELIVERY)
        .where(_DELIVERY.c.endpoint_id == endpoint_id, _DELIVERY.c.status == "pending")
        .values(
            status="failed", lease_until=None, lease_token=None, last_error=error, updated_at=now
        )
    )


async def list_attempts(
    db: Runner, endpoint_id: uuid.UUID, *, limit: int, cursor: Cursor | None
) -> Sequence[WebhookAttempt]:
    a = _ATTEMPT.c
    query = select(_ATTEMPT).where(a.endpoint_id == endpoint_id)
    if cursor is not None:
        query = query.where(
            or_(
                a.created_at < cursor.created_at,
                and_(a.created_at == cursor.created_at, a.id < cursor.id),
            )
        )
    query = query.order_by(a.created_at.desc(), a.id.desc()).limit(limit)
    return [record_of(WebhookAttempt, row) for row in await db.rows(query)]


async def count_secrets_to_reseal(db: Runner, primary_kid: str) -> int:
    result = await db.scalar(
        select(func.count()).select_from(_ENDPOINT).where(_ENDPOINT.c.secret_key_id != primary_kid)
    )
    return int(result or 0)


async def lock_secrets_to_reseal(
    db: Runner, primary_kid: str, after_id: uuid.UUID | None, limit: int
) -> Sequence[WebhookEndpoint]:
    """Endpoints whose signing secret is sealed under another key than `primary_kid`,
    locked, in id order after `after_id` so a batch loop moves past rows it cannot open.
    Detached copies: write changes back with `save_endpoint`."""
    query = select(_ENDPOINT).where(_ENDPOINT.c.secret_key_id != primary_kid)
    if after_id is not None:
        query = query.where(_ENDPOINT.c.id > after_id)
    rows = await db.rows(query.order_by(_ENDPOINT.c.id).limit(limit).with_for_update())
    return [record_of(WebhookEndpoint, row) for row in rows]
