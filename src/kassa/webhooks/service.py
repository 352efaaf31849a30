"""Webhook endpoints and the delivery queue (the outbox side).

`enqueue` and `redeliver` run inside the caller's transaction (the events service's), so a
delivery exists exactly when its event does. Sending is `kassa.webhooks.delivery`'s job.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import CTE, Insert, bindparam, cast, func, insert, literal, or_, select
from sqlalchemy.dialects.postgresql import JSONB

from kassa.auditlog.service import Actor, AuditLog
from kassa.db import Database, Runner, new_id, table_of
from kassa.errors import FieldError, ValidationFailed
from kassa.pagination import Cursor
from kassa.vault.crypto import Sealed, Vault, VaultError
from kassa.vault.rotation import ResealBatch
from kassa.webhooks import repository
from kassa.webhooks.errors import TooManyWebhooks, WebhookNotFound, WebhookUrlRefused
from kassa.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from kassa.webhooks.urls import (
    AddressRefused,
    Resolver,
    UrlRejected,
    parse_url,
    resolve_and_check,
)

log = structlog.get_logger("kassa.webhooks")

MAX_ENDPOINTS_PER_USER = 20
SECRET_BYTES = 32
SECRET_PREFIX = "whsec_"  # noqa: S105  (the Standard Webhooks prefix)
ALL_EVENTS = "*"

_ENDPOINT = table_of(WebhookEndpoint)
_ENABLED_ENDPOINTS = (
    select(_ENDPOINT.c.id, _ENDPOINT.c.events)
    .where(
        _ENDPOINT.c.user_id == bindparam("owner"),
        _ENDPOINT.c.livemode == bindparam("livemode"),
        _ENDPOINT.c.enabled.is_(True),
    )
    .order_by(_ENDPOINT.c.created_at, _ENDPOINT.c.id)
)
_DELIVERY = table_of(WebhookDelivery)


def queue_for_subscribers(event: CTE) -> Insert:
    """PostgreSQL: the deliveries of the event that `event` (an INSERT … RETURNING id, type,
    user_id, livemode, created_at) writes, one per enabled endpoint of its user and mode
    subscribed to its type, with the JSON bound as `body`: `enqueue` in the same statement as
    the event's insert."""
    return deliveries_of(event).add_cte(event)


def deliveries_of(event: CTE) -> Insert:
    """`queue_for_subscribers` without the event's CTE, for a statement that holds it."""
    endpoint = _ENDPOINT
    events = cast(endpoint.c.events, JSONB)
    due = event.c.created_at
    subscribers = select(
        func.gen_random_uuid(),
        endpoint.c.id,
        endpoint.c.user_id,
        event.c.id,
        event.c.type,
        bindparam("body", type_=_DELIVERY.c.body.type),
        literal("pending"),
        literal(0),
        due,
        due,
        due,
        due,
    ).where(
        endpoint.c.user_id == event.c.user_id,
        endpoint.c.livemode == event.c.livemode,
        endpoint.c.enabled.is_(True),
        or_(events.has_key(event.c.type), events.has_key(ALL_EVENTS)),
    )
    columns = [
        "id",
        "endpoint_id",
        "user_id",
        "event_id",
        "event_type",
        "body",
        "status",
        "attempt_count",
        "window_started_at",
        "next_attempt_at",
        "created_at",
        "updated_at",
    ]
    return insert(_DELIVERY).from_select(columns, subscribers)


@dataclass(frozen=True, slots=True)
class CreatedEndpoint:
    endpoint: WebhookEndpoint
    secret: str  # in clear only here, for the one response that shows it


@dataclass(frozen=True, slots=True)
class AttemptPage:
    data: Sequence[WebhookAttempt]
    has_more: bool
    next_cursor: str | None


def secret_context(endpoint_id: uuid.UUID) -> bytes:
    return f"webhook:{endpoint_id}:secret".encode()


def subscribed(events: Sequence[str], event_type: str) -> bool:
    return ALL_EVENTS in events or event_type in events


async def _subscribers(
    db: Runner, user_id: uuid.UUID, livemode: bool, event_type: str
) -> list[uuid.UUID]:
    """The user's enabled endpoints of one mode subscribed to `event_type`, oldest first."""
    rows = await db.rows(_ENABLED_ENDPOINTS, {"owner": user_id, "livemode": livemode})
    return [row["id"] for row in rows if subscribed(row["events"], event_type)]


