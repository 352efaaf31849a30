"""Every audit log query. Gets its runner; never commits. Inserts only: nothing here (or
anywhere in kassa) updates or deletes an audit event, and the database refuses to."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import bindparam, or_, select

from kassa.auditlog.models import AuditEvent
from kassa.db import Runner, table_of
from kassa.pagination import Cursor, before_cursor

_AUDIT = table_of(AuditEvent)
_INSERT = _AUDIT.insert()
# Account-wide events (no mode) show in both modes; the others only in their own.
_OWN_MODE = (_AUDIT.c.user_id == bindparam("owner")) & or_(
    _AUDIT.c.livemode.is_(None), _AUDIT.c.livemode == bindparam("livemode")
)


async def insert(db: Runner, values: dict[str, Any]) -> None:
    await db.execute(_INSERT, values)


def list_statement(action: str | None, cursor: Cursor | None) -> Any:
    """The statement `list_events` runs (its parameters: owner, livemode, limit)."""
    statement = select(_AUDIT).where(_OWN_MODE)
    if action is not None:
        statement = statement.where(_AUDIT.c.action == action)
    if cursor is not None:
        statement = statement.where(before_cursor(_AUDIT.c.created_at, _AUDIT.c.id, cursor))
    return statement.order_by(_AUDIT.c.created_at.desc(), _AUDIT.c.id.desc()).limit(
        bindparam("limit")
    )


async def list_events(
    db: Runner,
    user_id: uuid.UUID,
    livemode: bool,
    *,
    action: str | None,
    cursor: Cursor | None,
    limit: int,
) -> list[AuditEvent]:
    """The user's audit events (account-wide ones and those of this mode), newest first."""
    rows = await db.rows(
        list_statement(action, cursor), {"owner": user_id, "livemode": livemode, "limit": limit}
    )
    return [AuditEvent(**dict(row)) for row in rows]
