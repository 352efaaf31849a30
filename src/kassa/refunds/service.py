"""Refunds: never more than what is left, even when many are asked for at once.

The payment row is locked while the refund is reserved (`amount_refund_pending`), the
processor is called with no transaction open, and the outcome is recorded under the lock
again. The database's CHECK (refunded + pending <= amount) backs the rule up.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from kassa.auditlog.service import Actor, AuditLog
from kassa.db import Database, new_id
from kassa.events.service import EventService
from kassa.idempotency.service import HeldKey, commit_effect
from kassa.ledger.service import LedgerService
from kassa.observability.metrics import REFUND_AMOUNT, REFUNDS
from kassa.payments.errors import PaymentNotFound
from kassa.payments.service import PaymentService, ReconcileReport, refundable_amount
from kassa.processors.base import Outcome, Processor, RefundRequest
from kassa.processors.calls import call_processor
from kassa.refunds import repository
from kassa.refunds.errors import PaymentNotRefundable, RefundExceedsRefundable
from kassa.refunds.models import Refund
from kassa.refunds.schemas import refund_object
from kassa.transactions.service import TransactionService

log = structlog.get_logger("kassa.refunds")


def refund_reference(refund_id: uuid.UUID) -> str:
    return f"kassa_refund_{refund_id.hex}"


class RefundService:
    def __init__(
        self,
        db: Database,
        processor: Processor,
        clock: Callable[[], datetime],
        processor_timeout: float = 15.0,
    ) -> None:
        self._db = db
        self._processor = processor
        self._clock = clock
        self._processor_timeout = processor_timeout

    async def refund(
        self,
        user_id: uuid.UUID,
        payment_id: uuid.UUID,
        amount: int | None,
        reason: str | None,
        held: HeldKey | None = None,
        actor: Actor | None = None,
    ) -> Refund:
        """Reserve the amount and record the refund `pending` (with the Idempotency-Key's
        record of it and its audit event, in that transaction), ask the processor, then
        settle."""
        now = self._clock()
        refund_id = new_id()
        async with self._db.transaction() as db:
            await commit_effect(db, held, "refund", refund_id)
            payment = await PaymentService.lock_refundable(db, user_id, payment_id)
            if payment is None:
                raise PaymentNotFound
            if not PaymentService.is_refundable(payment):
                raise PaymentNotRefundable(payment.status)
            left = refundable_amount(payment)
            wanted = left if amount is None else amount
            if wanted <= 0 or wanted > left:
                raise RefundExceedsRefundable(left, payment.currency)
            PaymentService.reserve_refund(payment, wanted, now)
            await PaymentService.save_refund(db, payment)
            refund = await repository.insert_refund(
                db,
                {
                    "id": refund_id,
                    "payment_id": payment_id,
                    "user_id": user_id,
                    "amount": wanted,
                    "currency": payment.currency,
                    "status": "pending",
                    "reason": reason,
                    "processor_reference": None,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            await EventService.record(db, user_id, "refund.created", refund_object(refund), now)
            await AuditLog.record(
                db,
                actor or Actor(user_id),
                "refund.created",
                object_type="refund",
                object_id=refund.id,
                at=now,
                user_id=user_id,
                livemode=payment.livemode,
                details={
                    "payment_id": str(payment_id),
                    "amount": wanted,
                    "currency": refund.currency,
                },
            )
            await TransactionService.record_refund(
                db,
                user_id=user_id,
                payment_id=payment_id,
                refund_id=refund.id,
                amount=wanted,
                currency=payment.currency,
                payment_method=payment.payment_method,
                status="pending",
                now=now,
            )
            charge_reference = payment.processor_reference or ""
        REFUNDS.labels("pending", refund.currency).inc()
        outcome = await self._call_processor(
            RefundRequest(
                reference=refund_reference(refund.id),
                charge_reference=charge_reference,
                amount=wanted,
                currency=refund.currency,
            )
        )
        if outcome is None:
            log.warning("refund_outcome_unknown", refund_id=str(refund.id))
            return refund
        settled = await self.settle(user_id, refund.id, outcome[0] is Outcome.SUCCEEDED, outcome[1])
        return settled or refund

    async def find(self, user_id: uuid.UUID, refund_id: uuid.UUID) -> Refund | None:
        """One of the user's refunds as it stands."""
        refund = await repository.get_refund(self._db, refund_id)
        return refund if refund is not None and refund.user_id == user_id else None

    async def _call_processor(self, request: RefundRequest) -> tuple[Outcome, str] | None:
        answer = await call_processor(
            self._processor.name,
            "refund",
            self._processor.refund(request),
            seconds=self._processor_timeout,
            reference=request.reference,
            outcome=lambda result: result.outcome.value,
        )
        if answer is None:
            return None
        return answer.value.outcome, answer.value.processor_reference

    async def reconcile(self, *, older_than: timedelta, batch_size: int = 100) -> ReconcileReport:
        """Ask the processor again, under the same reference, about every refund left
        `pending` for longer than `older_than`; the processor refunds at most once per
        reference, so asking again is safe."""
        cutoff = self._clock() - older_than
        report = ReconcileReport()
        after: uuid.UUID | None = None
        while True:
            stale = await repository.list_stale_pending(self._db, cutoff, after, batch_size)
            references = {
                r.id: await PaymentService.processor_reference(self._db, r.user_id, r.payment_id)
                for r in stale
            }
            if not stale:
                break
            for refund in stale:
                after = refund.id
                report.examined += 1
                outcome = await self._call_processor(
                    RefundRequest(
                        reference=refund_reference(refund.id),
                        charge_reference=references[refund.id] or "",
                        amount=refund.amount,
                        currency=refund.currency,
                    )
                )
                if outcome is None:
                    report.unresolved += 1
                    continue
                await self.settle(
                    refund.user_id, refund.id, outcome[0] is Outcome.SUCCEEDED, outcome[1]
                )
                report.settled += 1
        return report

    async def settle(
        self, user_id: uuid.UUID, refund_id: uuid.UUID, succeeded: bool, reference: str
    ) -> Refund | None:
        """Record a definite processor answer for a pending refund; None if already settled."""
        now = self._clock()
        async with self._db.transaction() as db:
            refund = await repository.get_refund(db, refund_id)
            if refund is None or refund.status != "pending":
                return None
            payment = await PaymentService.lock_refundable(db, user_id, refund.payment_id)
            if payment is None:
                return None
            # Re-read under the payment's lock so two settlers cannot both apply it.
            refund = await repository.get_refund(db, refund_id)
            if refund is None or refund.status != "pending":
                return None
            PaymentService.release_refund(payment, refund.amount, succeeded, now)
            await PaymentService.save_refund(db, payment)
            refund.status = "succeeded" if succeeded else "failed"
            refund.processor_reference = reference
            refund.updated_at = now
            await repository.set_outcome(db, refund)
            if succeeded:
                await PaymentService.record_event(db, payment, now)
            await TransactionService.settle_refund(db, refund_id, refund.status, now)
            if succeeded:
                await LedgerService.post_refund(
                    db,
                    user_id=user_id,
                    payment_id=refund.payment_id,
                    refund_id=refund_id,
                    amount=refund.amount,
                    currency=refund.currency,
                    now=now,
                )
        REFUNDS.labels(refund.status, refund.currency).inc()
        if succeeded:
            REFUND_AMOUNT.labels(refund.currency).inc(refund.amount)
        log.info(
            "payment_refunded",
            refund_id=str(refund_id),
            payment_id=str(refund.payment_id),
            status=refund.status,
            amount=refund.amount,
            currency=refund.currency,
            payment_status=payment.status,
        )
        return refund
