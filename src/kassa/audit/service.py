"""`kassa ledger verify`: the books checked in one consistent snapshot.

What is checked, for every payment and refund:
- every posting sums to zero per currency, and no ledger line names an unknown payment or
  refund;
- the ledger's clearing account holds what the payment captured (its amount, or less after a
  partial capture) when it is charged (completed, partially refunded, refunded) and nothing
  otherwise, less exactly `amount_refunded` in refunds; succeeded refunds add up to
  `amount_refunded`, which never exceeds what was captured, which never exceeds the amount;
- the authorization holds account holds the payment's amount exactly while its authorization
  stands (`requires_capture`, or `processing` its capture or void) and nothing otherwise: an
  authorization is never revenue, and every hold is released once;
- every refund is posted once if it succeeded and never otherwise, for its amount;
- with the simulator, against the processor's own records: every charged payment has exactly
  one successful processor charge of what it captured under its reference, no payment kassa
  did not charge was charged (an authorization not captured included), every posted refund
  matches exactly one processor refund of its amount against its payment's charge, and the
  processor made no refund kassa does not know (a refund made twice shows here). With Stripe
  those records are Stripe's: this part is skipped (compare with Stripe's balance report).

Everything is read in one snapshot — on PostgreSQL a REPEATABLE READ, READ ONLY transaction;
on SQLite one deferred read transaction, which in WAL mode neither blocks writers nor sees
them — so a verify that runs beside live traffic sees each state change whole or not at all
and never reports a change half-done. In-flight work is not a mismatch: a `processing`
payment or a `pending` refund may have its processor record already and its outcome not yet.

Not SERIALIZABLE READ ONLY DEFERRABLE: that would also wait for a moment when no serializable
writer could still conflict, which protects against anomalies among SERIALIZABLE writers;
kassa's writers run at READ COMMITTED and commit each state change with its ledger lines in
one transaction, so a snapshot already sees only whole changes, and waiting would buy
nothing.

Each check aggregates in the database and returns only what disagrees; the ledger checks
go through the payments in id ranges of `batch_size`, so each statement is short and
progress can be shown; the checks against the processor's records run once over the whole
tables (see `kassa.audit.repository`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kassa.audit import repository
from kassa.db import Database, Runner
from kassa.payments.service import charge_reference
from kassa.payments.states import CHARGED
from kassa.refunds.service import refund_reference

_NO_ID = uuid.UUID(int=0)
CHARGE_PREFIX = charge_reference(_NO_ID).removesuffix(_NO_ID.hex)
REFUND_PREFIX = refund_reference(_NO_ID).removesuffix(_NO_ID.hex)
BATCH_SIZE = 20_000


@dataclass(frozen=True, slots=True)
class Mismatch:
    what: str

    def __str__(self) -> str:
        return self.what


@dataclass(slots=True)
class VerifyReport:
    postings: int = 0
    payments: int = 0
    processor_charges: int | None = None  # None: the processor's records were not checked
    processor_refunds: int | None = None
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


class BooksAuditor:
    """Checks the ledger against itself, payments, refunds and (with the simulator) the
    processor's records. `progress(done, total)` is told about payments checked."""

    def __init__(
        self,
        db: Database,
        *,
        processor_records: bool,
        progress: Callable[[int, int], None] | None = None,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self._db = db
        self._processor_records = processor_records
        self._progress = progress or (lambda _done, _total: None)
        self._batch_size = batch_size

    async def verify(self, *, limit_mismatches: int = 20) -> VerifyReport:
        report = VerifyReport()
        limit = limit_mismatches

        def note(what: str) -> None:
            if len(report.mismatches) < limit:
                report.mismatches.append(Mismatch(what))

        async with self._db.snapshot() as db:
            total = await repository.count_payments(db)
            report.postings = await repository.count_postings(db)
            for posting_id, currency, amount in await repository.unbalanced_postings(db, limit):
                note(f"posting {posting_id} sums to {amount} {currency}, not 0")
            for (payment_id,) in await repository.lines_of_unknown_payments(db, limit):
                note(f"ledger lines for unknown payment {payment_id}")
            for posting_id, payment_id, livemode in await repository.lines_in_the_other_modes_books(
                db, limit
            ):
                books, mode = ("live", "test") if livemode else ("test", "live")
                note(
                    f"posting {posting_id} is in the {books} books; payment {payment_id} is {mode}"
                )
            for refund_id, payment_id in await repository.postings_of_unknown_refunds(db, limit):
                note(f"ledger refund posting for unknown refund {refund_id} (payment {payment_id})")
            if self._processor_records:
                await self._processor_orphans(db, report, note, limit)
            self._progress(0, total)
            after: uuid.UUID | None = None
            while (batch := await repository.next_batch(db, after, self._batch_size)) is not None:
                await self._check_batch(db, batch, note, limit)
                report.payments = min(total, report.payments + self._batch_size)
                self._progress(report.payments, total)
                if batch.through is None:
                    break
                after = batch.through
            report.payments = total
        return report

    async def _check_batch(
        self,
        db: Runner,
        batch: repository.Batch,
        note: Callable[[str], None],
        limit: int,
    ) -> None:
        for row in await repository.payment_totals_that_disagree(db, batch, limit):
            if row.charged != row.expected_charge:
                note(f"payment {row.id}: charged in ledger {row.charged} != {row.expected_charge}")
            if row.refunded != row.amount_refunded:
                note(
                    f"payment {row.id}: refunded in ledger {row.refunded} != "
                    f"amount_refunded {row.amount_refunded}"
                )
            if row.succeeded != row.amount_refunded:
                note(
                    f"payment {row.id}: succeeded refunds add up to {row.succeeded}, "
                    f"not amount_refunded {row.amount_refunded}"
                )
            if row.amount_refunded > row.captured:
                note(f"payment {row.id}: refunded more than was captured")
            if row.captured > row.amount:
                note(f"payment {row.id}: captured {row.captured}, more than the amount")
            if row.held != row.expected_hold:
                note(
                    f"payment {row.id} ({row.status}): authorization holds in ledger "
                    f"{row.held} != {row.expected_hold}"
                )
        for row in await repository.refunds_without_their_posting(db, batch, limit):
            if row.posted is None:
                note(f"refund {row.id} of payment {row.payment_id}: succeeded but not posted")
            elif row.status != "succeeded":
                note(f"refund {row.id} of payment {row.payment_id}: {row.status} but posted")
            else:
                note(f"refund {row.id}: posted {row.posted}, refunded {row.amount}")

    async def _processor_orphans(
        self,
        db: Runner,
        report: VerifyReport,
        note: Callable[[str], None],
        limit: int,
    ) -> None:
        (
            report.processor_charges,
            report.processor_refunds,
        ) = await repository.count_processor_records(db)
        for row in await repository.charges_that_disagree(db, CHARGE_PREFIX, limit):
            note(_charge_mismatch(row))
        rows = await repository.refunds_that_disagree_with_the_processor(db, REFUND_PREFIX, limit)
        for row in rows:
            note(_refund_mismatch(row))
        for row in await repository.processor_charges_of_no_payment(db, CHARGE_PREFIX, limit):
            note(
                f"processor charge {row.processor_reference} ({row.amount} {row.currency}, "
                f"reference {row.reference}) belongs to no payment"
            )
        orphans: Sequence[Any] = await repository.processor_refunds_of_no_refund(
            db, REFUND_PREFIX, limit
        )
        for row in orphans:
            payment = await repository.payment_of_charge(db, row.charge_reference)
            of = f"payment {payment}" if payment else "no payment"
            note(
                f"processor refund {row.reference} ({row.amount} {row.currency} of charge "
                f"{row.charge_reference}, {of}) matches no refund in kassa: refunded twice?"
            )


def _charge_mismatch(row: Any) -> str:
    if row.status not in CHARGED:
        return f"payment {row.id} is {row.status} but the processor charged it"
    if row.charge is None or row.outcome != "succeeded":
        return f"payment {row.id} is {row.status} with no successful processor charge"
    if row.charged != row.captured:
        return f"payment {row.id}: the processor charged {row.charged}, not {row.captured}"
    return (
        f"payment {row.id}: its processor reference {row.processor_reference} is not the "
        f"charge {row.charge_reference}"
    )


def _refund_mismatch(row: Any) -> str:
    if row.status == "failed":
        return f"refund {row.id} of payment {row.payment_id} failed but the processor refunded it"
    if row.at_processor is None or row.outcome != "succeeded":
        return f"refund {row.id} of payment {row.payment_id} has no processor refund"
    if row.refunded != row.amount:
        return f"refund {row.id}: the processor refunded {row.refunded}, not {row.amount}"
    return (
        f"refund {row.id}: the processor refunded charge {row.charge_reference}, not the "
        f"payment's {row.processor_reference}"
    )
