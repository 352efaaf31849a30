"""Every idempotency query. Runs on the `Runner` it is given; never commits."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Insert,
    bindparam,
    case,
    delete,
    insert,
    literal,
    null,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from kassa.db import Runner, bound_row, happened, insert_unless_present, record_of, table_of
from kassa.idempotency.models import IdempotencyRecord

# Every keyed POST claims, then completes or releases: built once, run as Core.
_RECORD = table_of(IdempotencyRecord)
_CLAIM_COLUMNS = (
    "id",
    "user_id",
    "key",
    "fingerprint",
    "state",
    "token",
    "created_at",
    "lease_until",
    "expires_at",
)
_CLAIM = {
    dialect: insert_unless_present(dialect, _RECORD, "user_id", "key")
    for dialect in ("postgresql", "sqlite")
}
_HELD = (_RECORD.c.id == bindparam("record")) & (_RECORD.c.token == bindparam("held"))
# The holder's response, unless its claim was taken over or the response is already kept.
_COMPLETE = update(_RECORD).where(_HELD, _RECORD.c.state != "completed")
# An answer made from a committed effect by a later request (no token: it holds no claim).
_COMPLETE_COMMITTED = update(_RECORD).where(
    _RECORD.c.id == bindparam("record"), _RECORD.c.state == "effect_committed"
)
_COMMIT_EFFECT = (
    update(_RECORD)
    .where(_HELD, _RECORD.c.state == "in_flight")
    .values(state="effect_committed", effect=bindparam("effect"), effect_id=bindparam("object"))
)
_DELETE_CLAIM = delete(_RECORD).where(_HELD, _RECORD.c.state == "in_flight")
_END_LEASE = update(_RECORD).where(_HELD, _RECORD.c.state == "effect_committed")
_DELETE = delete(_RECORD).where(_RECORD.c.id == bindparam("record"))
_GET = select(_RECORD).where(
    _RECORD.c.user_id == bindparam("owner"), _RECORD.c.key == bindparam("key")
)
_TAKE_OVER = update(_RECORD).where(
    _RECORD.c.id == bindparam("record"),
    _RECORD.c.state == "in_flight",
    _RECORD.c.lease_until == bindparam("seen_lease"),
)


_INSERT_RECORD = _RECORD.insert()
_KEPT_COLUMNS = ("state", "response_status", "response_body", "response_type")


def _keep_response(dialect: str) -> Insert:
    """A completed record, or — over the record the same claim made — its response; a
    record another request holds is left alone."""
    insert_: Any = {"postgresql": pg_insert, "sqlite": sqlite_insert}[dialect](_RECORD)
    statement: Insert = insert_.on_conflict_do_update(
        index_elements=["user_id", "key"],
        set_={name: insert_.excluded[name] for name in _KEPT_COLUMNS},
        where=(_RECORD.c.id == insert_.excluded.id)
        & (_RECORD.c.token == insert_.excluded.token)
        & (_RECORD.c.state != "completed"),
    ).returning(_RECORD.c.id)
    return statement


_KEEP_RESPONSE = {dialect: _keep_response(dialect) for dialect in ("postgresql", "sqlite")}


async def insert_record(db: Runner, values: dict[str, Any]) -> None:
    """Insert a record (column names as keys); the key's unique index refuses a second."""
    await db.execute(_INSERT_RECORD, values)


async def keep_response(db: Runner, values: dict[str, Any]) -> bool:
    """Keep a response (see `_keep_response`); False when another request holds the key."""
    return await db.first(_KEEP_RESPONSE[db.dialect], values) is not None


def claim_values(row: dict[str, Any]) -> dict[str, Any]:
    return bound_row(_RECORD, "k_", row)


def claim_part(gate: CTE, when: ColumnElement[bool] | None = None) -> CTE:
    """PostgreSQL: the key's claim (parameters `k_<column>`, a `HeldKey.claim_row`), inserted
    with the effect's statement: its effect committed when `gate` returned a row (the effect
    happened), else only claimed (in flight, no effect), so the request's refusal can be
    kept on it. A second claim of the key fails the whole statement (the unique index).
    `when`: claimed only while it holds (a request whose session has ended claims nothing)."""
    effect_made = happened(gate)
    columns = list(_RECORD.c)

    def bound(name: str) -> Any:
        return bindparam(f"k_{name}", type_=_RECORD.c[name].type)

    chosen = {
        "state": case((effect_made, bound("state")), else_=literal("in_flight")),
        "effect": case((effect_made, bound("effect")), else_=null()),
        "effect_id": case((effect_made, bound("effect_id")), else_=null()),
    }
    row = select(*(chosen.get(c.name, bound(c.name)) for c in columns))
    if when is not None:
        row = row.where(when)
    return (
        insert(_RECORD)
        .from_select([c.name for c in columns], row)
        .returning(_RECORD.c.id)
        .cte("claimed_key")
    )


