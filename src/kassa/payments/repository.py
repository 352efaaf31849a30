"""Every payment query. Runs on the `Runner` it is given; never commits."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Select,
    Update,
    bindparam,
    cast,
    delete,
    exists,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB

from kassa.auth import sessions
from kassa.auth.sessions import LIVE_SESSION, SESSION_IS_LIVE, SessionCheck
from kassa.db import Runner, bound_row, gated_insert, happened, record_of, table_of
from kassa.pagination import Cursor, before_cursor
from kassa.payments.models import Payment, PaymentSecret
from kassa.payments.states import PaymentStatus, ProcessorStep, sources_of

# The hot path's statements, built once: Core on the caller's connection, no unit of work.
_PAYMENT = table_of(Payment)
_SECRET = table_of(PaymentSecret)
_INSERT_PAYMENT = _PAYMENT.insert()
_INSERT_SECRET = _SECRET.insert()
# A payment is the caller's when it is theirs and of the mode they act in.
_OWN_PAYMENT = (
    (_PAYMENT.c.id == bindparam("payment"))
    & (_PAYMENT.c.user_id == bindparam("owner"))
    & (_PAYMENT.c.livemode == bindparam("in_livemode"))
)
_GET_PAYMENT = select(_PAYMENT).where(_OWN_PAYMENT)
_GET_PAYMENT_CHECKED = select(_PAYMENT, LIVE_SESSION).where(_OWN_PAYMENT)
_LOCK_PAYMENT = _GET_PAYMENT.with_for_update()
_SAVE_REFUND_AMOUNTS = update(_PAYMENT).where(_PAYMENT.c.id == bindparam("payment"))
_GET_SECRET = select(_SECRET).where(_SECRET.c.payment_id == bindparam("payment"))
_FORGET_CVC = (
    update(_SECRET)
    .where(_SECRET.c.payment_id == bindparam("payment"))
    .values(cvc_key_id=None, cvc_sealed=None)
)
_DELETE_SECRET = delete(_SECRET).where(_SECRET.c.payment_id == bindparam("payment"))
_SAVE_SEALED = update(_SECRET).where(_SECRET.c.payment_id == bindparam("payment"))
_PROCESSING = _PAYMENT.c.status == PaymentStatus.PROCESSING.value
_KEEP_REFERENCE = (
    update(_PAYMENT)
    .where(
        _PAYMENT.c.id == bindparam("payment"),
        _PROCESSING,
        _PAYMENT.c.processor_reference.is_(None),
    )
    .values(processor_reference=bindparam("ref"))
    .returning(_PAYMENT.c.processor_reference)
)
_REFERENCE_OF = select(_PAYMENT.c.status, _PAYMENT.c.processor_reference).where(
    _PAYMENT.c.id == bindparam("payment")
)
_NEXT_ATTEMPT = (
    update(_PAYMENT)
    .where(_PAYMENT.c.id == bindparam("payment"), _PROCESSING)
    .values(charge_attempts=_PAYMENT.c.charge_attempts + 1)
    .returning(_PAYMENT.c.charge_attempts)
)


async def insert_payment(db: Runner, payment: dict[str, Any], secret: dict[str, Any]) -> None:
    """Insert a payment and its vaulted card data (column names as keys)."""
    await db.execute(_INSERT_PAYMENT, payment)
    await db.execute(_INSERT_SECRET, secret)


async def find_payment(
    db: Runner,
    user_id: uuid.UUID,
    payment_id: uuid.UUID,
    livemode: bool,
    session: SessionCheck | None = None,
) -> Payment | None:
    """The user's payment of that mode. With `session`, the read also pays the request's
    session check (`Unauthorized` when the session has ended, found or not)."""
    params = {"payment": payment_id, "owner": user_id, "in_livemode": livemode}
    if session is None:
        row = await db.first(_GET_PAYMENT, params)
        return None if row is None else record_of(Payment, row)
    row = await sessions.first_checked(db, _GET_PAYMENT_CHECKED, params, session)
    return None if row is None else record_of(Payment, {c.name: row[c.name] for c in _PAYMENT.c})


async def find_secret(db: Runner, payment_id: uuid.UUID) -> PaymentSecret | None:
    row = await db.first(_GET_SECRET, {"payment": payment_id})
    return None if row is None else record_of(PaymentSecret, row)


async def forget_cvc(db: Runner, payment_id: uuid.UUID) -> None:
    await db.execute(_FORGET_CVC, {"payment": payment_id})


async def delete_secret(db: Runner, payment_id: uuid.UUID) -> None:
    await db.execute(_DELETE_SECRET, {"payment": payment_id})


async def lock_payment(
    db: Runner, user_id: uuid.UUID, payment_id: uuid.UUID, livemode: bool
) -> Payment | None:
    """The payment with a row lock held until the transaction ends (PostgreSQL); SQLite's
    write transactions are already serialized. A detached copy: write changes back with
    `save_refund_amounts`."""
    row = await db.first(
        _LOCK_PAYMENT, {"payment": payment_id, "owner": user_id, "in_livemode": livemode}
    )
    return None if row is None else record_of(Payment, row)


async def save_refund_amounts(db: Runner, payment: Payment) -> None:
    """Write a locked payment's refund totals, status and update time back."""
    await db.execute(
        _SAVE_REFUND_AMOUNTS,
        {
            "payment": payment.id,
            "status": payment.status,
            "amount_refunded": payment.amount_refunded,
            "amount_refund_pending": payment.amount_refund_pending,
            "updated_at": payment.updated_at,
        },
    )


