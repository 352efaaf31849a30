"""Every auth query. Runs on the `Runner` it is given; never commits."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import bindparam, select, update

from kassa.auth.models import AuthSession, User
from kassa.db import Runner, record_of, table_of, values_of

_SESSION = table_of(AuthSession)
_USER = table_of(User)
_GET_USER = select(_USER).where(_USER.c.id == bindparam("user"))
_USER_BY_EMAIL_KEY = select(_USER).where(_USER.c.email_key == bindparam("email_key"))
_INSERT_USER = _USER.insert()
_INSERT_SESSION = _SESSION.insert()
# A new hash replaces the one it was made beside, unless the password changed meanwhile.
_REHASH = update(_USER).where(
    _USER.c.id == bindparam("user"), _USER.c.password_hash == bindparam("old_hash")
)
_SET_PASSWORD = update(_USER).where(_USER.c.id == bindparam("user"))


async def get_user(db: Runner, user_id: uuid.UUID) -> User | None:
    row = await db.first(_GET_USER, {"user": user_id})
    return None if row is None else record_of(User, row)


async def get_user_by_email_key(db: Runner, email_key: str) -> User | None:
    row = await db.first(_USER_BY_EMAIL_KEY, {"email_key": email_key})
    return None if row is None else record_of(User, row)


async def insert_user(db: Runner, user: User) -> None:
    await db.execute(_INSERT_USER, values_of(user))


async def insert_session(db: Runner, session: AuthSession) -> None:
    await db.execute(_INSERT_SESSION, values_of(session))


async def replace_hash(db: Runner, user_id: uuid.UUID, old_hash: str, new_hash: str) -> None:
    """Store `new_hash` unless the stored hash is no longer `old_hash`."""
    await db.execute(_REHASH, {"user": user_id, "old_hash": old_hash, "password_hash": new_hash})


async def set_password_hash(
    db: Runner, user_id: uuid.UUID, password_hash: str, now: datetime
) -> bool:
    """False when there is no such user."""
    written = await db.execute(
        _SET_PASSWORD, {"user": user_id, "password_hash": password_hash, "updated_at": now}
    )
    return written == 1


async def advance_refresh_generation(
    db: Runner, session_id: uuid.UUID, generation: int, now: datetime
) -> bool:
    """Spend refresh generation `generation`; False when it was not the current one."""
    written = await db.execute(
        update(_SESSION)
        .where(
            _SESSION.c.id == session_id,
            _SESSION.c.refresh_generation == generation,
            _SESSION.c.revoked_at.is_(None),
            _SESSION.c.expires_at > now,
        )
        .values(refresh_generation=generation + 1)
    )
    return written == 1


async def revoke_session(db: Runner, session_id: uuid.UUID, now: datetime) -> None:
    await db.execute(
        update(_SESSION)
        .where(_SESSION.c.id == session_id, _SESSION.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def revoke_other_sessions(
    db: Runner, user_id: uuid.UUID, keep: uuid.UUID, now: datetime
) -> None:
    await db.execute(
        update(_SESSION)
        .where(
            _SESSION.c.user_id == user_id,
            _SESSION.c.id != keep,
            _SESSION.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
