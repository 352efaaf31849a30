"""A login token's session, checked in the statement that needs it.

A login token names a session that logout, a password change or a refresh reuse can revoke
at any moment; every request made with it must find the session live in the database. The
token's signature and expiry are checked without the database when the request arrives
(`AuthService.verify_token`); what is left is a `SessionCheck`, which the request pays in
one of two ways:

- a separate statement (`confirm`), before anything else the request does, as every route
  taking `CurrentPrincipal` or `LoginPrincipal` does;
- carried in the request's first statement, by the few hot routes that take
  `CheckedInFirstRead`: a read carries `LIVE_SESSION` as a column beside what it reads, a
  write (creating a payment) `SESSION_IS_LIVE` as its condition, both with
  `SessionCheck.params`; nothing is written or answered before the database has said the
  session is live.

Either way the check runs in the database on every request, so a revoke applies to the
next request on every host. And whatever a route does, `AuthenticationMiddleware` pays a
check still unpaid before the answer leaves: a request refused before its first read (a body
that fails validation, a malformed id) still answers 401 when its session has ended.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, RowMapping, bindparam, exists, select
from sqlalchemy.sql.expression import Executable

from kassa.auth.models import AuthSession, User
from kassa.db import Runner, table_of
from kassa.errors import Unauthorized

_SESSION = table_of(AuthSession)
_USER = table_of(User)


def session_ended() -> Unauthorized:
    return Unauthorized("The session has ended; log in again.")


@dataclass(slots=True, eq=False)
class SessionCheck:
    """The check a request made with a login token owes: its session, its user, and the
    instant the request arrived (a session that expires later is live). `live` is what the
    database answered, once it has (None before)."""

    session_id: uuid.UUID
    user_id: uuid.UUID
    now: datetime
    live: bool | None = None

    def params(self) -> dict[str, Any]:
        return {
            "check_session": self.session_id,
            "check_owner": self.user_id,
            "check_now": self.now,
        }

    def answered(self, live: bool) -> None:
        """Record the database's answer; `Unauthorized` when the session has ended."""
        self.live = live
        if not live:
            raise session_ended()


_LIVE = (
    _SESSION.join(_USER, _USER.c.id == _SESSION.c.user_id),
    (
        _SESSION.c.id == bindparam("check_session"),
        _SESSION.c.user_id == bindparam("check_owner"),
        _SESSION.c.revoked_at.is_(None),
        _SESSION.c.expires_at > bindparam("check_now", type_=_SESSION.c.expires_at.type),
    ),
)
# A condition for another statement (a write made only while the session is live), and
# the same as a column (a read that answers whether it is).
SESSION_IS_LIVE: ColumnElement[bool] = exists().select_from(_LIVE[0]).where(*_LIVE[1])
LIVE_SESSION: ColumnElement[bool] = SESSION_IS_LIVE.label("session_live")
_SESSION_USER = (
    select(_USER.c.id, _USER.c.name, _USER.c.email, _USER.c.created_at)
    .select_from(_LIVE[0])
    .where(*_LIVE[1])
)


async def session_user(db: Runner, check: SessionCheck) -> dict[str, Any]:
    """The user of a live session (id, name, email, created_at); `Unauthorized` when the
    session is revoked or expired."""
    row = await db.first(_SESSION_USER, check.params())
    check.answered(row is not None)
    assert row is not None
    return dict(row)


async def confirm(db: Runner, check: SessionCheck | None) -> None:
    """Pay `check` with a statement of its own, unless it is paid (or None: nothing owed);
    `Unauthorized` when the session has ended (again, without a statement, if known)."""
    if check is None or check.live:
        return
    if check.live is False:
        raise session_ended()
    await session_user(db, check)


async def first_checked(
    db: Runner, statement: Executable, params: Mapping[str, Any], check: SessionCheck
) -> RowMapping | None:
    """The first row of a read that carries `LIVE_SESSION`, which pays `check` with it;
    when the read finds nothing, a statement of its own pays it. `Unauthorized` when the
    session has ended, found or not."""
    row = await db.first(statement, {**params, **check.params()})
    if row is None:
        await confirm(db, check)
    else:
        check.answered(bool(row["session_live"]))
    return row
