"""Every auth query. Gets its session; never commits."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kassa.auth.models import AuthSession, User


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def get_user_by_email_key(session: AsyncSession, email_key: str) -> User | None:
    result = await session.execute(select(User).where(User.email_key == email_key))
    return result.scalar_one_or_none()


async def get_active_session(
    session: AsyncSession, session_id: uuid.UUID, user_id: uuid.UUID, now: datetime
) -> tuple[AuthSession, User] | None:
    result = await session.execute(
        select(AuthSession, User)
        .join(User, User.id == AuthSession.user_id)
        .where(
            AuthSession.id == session_id,
            AuthSession.user_id == user_id,
            AuthSession.revoked_at.is_(None),
            AuthSession.expires_at > now,
        )
    )
    row = result.first()
    return None if row is None else (row[0], row[1])


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
