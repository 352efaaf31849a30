"""Every API key query, on the `Runner` handle. Never commits."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import RowMapping

from kassa.apikeys.models import ApiKey
from kassa.auth.models import User
from kassa.db import Runner, table_of

_KEY = table_of(ApiKey)
_USER = table_of(User)

_INSERT = insert(_KEY)
# Asked on every request made with a key: one lookup by the unique secret hash, joined to the
# user the principal names. A revoked key is not found, so a revoke answers the next request.
_ACTIVE_BY_HASH = (
    select(
        _KEY.c.id,
        _KEY.c.livemode,
        _KEY.c.scopes,
        _USER.c.id.label("user_id"),
    )
    .select_from(_KEY.join(_USER, _USER.c.id == _KEY.c.user_id))
    .where(_KEY.c.secret_hash == bindparam("secret_hash"), _KEY.c.revoked_at.is_(None))
)
_LIST_ACTIVE = (
    select(
        _KEY.c.id,
        _KEY.c.name,
        _KEY.c.livemode,
        _KEY.c.scopes,
        _KEY.c.last4,
        _KEY.c.created_at,
    )
    .where(_KEY.c.user_id == bindparam("owner"), _KEY.c.revoked_at.is_(None))
    .order_by(_KEY.c.created_at.desc(), _KEY.c.id.desc())
)
_REVOKE = (
    update(_KEY)
    .where(
        _KEY.c.id == bindparam("key_id"),
        _KEY.c.user_id == bindparam("owner"),
        _KEY.c.revoked_at.is_(None),
    )
    .values(revoked_at=bindparam("now"))
)


async def insert_key(
    db: Runner,
    *,
    key_id: uuid.UUID,
    user_id: uuid.UUID,
    name: str,
    livemode: bool,
    scopes: list[str] | None,
    secret_hash: bytes,
    last4: str,
    now: datetime,
) -> None:
    await db.execute(
        _INSERT,
        {
            "id": key_id,
            "user_id": user_id,
            "name": name,
            "livemode": livemode,
            "scopes": scopes,
            "secret_hash": secret_hash,
            "last4": last4,
            "created_at": now,
            "revoked_at": None,
        },
    )


async def get_active_by_hash(db: Runner, secret_hash: bytes) -> RowMapping | None:
    """The unrevoked key with this secret hash (id, livemode, scopes) and its user's id;
    None when there is none."""
    return await db.first(_ACTIVE_BY_HASH, {"secret_hash": secret_hash})


async def list_active(db: Runner, user_id: uuid.UUID) -> list[RowMapping]:
    """The user's unrevoked keys, newest first."""
    return await db.rows(_LIST_ACTIVE, {"owner": user_id})


async def revoke(db: Runner, user_id: uuid.UUID, key_id: uuid.UUID, now: datetime) -> bool:
    """Revoke one of the user's keys; False when it is unknown, another's or revoked."""
    return await db.execute(_REVOKE, {"key_id": key_id, "owner": user_id, "now": now}) == 1
