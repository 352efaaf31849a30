"""Every auth query. Gets its session or connection; never commits."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kassa.auth.models import AuthSession, User
from kassa.db import DriverStatement, Executor, table_of

_SESSION = table_of(AuthSession)
_USER = table_of(User)
# Asked on every authenticated request: built once, only the columns a principal needs.
_ACTIVE_SESSION_USER = DriverStatement(
    select(_USER.c.id, _USER.c.name, _USER.c.email, _USER.c.created_at)
    .select_from(_SESSION.join(_USER, _USER.c.id == _SESSION.c.user_id))
    .where(
        _SESSION.c.id == bindparam("session"),
        _SESSION.c.user_id == bindparam("owner"),
        _SESSION.c.revoked_at.is_(None),
        _SESSION.c.expires_at > bindparam("now"),
    )
)


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def get_user_by_email_key(session: AsyncSession, email_key: str) -> User | None:
    result = await session.execute(select(User).where(User.email_key == email_key))
    return result.scalar_one_or_none()


@dataclass(frozen=True, slots=True)
class SessionUser:
    id: uuid.UUID
    name: str
    email: str
    created_at: datetime


async def get_active_session_user(
    db: Executor, session_id: uuid.UUID, user_id: uuid.UUID, now: datetime
) -> SessionUser | None:
    """The user of a session that is neither revoked nor expired; None otherwise."""
    rows = await _ACTIVE_SESSION_USER.rows(
        db, {"session": session_id, "owner": user_id, "now": now}
    )
    if not rows:
        return None
    found = rows[0]
    return SessionUser(found["id"], found["name"], found["email"], found["created_at"])


async def advance_refresh_generation(
    session: AsyncSession, session_id: uuid.UUID, generation: int, now: datetime
) -> bool:
    """Spend refresh generation `generation`; False when it was not the current one."""
    result = await session.execute(
        update(AuthSession)
        .where(
            AuthSession.id == session_id,
            AuthSession.refresh_generation == generation,
            AuthSession.revoked_at.is_(None),
            AuthSession.expires_at > now,
        )
        .values(refresh_generation=generation + 1)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def revoke_session(session: AsyncSession, session_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def revoke_other_sessions(
    session: AsyncSession, user_id: uuid.UUID, keep: uuid.UUID, now: datetime
) -> None:
    await session.execute(
        update(AuthSession)
        .where(
            AuthSession.user_id == user_id,
            AuthSession.id != keep,
            AuthSession.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
