"""Every query of the audit. Each one aggregates in the database and returns only what
disagrees (at most `limit` rows), so checking a large ledger moves little over the wire.

The audit reads the tables of several domains (the ledger, payments, refunds and the
simulator's records) in one snapshot: it is the one place allowed to, and it only reads.
The ledger-against-payments checks take one range of payment ids at a time (`Batch`, an
index range on every side), so each statement stays short and the caller can report
progress. The checks against the processor's records join on references computed from ids
(`kassa_charge_<hex>`), which no index serves; they run once over the whole tables, where
the database hashes each side once, rather than once per range.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
    true,
)

from kassa.db import Runner, table_of
from kassa.ledger.models import LedgerEntry
from kassa.ledger.service import CLEARING, HOLDS
from kassa.payments.models import Payment
from kassa.payments.states import CHARGED, PaymentStatus, ProcessorStep
from kassa.processors.base import Outcome
from kassa.processors.simulator_store import SimulatorCharge, SimulatorRefund
from kassa.refunds.models import Refund

_LEDGER = table_of(LedgerEntry)
_PAYMENT = table_of(Payment)
_REFUND = table_of(Refund)
_SIM_CHARGE = table_of(SimulatorCharge)
_SIM_REFUND = table_of(SimulatorRefund)
_CHARGED = [status.value for status in CHARGED]
# A charge the processor made for a payment in one of these states took money kassa does
# not hold: `processing` is left out, its outcome is being recorded right now.
# `requires_action` is left out too: the customer may have just authenticated at the
# processor, and the payment is resumed from that right after. An authorization
# (`requires_capture`) is not a charge: its capture starts by moving it to `processing`.
_NOT_CHARGED = [
    PaymentStatus.PENDING.value,
    PaymentStatus.FAILED.value,
    PaymentStatus.CANCELED.value,
    PaymentStatus.REQUIRES_CAPTURE.value,
]
_SUCCEEDED = Outcome.SUCCEEDED.value


@dataclass(frozen=True, slots=True)
class Batch:
    """Payments with `after < id <= through` (`through` None: to the end)."""

    after: uuid.UUID | None
    through: uuid.UUID | None

    def of(self, column: ColumnElement[Any]) -> ColumnElement[bool]:
        lower = column > self.after if self.after is not None else true()
        upper = column <= self.through if self.through is not None else true()
        return and_(lower, upper)


def _hex(column: ColumnElement[Any]) -> ColumnElement[str]:
    """A UUID column as 32 lower-case hex digits, the way the processor references embed it
    (PostgreSQL prints the dashes, SQLite stores the digits alone)."""
    return func.replace(cast(column, String), "-", "")


async def count_payments(db: Runner) -> int:
    return int(await db.scalar(select(func.count()).select_from(_PAYMENT)) or 0)


async def count_postings(db: Runner) -> int:
    query = select(func.count(func.distinct(_LEDGER.c.posting_id)))
    return int(await db.scalar(query) or 0)


async def next_batch(db: Runner, after: uuid.UUID | None, size: int) -> Batch | None:
    """The next `size` payments in id order after `after`; None when none are left."""
    ids = select(_PAYMENT.c.id)
    if after is not None:
        ids = ids.where(_PAYMENT.c.id > after)
    first = await db.scalar(ids.order_by(_PAYMENT.c.id).limit(1))
    if first is None:
        return None
    last = await db.scalar(ids.order_by(_PAYMENT.c.id).offset(size - 1).limit(1))
    return Batch(after, last)


async def unbalanced_postings(db: Runner, limit: int) -> Sequence[Any]:
    total = func.sum(_LEDGER.c.amount)
    query = (
        select(_LEDGER.c.posting_id, _LEDGER.c.currency, total.label("total"))
        .group_by(_LEDGER.c.posting_id, _LEDGER.c.currency)
        .having(total != 0)
        .limit(limit)
    )
    return await db.tuples(query)


async def lines_of_unknown_payments(db: Runner, limit: int) -> Sequence[Any]:
    known = exists().where(_PAYMENT.c.id == _LEDGER.c.payment_id)
    query = select(_LEDGER.c.payment_id).where(~known).distinct().limit(limit)
    return await db.tuples(query)


async def lines_in_the_other_modes_books(db: Runner, limit: int) -> Sequence[Any]:
    """Ledger lines in another mode's books than their payment's (test money counted as live,
    or live as test). A line without a mode (written by the release before modes were
    recorded, during an upgrade) is its payment's and is not one of them."""
    query = (
        select(_LEDGER.c.posting_id, _LEDGER.c.payment_id, _LEDGER.c.livemode)
        .join(_PAYMENT, _PAYMENT.c.id == _LEDGER.c.payment_id)
        .where(_LEDGER.c.livemode.is_not(None), _LEDGER.c.livemode != _PAYMENT.c.livemode)
        .distinct()
        .limit(limit)
    )
    return await db.tuples(query)


