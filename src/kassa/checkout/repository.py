"""Every checkout-session query, on the `Runner` it is given (never commits)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update

from kassa.checkout.models import CheckoutSession
from kassa.db import Runner, record_of, table_of

_SESSION = table_of(CheckoutSession)
_INSERT = _SESSION.insert()
_BY_ID = select(_SESSION).where(_SESSION.c.id == bindparam("b_session"))
_OWNED = _BY_ID.where(
    _SESSION.c.user_id == bindparam("b_user"), _SESSION.c.livemode == bindparam("b_livemode")
)
# An attempt's payment is recorded only while the session is open at that attempt: a
# stale form (another tab moved the session on) records nothing.
_RECORD_ATTEMPT = (
    update(_SESSION)
    .where(
        _SESSION.c.id == bindparam("b_session"),
        _SESSION.c.status == "open",
        _SESSION.c.attempt == bindparam("b_attempt"),
    )
    .values(
        last_payment_id=bindparam("b_payment"),
        last_failure_code=None,
        updated_at=bindparam("b_now"),
    )
)
# A failed attempt opens the next one, once, whoever notices it first (the request that paid,
# or the page after a 3-D Secure challenge failed): only while that attempt's payment is the
# session's current one.
_NEXT_ATTEMPT = (
    update(_SESSION)
    .where(
        _SESSION.c.id == bindparam("b_session"),
        _SESSION.c.status == "open",
        _SESSION.c.attempt == bindparam("b_attempt"),
        _SESSION.c.last_payment_id == bindparam("b_payment"),
    )
    .values(
        attempt=_SESSION.c.attempt + 1,
        last_payment_id=None,
        last_failure_code=bindparam("b_failure"),
        updated_at=bindparam("b_now"),
    )
)
# open → complete, once: of two racing completions exactly one updates the row (and so
# exactly one records the event).
_COMPLETE = (
    update(_SESSION)
    .where(_SESSION.c.id == bindparam("b_session"), _SESSION.c.status == "open")
    .values(
        status="complete",
        payment_id=bindparam("b_payment"),
        last_payment_id=bindparam("b_payment"),
        completed_at=bindparam("b_now"),
        updated_at=bindparam("b_now"),
    )
    .returning(*_SESSION.c)
)


async def insert_session(db: Runner, values: dict[str, Any]) -> None:
    await db.execute(_INSERT, values)


async def get_session(db: Runner, session_id: uuid.UUID) -> CheckoutSession | None:
    """A session by its id alone: its page is reached by the (unguessable) id."""
    row = await db.first(_BY_ID, {"b_session": session_id})
    return None if row is None else record_of(CheckoutSession, row)


async def find_session(
    db: Runner, user_id: uuid.UUID, livemode: bool, session_id: uuid.UUID
) -> CheckoutSession | None:
    """One of the user's sessions of the given mode; None for anyone else's."""
    row = await db.first(
        _OWNED, {"b_session": session_id, "b_user": user_id, "b_livemode": livemode}
    )
    return None if row is None else record_of(CheckoutSession, row)


async def record_attempt(
    db: Runner, session_id: uuid.UUID, attempt: int, payment_id: uuid.UUID, now: datetime
) -> bool:
    params = {"b_session": session_id, "b_attempt": attempt, "b_payment": payment_id, "b_now": now}
    return await db.execute(_RECORD_ATTEMPT, params) == 1


async def next_attempt(
    db: Runner,
    session_id: uuid.UUID,
    attempt: int,
    payment_id: uuid.UUID,
    failure_code: str,
    now: datetime,
) -> bool:
    params = {
        "b_session": session_id,
        "b_attempt": attempt,
        "b_payment": payment_id,
        "b_failure": failure_code,
        "b_now": now,
    }
    return await db.execute(_NEXT_ATTEMPT, params) == 1


async def complete(
    db: Runner, session_id: uuid.UUID, payment_id: uuid.UUID, now: datetime
) -> CheckoutSession | None:
    """Mark an open session complete with `payment_id`; None when it was not open."""
    row = await db.first(
        _COMPLETE, {"b_session": session_id, "b_payment": payment_id, "b_now": now}
    )
    return None if row is None else record_of(CheckoutSession, row)