def delivery_row(
    endpoint_id: uuid.UUID,
    *,
    user_id: uuid.UUID,
    event_id: uuid.UUID,
    event_type: str,
    body: str,
    now: datetime,
) -> dict[str, object]:
    """A new delivery of an event to an endpoint, due now, as the columns of its row."""
    return {
        "id": new_id(),
        "endpoint_id": endpoint_id,
        "user_id": user_id,
        "event_id": event_id,
        "event_type": event_type,
        "body": body,
        "status": "pending",
        "attempt_count": 0,
        "window_started_at": now,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }


class WebhookService:
    def __init__(
        self,
        db: Database,
        vault: Vault,
        clock: Callable[[], datetime],
        *,
        event_types: Sequence[str],
        require_https: bool,
        allow_private: bool,
        resolver: Resolver,
    ) -> None:
        self._db = db
        self._vault = vault
        self._clock = clock
        self._event_types = tuple(event_types)
        self._require_https = require_https
        self._allow_private = allow_private
        self._resolver = resolver

    def _check_events(self, events: Sequence[str]) -> list[str]:
        if list(events) == [ALL_EVENTS]:
            return [ALL_EVENTS]
        if ALL_EVENTS in events:
            raise ValidationFailed([FieldError("events", '"*" must be the only entry')])
        unknown = [e for e in events if e not in self._event_types]
        if unknown:
            # The client's value is not echoed: the list of valid types says it all.
            raise ValidationFailed(
                [FieldError("events", "unknown event type; use " + ", ".join(self._event_types))]
            )
        return list(dict.fromkeys(events))

    async def create(
        self,
        user_id: uuid.UUID,
        url: str,
        events: Sequence[str],
        actor: Actor | None = None,
        *,
        livemode: bool,
    ) -> CreatedEndpoint:
        """A new enabled endpoint of one mode (it receives that mode's events only). Its URL
        must be allowed now (after DNS resolution) and is checked again before every
        delivery. Audited (`webhook_endpoint.created`) in the transaction that adds it."""
        subscriptions = self._check_events(events)
        try:
            target = parse_url(url, require_https=self._require_https)
        except UrlRejected as exc:
            raise ValidationFailed([FieldError("url", str(exc))]) from None
        try:
            await resolve_and_check(target, self._resolver, allow_private=self._allow_private)
        except AddressRefused as exc:
            raise WebhookUrlRefused(str(exc)) from None
        endpoint_id = new_id()
        secret = SECRET_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode("ascii")
        sealed = self._vault.encrypt(secret, context=secret_context(endpoint_id))
        now = self._clock()
        endpoint = WebhookEndpoint(
            id=endpoint_id,
            user_id=user_id,
            url=url,
            events=subscriptions,
            secret_key_id=sealed.kid,
            secret_sealed=sealed.blob,
            enabled=True,
            livemode=livemode,
            created_at=now,
            updated_at=now,
        )
        async with self._db.transaction() as db:
            # Each mode has its own allowance: test endpoints never crowd out live ones.
            if await repository.count_endpoints(db, user_id, livemode) >= MAX_ENDPOINTS_PER_USER:
                raise TooManyWebhooks(MAX_ENDPOINTS_PER_USER)
            await repository.insert_endpoint(db, endpoint)
            await AuditLog.record(
                db,
                actor or Actor(user_id),
                "webhook_endpoint.created",
                object_type="webhook_endpoint",
                object_id=endpoint_id,
                at=now,
                user_id=user_id,
                livemode=bool(endpoint.livemode),
            )
        return CreatedEndpoint(endpoint=endpoint, secret=secret)

    async def list(self, user_id: uuid.UUID, *, livemode: bool) -> Sequence[WebhookEndpoint]:
        return await repository.list_endpoints(self._db, user_id, livemode)

    async def get(
        self, user_id: uuid.UUID, endpoint_id: uuid.UUID, *, livemode: bool
    ) -> WebhookEndpoint:
        endpoint = await repository.get_endpoint(self._db, user_id, endpoint_id, livemode)
        if endpoint is None:
            raise WebhookNotFound
        return endpoint

    async def delete(
        self,
        user_id: uuid.UUID,
        endpoint_id: uuid.UUID,
        actor: Actor | None = None,
        *,
        livemode: bool,
    ) -> None:
        """The endpoint, its queued deliveries and its attempts are gone; a delivery in flight
        finishes but is not recorded. Audited (`webhook_endpoint.deleted`) in the same
        transaction. Another mode's endpoint is not found."""
        async with self._db.transaction() as db:
            deleted = await repository.delete_endpoint(db, user_id, endpoint_id, livemode)
            if deleted is None:
                raise WebhookNotFound
            await AuditLog.record(
                db,
                actor or Actor(user_id),
                "webhook_endpoint.deleted",
                object_type="webhook_endpoint",
                object_id=endpoint_id,
                at=self._clock(),
                user_id=user_id,
                livemode=deleted,
            )

    # Vault rotation: signing secrets are sealed by the vault like card data, so
    # `kassa vault rotate` re-seals them too (webhooks.service is one of its row stores).

    async def count_to_reseal(self) -> int:
        return await repository.count_secrets_to_reseal(self._db, self._vault.primary_kid)

    async def reseal_batch(self, after: uuid.UUID | None, batch_size: int) -> ResealBatch:
        """Re-seal up to `batch_size` signing secrets (endpoints after `after`) under the
        current key, in one transaction holding their row locks; one no key opens is
        skipped."""
        primary = self._vault.primary_kid
        resealed = unreadable = 0
        async with self._db.transaction() as db:
            endpoints = await repository.lock_secrets_to_reseal(db, primary, after, batch_size)
            for endpoint in endpoints:
                context = secret_context(endpoint.id)
                try:
                    secret = self._vault.decrypt(
                        Sealed(endpoint.secret_key_id, endpoint.secret_sealed), context=context
                    )
                except VaultError:
                    unreadable += 1
                    log.error("vault_entry_unreadable", webhook_endpoint_id=str(endpoint.id))
                    continue
                sealed = self._vault.encrypt(secret, context=context)
                endpoint.secret_key_id, endpoint.secret_sealed = sealed.kid, sealed.blob
                await repository.save_endpoint(db, endpoint)
                resealed += 1
        return ResealBatch(
            examined=len(endpoints),
            resealed=resealed,
            unreadable=unreadable,
            last_id=endpoints[-1].id if endpoints else None,
        )

    async def list_attempts(
        self,
        user_id: uuid.UUID,
        endpoint_id: uuid.UUID,
        *,
        livemode: bool,
        limit: int,
        cursor: str | None,
    ) -> AttemptPage:
        """Every delivery attempt to one of the caller's endpoints, newest first."""
        after = Cursor.decode(cursor) if cursor else None
        async with self._db.snapshot() as db:
            if await repository.get_endpoint(db, user_id, endpoint_id, livemode) is None:
                raise WebhookNotFound
            rows = await repository.list_attempts(db, endpoint_id, limit=limit + 1, cursor=after)
        page = rows[:limit]
        has_more = len(rows) > limit
        next_cursor = Cursor(page[-1].created_at, page[-1].id).encode() if has_more else None
        return AttemptPage(data=page, has_more=has_more, next_cursor=next_cursor)

    # The outbox: called by the events service inside the business transaction.

    @staticmethod
    async def enqueue(
        db: Runner,
        *,
        user_id: uuid.UUID,
        livemode: bool,
        event_id: uuid.UUID,
        event_type: str,
        body: Callable[[], str],
        now: datetime,
    ) -> int:
        """Queue the event's JSON (`body()`, made only when some endpoint wants it), due now,
        for every enabled endpoint of the user subscribed to `event_type`; the number
        queued."""
        wanted = await _subscribers(db, user_id, livemode, event_type)
        if not wanted:
            return 0
        text = body()
        deliveries = [
            delivery_row(
                endpoint_id,
                user_id=user_id,
                event_id=event_id,
                event_type=event_type,
                body=text,
                now=now,
            )
            for endpoint_id in wanted
        ]
        await repository.insert_deliveries(db, deliveries)
        return len(deliveries)

    @staticmethod
    async def redeliver(
        db: Runner,
        *,
        user_id: uuid.UUID,
        livemode: bool,
        event_id: uuid.UUID,
        event_type: str,
        body: str,
        now: datetime,
    ) -> int:
        """Make the event due now, with a fresh retry window, for every enabled endpoint
        subscribed to it — whatever became of earlier deliveries. A delivery in flight loses
        its lease, so its outcome no longer decides; the number queued."""
        existing = {
            d.endpoint_id: d for d in await repository.lock_deliveries_of_event(db, event_id)
        }
        wanted = await _subscribers(db, user_id, livemode, event_type)
        fresh = [
            delivery_row(
                endpoint_id,
                user_id=user_id,
                event_id=event_id,
                event_type=event_type,
                body=body,
                now=now,
            )
            for endpoint_id in wanted
            if endpoint_id not in existing
        ]
        if fresh:
            await repository.insert_deliveries(db, fresh)
        for endpoint_id in wanted:
            delivery = existing.get(endpoint_id)
            if delivery is not None:
                delivery.status = "pending"
                delivery.attempt_count = 0
                delivery.window_started_at = now
                delivery.next_attempt_at = now
                delivery.lease_until = None
                delivery.lease_token = None
                delivery.updated_at = now
                await repository.save_delivery(db, delivery)
        return len(wanted)