@functools.cache
def _transition_statement(
    target: PaymentStatus,
    count_attempt: bool,
    sources: frozenset[PaymentStatus] | None = None,
    at_step: bool = False,
) -> Update:
    """The caller's payment → `target`, only from a status `sources_of` allows (or the
    subset `sources` of it) — and, `at_step`, only while it is at the processor step given
    as `step_was`; the other columns to set come with the execution."""
    allowed = sources_of(target) if sources is None else sources & sources_of(target)
    if sources is not None and allowed != sources:
        raise ValueError(f"not every one of {sorted(sources)} may reach {target}")
    statement = update(_PAYMENT).where(
        _OWN_PAYMENT, _PAYMENT.c.status.in_(sorted(s.value for s in allowed))
    )
    if at_step:
        # A payment processing from before steps were recorded is charging.
        step = func.coalesce(_PAYMENT.c.processor_step, ProcessorStep.CHARGE.value)
        statement = statement.where(step == bindparam("step_was"))
    if count_attempt:
        statement = statement.values(charge_attempts=_PAYMENT.c.charge_attempts + 1)
    return statement.returning(*_PAYMENT.c)


async def transition(
    db: Runner,
    user_id: uuid.UUID,
    payment_id: uuid.UUID,
    target: PaymentStatus,
    *,
    livemode: bool,
    count_attempt: bool = False,
    sources: frozenset[PaymentStatus] | None = None,
    step: ProcessorStep | None = None,
    **values: Any,
) -> Payment | None:
    """Move the payment to `target` only from a status that may reach it (`sources_of`),
    setting `values` (column names) too, and counting one more charge attempt when
    `count_attempt` — one statement, so of two racing requests exactly one wins. None when
    the payment was in no such status."""
    row = await db.first(
        _transition_statement(target, count_attempt, sources, step is not None),
        {
            "payment": payment_id,
            "owner": user_id,
            "in_livemode": livemode,
            "status": target.value,
            **({"step_was": step.value} if step is not None else {}),
            **values,
        },
    )
    return None if row is None else record_of(Payment, row)


async def list_stale_processing(
    db: Runner, before: datetime, after_id: uuid.UUID | None, limit: int
) -> Sequence[Payment]:
    """Payments left `processing` since before `before` (a crash or an unknown answer),
    in id order so a batch loop can resume after the last one it saw."""
    query = select(_PAYMENT).where(_PROCESSING, _PAYMENT.c.updated_at < before)
    if after_id is not None:
        query = query.where(_PAYMENT.c.id > after_id)
    rows = await db.rows(query.order_by(_PAYMENT.c.id).limit(limit))
    return [record_of(Payment, row) for row in rows]


async def count_stale_processing(db: Runner, before: datetime) -> int:
    result = await db.scalar(
        select(func.count())
        .select_from(_PAYMENT)
        .where(_PROCESSING, _PAYMENT.c.updated_at < before)
    )
    return int(result or 0)


async def keep_processor_reference(db: Runner, payment_id: uuid.UUID, reference: str) -> str | None:
    """Store the processor's reference for a `processing` payment's charge unless one is
    stored already; the reference now stored, or None when the payment is no longer
    processing."""
    kept: str | None = await db.scalar(_KEEP_REFERENCE, {"payment": payment_id, "ref": reference})
    if kept is not None:
        return kept
    current = await db.first(_REFERENCE_OF, {"payment": payment_id})
    if current is None or current["status"] != PaymentStatus.PROCESSING.value:
        return None
    stored: str | None = current["processor_reference"]
    return stored