def complete_part(gate: CTE) -> CTE:
    """PostgreSQL: keep the held claim's response (`k_record`, `k_held`, `k_status`,
    `k_body`, `k_type`) in the statement that settles its effect, when `gate` returned a
    row."""
    return (
        update(_RECORD)
        .where(
            _RECORD.c.id == bindparam("k_record"),
            _RECORD.c.token == bindparam("k_held"),
            _RECORD.c.state != "completed",
            happened(gate),
        )
        .values(
            state="completed",
            response_status=bindparam("k_status"),
            response_body=bindparam("k_body", type_=_RECORD.c.response_body.type),
            response_type=bindparam("k_type"),
        )
        .returning(_RECORD.c.id)
        .cte("kept_response")
    )


async def insert_claim(db: Runner, record: IdempotencyRecord) -> bool:
    """Insert the claim unless the user already holds the key; True when inserted."""
    values = {
        "id": record.id,
        "user_id": record.user_id,
        "key": record.key,
        "fingerprint": record.fingerprint,
        "state": record.state,
        "token": record.token,
        "created_at": record.created_at,
        "lease_until": record.lease_until,
        "expires_at": record.expires_at,
    }
    return await db.execute(_CLAIM[db.dialect], values) == 1


async def get_record(db: Runner, user_id: uuid.UUID, key: str) -> IdempotencyRecord | None:
    row = await db.first(_GET, {"owner": user_id, "key": key})
    return None if row is None else record_of(IdempotencyRecord, row)


async def take_over(
    db: Runner,
    record_id: uuid.UUID,
    *,
    seen_lease: datetime,
    lease_until: datetime,
    token: uuid.UUID,
) -> bool:
    """Re-claim an in-flight record whose lease ran out (its server died before it committed
    anything) under a new token, which fences the old holder out."""
    written = await db.execute(
        _TAKE_OVER,
        {"record": record_id, "seen_lease": seen_lease, "lease_until": lease_until, "token": token},
    )
    return written == 1


async def commit_effect(
    db: Runner, record_id: uuid.UUID, token: uuid.UUID, effect: str, effect_id: uuid.UUID
) -> bool:
    """Mark the held claim's effect as committed, in the effect's own transaction; False
    when the claim is no longer this token's (taken over, or already committed)."""
    written = await db.execute(
        _COMMIT_EFFECT,
        {"record": record_id, "held": token, "effect": effect, "object": effect_id},
    )
    return written == 1


async def complete(
    db: Runner,
    record_id: uuid.UUID,
    *,
    token: uuid.UUID | None,
    status: int,
    body: bytes,
    content_type: str,
) -> bool:
    """Keep the response; with no token, one made from a committed effect."""
    values = {
        "record": record_id,
        "state": "completed",
        "response_status": status,
        "response_body": body,
        "response_type": content_type,
    }
    if token is None:
        return await db.execute(_COMPLETE_COMMITTED, values) == 1
    return await db.execute(_COMPLETE, {**values, "held": token}) == 1


async def release(db: Runner, record_id: uuid.UUID, token: uuid.UUID, now: datetime) -> None:
    """Forget the held claim if it committed nothing; if its effect committed, keep it and
    end its lease, so a retry answers from that effect at once."""
    if await db.execute(_DELETE_CLAIM, {"record": record_id, "held": token}) == 0:
        await db.execute(_END_LEASE, {"record": record_id, "held": token, "lease_until": now})


async def delete_record(db: Runner, record_id: uuid.UUID) -> None:
    await db.execute(_DELETE, {"record": record_id})


async def delete_expired(db: Runner, now: datetime) -> int:
    return await db.execute(delete(_RECORD).where(_RECORD.c.expires_at <= now))