async def payment_totals_that_disagree(db: Runner, batch: Batch, limit: int) -> Sequence[Any]:
    """Payments whose ledger totals, succeeded refunds and amounts disagree: the ledger's
    clearing account holds +amount for a charged payment (0 otherwise) and −amount_refunded
    in refunds, and the succeeded refunds add up to amount_refunded."""
    on_clearing = _LEDGER.c.account == CLEARING
    clearing = (
        select(
            _LEDGER.c.payment_id,
            func.sum(
                case((on_clearing & (_LEDGER.c.kind == "charge"), _LEDGER.c.amount), else_=0)
            ).label("charged"),
            func.sum(
                case((on_clearing & (_LEDGER.c.kind == "refund"), -_LEDGER.c.amount), else_=0)
            ).label("refunded"),
            func.sum(case((_LEDGER.c.account == HOLDS, _LEDGER.c.amount), else_=0)).label("held"),
        )
        .where(_LEDGER.c.account.in_([CLEARING, HOLDS]), batch.of(_LEDGER.c.payment_id))
        .group_by(_LEDGER.c.payment_id)
        .subquery()
    )
    refunds = (
        select(_REFUND.c.payment_id, func.sum(_REFUND.c.amount).label("succeeded"))
        .where(_REFUND.c.status == "succeeded", batch.of(_REFUND.c.payment_id))
        .group_by(_REFUND.c.payment_id)
        .subquery()
    )
    p = _PAYMENT.c
    charged = func.coalesce(clearing.c.charged, 0)
    refunded = func.coalesce(clearing.c.refunded, 0)
    held = func.coalesce(clearing.c.held, 0)
    succeeded = func.coalesce(refunds.c.succeeded, 0)
    captured = func.coalesce(p.amount_captured, p.amount)
    expected_charge = case((p.status.in_(_CHARGED), captured), else_=0)
    expected_hold = case((holding(), p.amount), else_=0)
    query = (
        select(
            p.id,
            p.status,
            p.amount,
            p.amount_refunded,
            captured.label("captured"),
            expected_charge.label("expected_charge"),
            charged.label("charged"),
            refunded.label("refunded"),
            succeeded.label("succeeded"),
            expected_hold.label("expected_hold"),
            held.label("held"),
        )
        .select_from(
            _PAYMENT.outerjoin(clearing, clearing.c.payment_id == p.id).outerjoin(
                refunds, refunds.c.payment_id == p.id
            )
        )
        .where(
            batch.of(p.id),
            or_(
                charged != expected_charge,
                refunded != p.amount_refunded,
                succeeded != p.amount_refunded,
                p.amount_refunded > captured,
                captured > p.amount,
                held != expected_hold,
            ),
        )
        .order_by(p.id)
        .limit(limit)
    )
    return await db.tuples(query)


def holding() -> ColumnElement[bool]:
    """Payments whose authorization is held right now: authorized and not yet captured or
    released — waiting in `requires_capture`, or `processing` its capture or void."""
    p = _PAYMENT.c
    return and_(
        p.authorized_at.is_not(None),
        or_(
            p.status == PaymentStatus.REQUIRES_CAPTURE.value,
            and_(
                p.status == PaymentStatus.PROCESSING.value,
                p.processor_step.in_([ProcessorStep.CAPTURE.value, ProcessorStep.VOID.value]),
            ),
        ),
    )


async def refunds_without_their_posting(db: Runner, batch: Batch, limit: int) -> Sequence[Any]:
    """Refunds posted to the ledger unless they succeeded, or not posted though they did, or
    posted with another amount (a refund's posting carries its id on the payable line)."""
    posting = _LEDGER.alias("posting")
    r = _REFUND.c
    query = (
        select(r.id, r.payment_id, r.status, r.amount, posting.c.amount.label("posted"))
        .select_from(
            _REFUND.outerjoin(
                posting,
                # The payment range on both sides keeps this to an index range on each.
                and_(posting.c.refund_id == r.id, batch.of(posting.c.payment_id)),
            )
        )
        .where(
            batch.of(r.payment_id),
            or_(
                and_(r.status == "succeeded", posting.c.id.is_(None)),
                and_(r.status != "succeeded", posting.c.id.is_not(None)),
                posting.c.amount != r.amount,
            ),
        )
        .order_by(r.id)
        .limit(limit)
    )
    return await db.tuples(query)


async def postings_of_unknown_refunds(db: Runner, limit: int) -> Sequence[Any]:
    known = exists().where(_REFUND.c.id == _LEDGER.c.refund_id)
    query = (
        select(_LEDGER.c.refund_id, _LEDGER.c.payment_id)
        .where(_LEDGER.c.refund_id.is_not(None), ~known)
        .limit(limit)
    )
    return await db.tuples(query)