async def next_charge_attempt(db: Runner, payment_id: uuid.UUID) -> int | None:
    """Count one more call to the processor's `charge`; None unless still processing."""
    attempt: int | None = await db.scalar(_NEXT_ATTEMPT, {"payment": payment_id})
    return attempt


def _sealed_with_other_keys(primary_kid: str) -> Any:
    return (_SECRET.c.key_id != primary_kid) | (_SECRET.c.cvc_key_id != primary_kid)


async def count_secrets_to_reseal(db: Runner, primary_kid: str) -> int:
    result = await db.scalar(
        select(func.count()).select_from(_SECRET).where(_sealed_with_other_keys(primary_kid))
    )
    return int(result or 0)


async def lock_secrets_to_reseal(
    db: Runner, primary_kid: str, after_id: uuid.UUID | None, limit: int
) -> Sequence[PaymentSecret]:
    """Secrets sealed (in part) under another key than `primary_kid`, locked, in id order
    after `after_id` so a batch loop moves past rows it cannot open. Detached copies: write
    changes back with `save_sealed`."""
    query = select(_SECRET).where(_sealed_with_other_keys(primary_kid))
    if after_id is not None:
        query = query.where(_SECRET.c.payment_id > after_id)
    rows = await db.rows(query.order_by(_SECRET.c.payment_id).limit(limit).with_for_update())
    return [record_of(PaymentSecret, row) for row in rows]


async def save_sealed(db: Runner, secret: PaymentSecret) -> None:
    """Write a re-sealed secret's keys and blobs back."""
    await db.execute(
        _SAVE_SEALED,
        {
            "payment": secret.payment_id,
            "key_id": secret.key_id,
            "sealed": secret.sealed,
            "cvc_key_id": secret.cvc_key_id,
            "cvc_sealed": secret.cvc_sealed,
        },
    )


# --- PostgreSQL: a request's writes in one statement (see `kassa.db.gated_insert`) ----------
#
# Each statement's first part decides (an INSERT, or a conditional UPDATE returning the row it
# moved); every other part is gated on it. The parameters: `p_`/`s_` the payment's and its
# vaulted source's columns, `payment`, `owner`, `now`, `seen_status` and the like, and the
# prefixed parameters of the other domains' parts (events `e_`, transactions `t_`, ledger
# `l1_`/`l2_`, the Idempotency-Key `k_`).

_NOW = bindparam("now", type_=_PAYMENT.c.updated_at.type)
_GET_WITH_SECRET = (
    select(_PAYMENT, *(c.label(f"secret__{c.name}") for c in _SECRET.c))
    .select_from(_PAYMENT.outerjoin(_SECRET, _SECRET.c.payment_id == _PAYMENT.c.id))
    .where(_OWN_PAYMENT)
)


_GET_WITH_SECRET_CHECKED = _GET_WITH_SECRET.add_columns(LIVE_SESSION)


async def find_payment_and_secret(
    db: Runner,
    user_id: uuid.UUID,
    payment_id: uuid.UUID,
    livemode: bool,
    session: SessionCheck | None = None,
) -> tuple[Payment, PaymentSecret | None] | None:
    """The payment (of that mode) and its vaulted source (None when destroyed), in one
    read; with `session`, that read also pays the request's session check (as
    `find_payment`)."""
    params = {"payment": payment_id, "owner": user_id, "in_livemode": livemode}
    if session is None:
        row = await db.first(_GET_WITH_SECRET, params)
    else:
        row = await sessions.first_checked(db, _GET_WITH_SECRET_CHECKED, params, session)
    if row is None:
        return None
    payment = record_of(Payment, {c.name: row[c.name] for c in _PAYMENT.c})
    if row["secret__payment_id"] is None:
        return payment, None
    secret = {c.name: row[f"secret__{c.name}"] for c in _SECRET.c}
    return payment, record_of(PaymentSecret, secret)


def create_values(payment: dict[str, Any], secret: dict[str, Any]) -> dict[str, Any]:
    return {**bound_row(_PAYMENT, "p_", payment), **bound_row(_SECRET, "s_", secret)}


def creating(parts: Callable[[CTE], Sequence[CTE]], *, checked: bool = False) -> Select[Any]:
    """The payment and its vaulted source inserted, with `parts(made)` (its event, the
    key's claim) in the same statement. `checked`: only while the request's session is live
    (`SessionCheck.params`); nothing is written, and no row returned, once it has ended."""
    made = gated_insert(
        _PAYMENT, "p_", None, "made_payment", when=SESSION_IS_LIVE if checked else None
    )
    sealed = gated_insert(_SECRET, "s_", made, "sealed_source")
    return select(made.c.id).add_cte(sealed, *parts(made))


