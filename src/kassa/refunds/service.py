"""Refunds: never more than what is left, even when many are asked for at once.

The payment row is locked while the refund is reserved (`amount_refund_pending`), the
processor is called with no transaction open, and the outcome is recorded under the lock
again. The database's CHECK (refunded + pending <= amount) backs the rule up.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import CTE, Select
from sqlalchemy.exc import IntegrityError

from kassa.auditlog.service import Actor, AuditLog
from kassa.auth import sessions
from kassa.auth.sessions import SessionCheck
from kassa.db import Database, new_id, record_of, values_of
from kassa.events.service import EventService
from kassa.idempotency.service import (
    HeldKey,
    IdempotencyService,
    claim_conflict,
    commit_effect,
    keep_with_effect,
)
from kassa.ledger.service import LedgerService
from kassa.observability.metrics import REFUND_AMOUNT, REFUNDS
from kassa.payments.errors import PaymentNotFound
from kassa.payments.models import Payment
from kassa.payments.service import PaymentService, ReconcileReport, changed, refundable_amount
from kassa.processors.base import Outcome, Processor, RefundRequest
from kassa.processors.calls import call_processor
from kassa.processors.modes import Processors
from kassa.refunds import repository
from kassa.refunds.errors import PaymentNotRefundable, RefundExceedsRefundable
from kassa.refunds.models import Refund
from kassa.refunds.schemas import RefundOut, refund_object
from kassa.transactions.service import TransactionService

log = structlog.get_logger("kassa.refunds")


def refund_reference(refund_id: uuid.UUID) -> str:
    return f"kassa_refund_{refund_id.hex}"


def _audited(refund: Refund, payment: Payment, now: datetime) -> dict[str, Any]:
    """What the audit log records of a refund made (`refund.created`)."""
    return {
        "object_type": "refund",
        "object_id": refund.id,
        "at": now,
        "user_id": refund.user_id,
        "livemode": payment.livemode,
        "details": {
            "payment_id": str(payment.id),
            "amount": refund.amount,
            "currency": refund.currency,
        },
    }


def _audit_values(actor: Actor, refund: Refund, payment: Payment, now: datetime) -> dict[str, Any]:
    return AuditLog.record_values(actor, "refund.created", **_audited(refund, payment, now))


def _answer(refund: Refund) -> bytes:
    """The refund as the refund route answers it."""
    return RefundOut.model_validate(refund, from_attributes=True).model_dump_json().encode()


def _refund_row(
    refund_id: uuid.UUID, payment: Payment, wanted: int, reason: str | None, now: datetime
) -> dict[str, Any]:
    return {
        "id": refund_id,
        "payment_id": payment.id,
        "user_id": payment.user_id,
        "livemode": payment.livemode,
        "amount": wanted,
        "currency": payment.currency,
        "status": "pending",
        "reason": reason,
        "processor_reference": None,
        "created_at": now,
        "updated_at": now,
    }


# PostgreSQL: a refund's writes in one statement per step, built once per shape.


@functools.cache
def _reserve_statement(keyed: bool) -> Select[Any]:
    def parts(reserved: CTE) -> list[CTE]:
        claim = [IdempotencyService.claim_part(reserved)] if keyed else []
        transaction = TransactionService.record_part(reserved, "refund_transaction")
        audited = AuditLog.record_part(reserved)
        return [*EventService.record_part(reserved), audited, transaction, *claim]

    return repository.reserving(PaymentService.reserve_part(), parts)


@functools.cache
def _settle_statement(succeeded: bool, keyed: bool) -> Select[Any]:
    def parts(released: CTE) -> list[CTE]:
        event = EventService.record_part(released) if succeeded else []
        posting = LedgerService.post_part(released) if succeeded else []
        kept = [IdempotencyService.complete_part(released)] if keyed else []
        transaction = TransactionService.settle_part(released, of_refund=True)
        return [*event, transaction, *posting, *kept]

    return repository.settling(PaymentService.release_part(repository.still_pending()), parts)


class RefundService:
    def __init__(
        self,
        db: Database,
        processors: Processor | Processors,
        clock: Callable[[], datetime],
        processor_timeout: float = 15.0,
    ) -> None:
        self._db = db
        self._processors = Processors.either(processors)
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
        *,
        livemode: bool,
        session: SessionCheck | None = None,
    ) -> Refund:
        """Reserve the amount and record the refund `pending` (with the Idempotency-Key's
        record of it and its audit event, in that transaction), ask the processor of the
        payment's mode, then settle. A payment of the other mode is not found. The first
        read pays the request's `session` check, if still owed."""
        now = self._clock()
        refund_id = new_id()
        reserved = None
        actor = actor or Actor(user_id)
        if self._db.writes_at_once and (held is None or held.unclaimed):
            reserved = await self._reserve(
                user_id, payment_id, amount, reason, held, now, refund_id, actor, livemode, session
            )
            session = None  # paid by that read
        if reserved is None:
            await sessions.confirm(self._db, session)
            reserved = await self._reserve_locked(
                user_id, payment_id, amount, reason, held, now, refund_id, actor, livemode
            )
        refund, payment = reserved
        REFUNDS.labels("pending", refund.currency).inc()
        outcome = await self._call_processor(
            RefundRequest(
                reference=refund_reference(refund.id),
                charge_reference=payment.processor_reference or "",
                amount=refund.amount,
                currency=refund.currency,
            ),
            livemode=payment.livemode,
        )
        if outcome is None:
            log.warning("refund_outcome_unknown", refund_id=str(refund.id))
            return refund
        settled = await self.settle(
            user_id,
            refund.id,
            outcome[0] is Outcome.SUCCEEDED,
            outcome[1],
            held=held,
            reserved=reserved,
        )
        return settled or refund

    async def _reserve(
        self,
        user_id: uuid.UUID,
        payment_id: uuid.UUID,
        amount: int | None,
        reason: str | None,
        held: HeldKey | None,
        now: datetime,
        refund_id: uuid.UUID,
        actor: Actor,
        livemode: bool,
        session: SessionCheck | None,
    ) -> tuple[Refund, Payment] | None:
        """PostgreSQL: read the payment (paying the session check), then hold the amount on
        it and record the refund, its event, its audit event, its transaction and the key's
        claim in one statement, only if the payment is still as read. The refund and the
        payment as reserved; None when the payment changed meanwhile (the locked path
        decides then)."""
        payment = await PaymentService.find(
            self._db, user_id, payment_id, livemode=livemode, session=session
        )
        wanted = self._refundable(payment, amount)
        assert payment is not None
        reserved = changed(
            payment,
            amount_refund_pending=payment.amount_refund_pending + wanted,
            updated_at=now,
        )
        values = _refund_row(refund_id, payment, wanted, reason, now)
        refund = record_of(Refund, values)
        params: dict[str, Any] = {
            **PaymentService.seen_values(payment),
            "wanted": wanted,
            "now": now,
            **repository.refund_values(values),
            **EventService.record_values(user_id, "refund.created", refund_object(refund), now),
            **_audit_values(actor, refund, payment, now),
            **TransactionService.refund_values(
                user_id=user_id,
                livemode=payment.livemode,
                payment_id=payment_id,
                refund_id=refund_id,
                amount=wanted,
                currency=payment.currency,
                payment_method=payment.payment_method,
                now=now,
            ),
        }
        if held is not None:
            params |= IdempotencyService.claim_values(held.claim_row("refund", refund_id))
        try:
            row = await self._db.first(_reserve_statement(held is not None), params)
        except IntegrityError as exc:
            raise claim_conflict(held, exc) or exc from None
        if held is not None:
            held.claimed = True
        return None if row is None else (refund, reserved)

    @staticmethod
    def _refundable(payment: Payment | None, amount: int | None) -> int:
        """What a refund of `amount` (None: all that is left) takes; raises when refused."""
        if payment is None:
            raise PaymentNotFound
        if not PaymentService.is_refundable(payment):
            raise PaymentNotRefundable(payment.status)
        left = refundable_amount(payment)
        wanted = left if amount is None else amount
        if wanted <= 0 or wanted > left:
            raise RefundExceedsRefundable(left, payment.currency)
        return wanted

    async def _reserve_locked(
        self,
        user_id: uuid.UUID,
        payment_id: uuid.UUID,
        amount: int | None,
        reason: str | None,
        held: HeldKey | None,
        now: datetime,
        refund_id: uuid.UUID,
        actor: Actor,
        livemode: bool,
    ) -> tuple[Refund, Payment]:
        """Reserve under the payment's row lock, step by step in one transaction."""
        async with self._db.transaction() as db:
            await commit_effect(db, held, "refund", refund_id)
            payment = await PaymentService.lock_refundable(
                db, user_id, payment_id, livemode=livemode
            )
            wanted = self._refundable(payment, amount)
            assert payment is not None
            PaymentService.reserve_refund(payment, wanted, now)
            await PaymentService.save_refund(db, payment)
            refund = await repository.insert_refund(
                db, _refund_row(refund_id, payment, wanted, reason, now)
            )
            await EventService.record(db, user_id, "refund.created", refund_object(refund), now)
            await AuditLog.record(db, actor, "refund.created", **_audited(refund, payment, now))
            await TransactionService.record_refund(
                db,
                user_id=user_id,
                livemode=payment.livemode,
                payment_id=payment_id,
                refund_id=refund.id,
                amount=wanted,
                currency=payment.currency,
                payment_method=payment.payment_method,
                status="pending",
                now=now,
            )
        return refund, payment

    async def find(
        self, user_id: uuid.UUID, refund_id: uuid.UUID, *, livemode: bool
    ) -> Refund | None:
        """One of the user's refunds of one mode as it stands."""
        refund = await repository.get_refund(self._db, refund_id)
        if refund is None or refund.user_id != user_id or refund.livemode != livemode:
            return None
        return refund

    async def _call_processor(
        self, request: RefundRequest, *, livemode: bool
    ) -> tuple[Outcome, str] | None:
        processor = self._processors.of(livemode)
        answer = await call_processor(
            processor.name,
            "refund",
            processor.refund(request),
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
                r.id: await PaymentService.processor_reference(
                    self._db, r.user_id, r.payment_id, livemode=r.livemode
                )
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
                    ),
                    livemode=refund.livemode,
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
        self,
        user_id: uuid.UUID,
        refund_id: uuid.UUID,
        succeeded: bool,
        reference: str,
        *,
        held: HeldKey | None = None,
        reserved: tuple[Refund, Payment] | None = None,
    ) -> Refund | None:
        """Record a definite processor answer for a pending refund; None if already settled.
        With `held`, the request's answer (201, the settled refund) is kept with it.
        `reserved`: the refund and its payment as this request reserved them; while the
        payment is still so, the outcome is written in one statement (PostgreSQL)."""
        now = self._clock()
        keyed = held is not None and not held.unclaimed
        if self._db.writes_at_once and reserved is not None:
            settled = await self._settle_as_reserved(
                user_id, succeeded, reference, held if keyed else None, reserved, now
            )
            if settled is not None:
                return settled
        async with self._db.transaction() as db:
            refund = await repository.get_refund(db, refund_id)
            if refund is None or refund.status != "pending":
                return None
            payment = await PaymentService.lock_refundable(
                db, user_id, refund.payment_id, livemode=refund.livemode
            )
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
                    livemode=refund.livemode,
                    now=now,
                )
            if held is not None and keyed:
                await keep_with_effect(db, held, (201, _answer(refund)))
        self._settled(refund, payment, succeeded)
        return refund

    async def _settle_as_reserved(
        self,
        user_id: uuid.UUID,
        succeeded: bool,
        reference: str,
        held: HeldKey | None,
        reserved: tuple[Refund, Payment],
        now: datetime,
    ) -> Refund | None:
        """PostgreSQL: the refund settled, the payment's totals, its event, the refund's
        transaction, the ledger posting and the kept answer in one statement — only if the
        refund is still pending and the payment still as this request reserved it (else
        None: the locked path decides)."""
        refund, payment = reserved
        released = changed(payment)
        PaymentService.release_refund(released, refund.amount, succeeded, now)
        status = "succeeded" if succeeded else "failed"
        settled = record_of(
            Refund,
            {
                **values_of(refund),
                "status": status,
                "processor_reference": reference,
                "updated_at": now,
            },
        )
        params: dict[str, Any] = {
            **PaymentService.seen_values(payment),
            "refund": refund.id,
            "new_pending": released.amount_refund_pending,
            "new_refunded": released.amount_refunded,
            "new_status": released.status,
            "now": now,
            "r_status": status,
            "r_reference": reference,
            **TransactionService.settle_values(refund.id, status, now),
        }
        if succeeded:
            params |= PaymentService.event_values(released, now)
            params |= LedgerService.refund_values(
                user_id=user_id,
                payment_id=refund.payment_id,
                refund_id=refund.id,
                amount=refund.amount,
                currency=refund.currency,
                livemode=refund.livemode,
                now=now,
            )
        if held is not None:
            params |= held.answer_values((201, _answer(settled)))
        statement = _settle_statement(succeeded, held is not None)
        if await self._db.first(statement, params) is None:
            return None
        if held is not None:
            held.kept = True
        self._settled(settled, released, succeeded)
        return settled

    @staticmethod
    def _settled(refund: Refund, payment: Payment, succeeded: bool) -> None:
        REFUNDS.labels(refund.status, refund.currency).inc()
        if succeeded:
            REFUND_AMOUNT.labels(refund.currency).inc(refund.amount)
        log.info(
            "payment_refunded",
            refund_id=str(refund.id),
            payment_id=str(refund.payment_id),
            status=refund.status,
            amount=refund.amount,
            currency=refund.currency,
            payment_status=payment.status,
        )
