"""The audit log: who did what to which object, from where, in which request.

Domains record their actions with `AuditLog.record`, on the runner of the transaction that
makes the change (so the audit row commits exactly when the change does), passing the
request's `Actor` (kassa.auditlog.deps.RequestActor gives it to a route). Nothing in kassa
updates or deletes an audit event; on both databases triggers refuse it.

Never pass a secret: a key is named by its id, a password not at all (details are for
amounts, ids, names of things).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from sqlalchemy import CTE

from kassa.auditlog import repository
from kassa.auditlog.models import AuditEvent
from kassa.db import Database, Runner, new_id
from kassa.pagination import Cursor, Page

# Every action the log records (the `action` filter accepts these).
ACTIONS: Final = (
    "login",
    "login_failed",
    "password_changed",
    "refund.created",
    "payment.capture_requested",
    "payment.cancel_requested",
    "webhook_endpoint.created",
    "webhook_endpoint.deleted",
    "webhook_endpoint.secret_rotated",
    "api_key.created",
    "api_key.revoked",
)
AuditAction = Literal[
    "login",
    "login_failed",
    "password_changed",
    "refund.created",
    "payment.capture_requested",
    "payment.cancel_requested",
    "webhook_endpoint.created",
    "webhook_endpoint.deleted",
    "webhook_endpoint.secret_rotated",
    "api_key.created",
    "api_key.revoked",
]
ActorType = Literal["user", "api_key", "anonymous"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts, from where, in which request: the authenticated user (None before a login
    succeeds), the API key it used if any (its id, never its secret), the client IP as the
    edge computed it (kassa.edge.proxy.client_ip) and the request's X-Request-ID."""

    user_id: uuid.UUID | None
    key_id: uuid.UUID | None = None
    ip: str | None = None
    request_id: str | None = None

    def as_user(self, user_id: uuid.UUID) -> Actor:
        """The same request, now known to act as `user_id` (a login that succeeded)."""
        return dataclasses.replace(self, user_id=user_id)

    @property
    def type(self) -> ActorType:
        if self.key_id is not None:
            return "api_key"
        return "user" if self.user_id is not None else "anonymous"

    @property
    def id(self) -> uuid.UUID | None:
        return self.key_id if self.key_id is not None else self.user_id


def _row(
    actor: Actor,
    action: AuditAction,
    object_type: str,
    object_id: uuid.UUID | None,
    at: datetime,
    user_id: uuid.UUID | None,
    livemode: bool | None,
    details: Mapping[str, str | int] | None,
) -> dict[str, Any]:
    return {
        "id": new_id(),
        "user_id": user_id if user_id is not None else actor.user_id,
        "actor_type": actor.type,
        "actor_id": actor.id,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "livemode": livemode,
        "ip": actor.ip[:64] if actor.ip is not None else None,
        "request_id": actor.request_id,
        "details": dict(details) if details is not None else None,
        "created_at": at,
    }


class AuditLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    @staticmethod
    async def record(
        db: Runner,
        actor: Actor,
        action: AuditAction,
        *,
        object_type: str,
        object_id: uuid.UUID | None,
        at: datetime,
        user_id: uuid.UUID | None = None,
        livemode: bool | None = None,
        details: Mapping[str, str | int] | None = None,
    ) -> None:
        """Append one event to the log of `user_id` (by default the actor's user): `action`
        on (`object_type`, `object_id`). `livemode` is the acted-on object's mode (None for
        what belongs to the account: logins, passwords, keys — shown in both modes). Call
        it on the transaction that makes the change, so both commit or neither."""
        await repository.insert(
            db,
            _row(actor, action, object_type, object_id, at, user_id, livemode, details),
        )

    # PostgreSQL: the same event inside a statement of several writes, when its `gate`
    # returned a row (the change happened).

    @staticmethod
    def record_part(gate: CTE) -> CTE:
        return repository.insert_part(gate)

    @staticmethod
    def record_values(
        actor: Actor,
        action: AuditAction,
        *,
        object_type: str,
        object_id: uuid.UUID | None,
        at: datetime,
        user_id: uuid.UUID | None = None,
        livemode: bool | None = None,
        details: Mapping[str, str | int] | None = None,
    ) -> dict[str, Any]:
        """The parameters of `record_part` for the event `record` would append."""
        return repository.insert_values(
            _row(actor, action, object_type, object_id, at, user_id, livemode, details)
        )

    async def list(
        self,
        user_id: uuid.UUID,
        livemode: bool,
        *,
        action: str | None,
        limit: int,
        cursor: str | None,
    ) -> Page[AuditEvent]:
        """The user's own audit events, newest first: the account's, and those of objects of
        the mode the caller acts in."""
        after = Cursor.decode(cursor) if cursor else None
        rows = await repository.list_events(
            self._db, user_id, livemode, action=action, cursor=after, limit=limit + 1
        )
        return Page.of(rows, limit, lambda e: Cursor(e.created_at, e.id))