def moving_to_processing(parts: Callable[[CTE], Sequence[CTE]]) -> Select[Any]:
    """The caller's payment moved from `seen_status` to processing (one more charge
    attempt), its CVC destroyed, with `parts(moved)` — all only if it moved."""
    moved = (
        update(_PAYMENT)
        .where(_OWN_PAYMENT, _PAYMENT.c.status == bindparam("seen_status"))
        .values(
            status=PaymentStatus.PROCESSING.value,
            charge_attempts=_PAYMENT.c.charge_attempts + 1,
            updated_at=_NOW,
        )
        .returning(_PAYMENT.c.id)
        .cte("moved_payment")
    )
    forgot = (
        update(_SECRET)
        .where(_SECRET.c.payment_id == bindparam("payment"), happened(moved))
        .values(cvc_key_id=None, cvc_sealed=None)
        .returning(_SECRET.c.payment_id)
        .cte("forgot_cvc")
    )
    return select(moved.c.id).add_cte(forgot, *parts(moved))


def settling(parts: Callable[[CTE], Sequence[CTE]]) -> Select[Any]:
    """The caller's processing payment moved to `target` with the charge's outcome
    (`reference`, `failure_code`, `failure_message`), its vaulted source destroyed, with
    `parts(settled)` — all only if it was still processing."""
    settled = (
        update(_PAYMENT)
        .where(_OWN_PAYMENT, _PROCESSING)
        .values(
            status=bindparam("target"),
            processor_reference=bindparam("reference"),
            failure_code=bindparam("failure_code"),
            failure_message=bindparam("failure_message"),
            updated_at=_NOW,
        )
        .returning(_PAYMENT.c.id)
        .cte("settled_payment")
    )
    destroyed = (
        delete(_SECRET)
        .where(_SECRET.c.payment_id == bindparam("payment"), happened(settled))
        .returning(_SECRET.c.payment_id)
        .cte("destroyed_source")
    )
    return select(settled.c.id).add_cte(destroyed, *parts(settled))


def seen_values(payment: Payment) -> dict[str, Any]:
    """The parameters that find `payment` as it was read (`reserve_part`, `release_part`)."""
    return {
        "payment": payment.id,
        "owner": payment.user_id,
        "in_livemode": payment.livemode,
        "seen_status": payment.status,
        "seen_refunded": payment.amount_refunded,
        "seen_pending": payment.amount_refund_pending,
    }


def reserve_part() -> CTE:
    """Hold `wanted` against the caller's payment, only if it is still as read (see
    `seen_values`): a refund decided on one read and one row update."""
    return (
        update(_PAYMENT)
        .where(_OWN_PAYMENT, _seen_payment())
        .values(
            amount_refund_pending=_PAYMENT.c.amount_refund_pending + bindparam("wanted"),
            updated_at=_NOW,
        )
        .returning(_PAYMENT.c.id)
        .cte("reserved_payment")
    )


def release_part(when: ColumnElement[bool]) -> CTE:
    """Write the payment's refund totals and status after a refund settled (`new_pending`,
    `new_refunded`, `new_status`), only if it is still as read and `when` holds."""
    return (
        update(_PAYMENT)
        .where(_OWN_PAYMENT, _seen_payment(), when)
        .values(
            amount_refund_pending=bindparam("new_pending"),
            amount_refunded=bindparam("new_refunded"),
            status=bindparam("new_status"),
            updated_at=_NOW,
        )
        .returning(_PAYMENT.c.id)
        .cte("released_payment")
    )


def _seen_payment() -> ColumnElement[bool]:
    return (
        (_PAYMENT.c.status == bindparam("seen_status"))
        & (_PAYMENT.c.amount_refunded == bindparam("seen_refunded"))
        & (_PAYMENT.c.amount_refund_pending == bindparam("seen_pending"))
    )


# --- Lists ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PaymentFilters:
    """What a payment list may be narrowed to; every given filter must hold (AND).
    `created_gte`/`created_lt` and `amount_gte`/`amount_lte` bound ranges (an empty range
    simply lists nothing); `metadata` keys must each hold exactly their value."""

    status: str | None = None
    currency: str | None = None
    payment_method: str | None = None
    created_gte: datetime | None = None
    created_lt: datetime | None = None
    amount_gte: int | None = None
    amount_lte: int | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


_OWN_MODE = (_PAYMENT.c.user_id == bindparam("owner")) & (
    _PAYMENT.c.livemode == bindparam("livemode")
)
_IS_OWNED = select(literal(1)).where(_OWN_MODE, _PAYMENT.c.id == bindparam("payment"))