# The processor's records (the simulator's tables) -------------------------------------------


async def charges_that_disagree(db: Runner, charge_prefix: str, limit: int) -> Sequence[Any]:
    """Payments whose processor charge is missing, failed, of another amount or another
    reference though they are charged; and payments charged at the processor though kassa
    says they are not (pending, failed, canceled)."""
    p = _PAYMENT.c
    s = _SIM_CHARGE.c
    at_processor = and_(s.reference.is_not(None), s.outcome == _SUCCEEDED)
    query = (
        select(
            p.id,
            p.status,
            p.amount,
            p.currency,
            p.processor_reference,
            s.reference.label("charge"),
            s.outcome,
            func.coalesce(s.amount_captured, s.amount).label("charged"),
            func.coalesce(p.amount_captured, p.amount).label("captured"),
            s.processor_reference.label("charge_reference"),
        )
        .select_from(
            _PAYMENT.outerjoin(_SIM_CHARGE, s.reference == literal(charge_prefix) + _hex(p.id))
        )
        .where(
            or_(
                and_(
                    p.status.in_(_CHARGED),
                    or_(
                        s.reference.is_(None),
                        s.outcome != _SUCCEEDED,
                        func.coalesce(s.amount_captured, s.amount)
                        != func.coalesce(p.amount_captured, p.amount),
                        func.coalesce(p.processor_reference, "") != s.processor_reference,
                    ),
                ),
                and_(p.status.in_(_NOT_CHARGED), at_processor),
            ),
        )
        .order_by(p.id)
        .limit(limit)
    )
    return await db.tuples(query)


async def refunds_that_disagree_with_the_processor(
    db: Runner, refund_prefix: str, limit: int
) -> Sequence[Any]:
    """Succeeded refunds (those posted to the ledger) without exactly one processor refund
    of their amount against their payment's charge, and failed refunds the processor made."""
    r = _REFUND.c
    s = _SIM_REFUND.c
    p = _PAYMENT.c
    query = (
        select(
            r.id,
            r.payment_id,
            r.status,
            r.amount,
            s.reference.label("at_processor"),
            s.outcome,
            s.amount.label("refunded"),
            s.charge_reference,
            p.processor_reference,
        )
        .select_from(
            _REFUND.join(_PAYMENT, p.id == r.payment_id).outerjoin(
                _SIM_REFUND, s.reference == literal(refund_prefix) + _hex(r.id)
            )
        )
        .where(
            or_(
                and_(
                    r.status == "succeeded",
                    or_(
                        s.reference.is_(None),
                        s.outcome != _SUCCEEDED,
                        s.amount != r.amount,
                        s.charge_reference != func.coalesce(p.processor_reference, ""),
                    ),
                ),
                and_(r.status == "failed", s.outcome == _SUCCEEDED),
            ),
        )
        .order_by(r.id)
        .limit(limit)
    )
    return await db.tuples(query)


async def processor_charges_of_no_payment(
    db: Runner, charge_prefix: str, limit: int
) -> Sequence[Any]:
    s = _SIM_CHARGE.c
    known = exists().where(s.reference == literal(charge_prefix) + _hex(_PAYMENT.c.id))
    query = (
        select(s.reference, s.processor_reference, s.amount, s.currency)
        .where(s.outcome == _SUCCEEDED, ~known)
        .limit(limit)
    )
    return await db.tuples(query)


async def processor_refunds_of_no_refund(
    db: Runner, refund_prefix: str, limit: int
) -> Sequence[Any]:
    """Refunds the processor made that match no refund in kassa: money returned twice, or
    returned with nothing in the books."""
    s = _SIM_REFUND.c
    known = exists().where(s.reference == literal(refund_prefix) + _hex(_REFUND.c.id))
    query = (
        select(s.reference, s.charge_reference, s.amount, s.currency)
        .where(s.outcome == _SUCCEEDED, ~known)
        .limit(limit)
    )
    return await db.tuples(query)


async def payment_of_charge(db: Runner, charge_reference: str) -> uuid.UUID | None:
    """The payment a processor charge belongs to (for naming it in a report)."""
    query = select(_PAYMENT.c.id).where(_PAYMENT.c.processor_reference == charge_reference)
    found: uuid.UUID | None = await db.scalar(query.limit(1))
    return found


async def count_processor_records(db: Runner) -> tuple[int, int]:
    charges = await db.scalar(
        select(func.count()).select_from(_SIM_CHARGE).where(_SIM_CHARGE.c.outcome == _SUCCEEDED)
    )
    refunds = await db.scalar(
        select(func.count()).select_from(_SIM_REFUND).where(_SIM_REFUND.c.outcome == _SUCCEEDED)
    )
    return int(charges or 0), int(refunds or 0)