def _metadata_holds(dialect: str, wanted: Mapping[str, str]) -> Any:
    """PostgreSQL: containment on the JSONB of `metadata` (what ix_payment_metadata, a GIN
    index over that expression, answers). SQLite: each key looked up with json_each, which
    takes any key as it is (a JSON path would need quoting)."""
    if dialect == "postgresql":
        return cast(_PAYMENT.c.metadata, JSONB).contains(dict(wanted))
    conditions = []
    for index, (key, value) in enumerate(wanted.items()):
        pairs = func.json_each(_PAYMENT.c.metadata).table_valued("key", "value")
        conditions.append(
            exists(
                select(literal(1))
                .select_from(pairs)
                .where(
                    pairs.c.key == bindparam(f"metadata_key_{index}", key),
                    pairs.c.value == bindparam(f"metadata_value_{index}", value),
                )
            )
        )
    return conditions


def list_statement(dialect: str, filters: PaymentFilters, cursor: Cursor | None) -> Any:
    """The statement `list_payments` runs (its parameters: owner, livemode, limit); the
    query-plan test and bench/listplan.py EXPLAIN it."""
    statement = select(_PAYMENT).where(_OWN_MODE)
    column = _PAYMENT.c
    if filters.status is not None:
        statement = statement.where(column.status == filters.status)
    if filters.currency is not None:
        statement = statement.where(column.currency == filters.currency)
    if filters.payment_method is not None:
        statement = statement.where(column.payment_method == filters.payment_method)
    if filters.created_gte is not None:
        statement = statement.where(column.created_at >= filters.created_gte)
    if filters.created_lt is not None:
        statement = statement.where(column.created_at < filters.created_lt)
    if filters.amount_gte is not None:
        statement = statement.where(column.amount >= filters.amount_gte)
    if filters.amount_lte is not None:
        statement = statement.where(column.amount <= filters.amount_lte)
    if filters.metadata:
        holds = _metadata_holds(dialect, filters.metadata)
        statement = statement.where(*(holds if isinstance(holds, list) else [holds]))
    if cursor is not None:
        statement = statement.where(before_cursor(column.created_at, column.id, cursor))
    return statement.order_by(column.created_at.desc(), column.id.desc()).limit(bindparam("limit"))


async def list_payments(
    db: Runner,
    user_id: uuid.UUID,
    livemode: bool,
    filters: PaymentFilters,
    *,
    cursor: Cursor | None,
    limit: int,
) -> list[Payment]:
    """The user's payments of one mode that pass `filters`, newest first (created_at, id
    descending), after `cursor`, at most `limit`."""
    rows = await db.rows(
        list_statement(db.dialect, filters, cursor),
        {"owner": user_id, "livemode": livemode, "limit": limit},
    )
    return [record_of(Payment, row) for row in rows]


async def is_owned(db: Runner, user_id: uuid.UUID, livemode: bool, payment_id: uuid.UUID) -> bool:
    """The payment exists, is the user's and is of this mode."""
    found = await db.scalar(
        _IS_OWNED, {"owner": user_id, "livemode": livemode, "payment": payment_id}
    )
    return found is not None


# Capture, void and 3-D Secure: the sweeps of reconciliation and the worker, on the one
# database handle.

_GET_ANY_PAYMENT = select(_PAYMENT).where(_PAYMENT.c.id == bindparam("payment"))
_WAITING_OR_AUTHORIZED = (
    select(_PAYMENT)
    .where(
        _PAYMENT.c.status == bindparam("status"),
        func.coalesce(_PAYMENT.c.authorized_at, _PAYMENT.c.updated_at) < bindparam("before"),
        _PAYMENT.c.id > bindparam("after"),
    )
    .order_by(_PAYMENT.c.id)
    .limit(bindparam("limit"))
)
_NO_ID = uuid.UUID(int=0)


async def find_payment_by_id(db: Runner, payment_id: uuid.UUID) -> Payment | None:
    """Any user's payment (for the customer's side: a challenge page has no login)."""
    row = await db.first(_GET_ANY_PAYMENT, {"payment": payment_id})
    return None if row is None else record_of(Payment, row)


async def list_in_status_since(
    db: Runner,
    status: PaymentStatus,
    before: datetime,
    after_id: uuid.UUID | None,
    limit: int,
) -> list[Payment]:
    """Payments in `status` since before `before` — authorized since (`requires_capture`),
    or unchanged since (`requires_action`) — in id order after `after_id`."""
    rows = await db.rows(
        _WAITING_OR_AUTHORIZED,
        {"status": status.value, "before": before, "after": after_id or _NO_ID, "limit": limit},
    )
    return [record_of(Payment, row) for row in rows]
