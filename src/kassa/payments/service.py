"""Payment business rules. The only place that knows where a database transaction starts
and ends.

A processor is never called while a transaction is open: `process` commits the move to
`processing` first, calls the processor, then records the outcome in a second short
transaction. A crash in between leaves `processing`, which reconciliation settles by
looking the charge up under the same deterministic reference — so nothing is charged twice.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import structlog
from sqlalchemy import CTE, ColumnElement, Select
from sqlalchemy.exc import IntegrityError

from kassa.auditlog.service import Actor, AuditAction, AuditLog
from kassa.auth import sessions
from kassa.auth.sessions import SESSION_IS_LIVE, SessionCheck
from kassa.db import Database, Runner, new_id, record_of, values_of
from kassa.events.service import EventService
from kassa.idempotency.service import (
    HeldKey,
    IdempotencyService,
    claim_conflict,
    commit_effect,
    keep_with_effect,
)
from kassa.ledger.service import LedgerService
from kassa.observability.metrics import PAYMENT_AMOUNT, PAYMENTS
from kassa.payments import repository
from kassa.payments.errors import (
    AmountTooLarge,
    CaptureExceedsAuthorized,
    PaymentNotCancelable,
    PaymentNotCapturable,
    PaymentNotFound,
    PaymentNotPending,
    ReturnUrlNotAllowed,
)
from kassa.payments.models import Payment, PaymentSecret
from kassa.payments.returns import ReturnPages
from kassa.payments.schemas import (
    CardPaymentRequest,
    WalletPaymentRequest,
    payment_object,
    payment_out,
)
from kassa.payments.states import (
    REFUNDABLE,
    RESUMABLE,
    STEP_SOURCES,
    CaptureMethod,
    PaymentStatus,
    ProcessorStep,
    can_transition,
    status_after_refund,
)
from kassa.processors.base import (
    FAILURE_MESSAGES,
    CaptureRequest,
    CardData,
    ChargeDeclined,
    ChargeRequest,
    ChargeResult,
    FailureCode,
    Outcome,
    Processor,
    WalletData,
)
from kassa.processors.calls import call_processor
from kassa.processors.modes import Processors
from kassa.transactions.service import TransactionService
from kassa.vault.cards import detect_brand, last4
from kassa.vault.crypto import Sealed, Vault, VaultError
from kassa.vault.fingerprint import CardFingerprinter
from kassa.vault.rotation import ResealBatch

log = structlog.get_logger("kassa.payments")
PROCESSOR_TIMEOUT_SECONDS = 15.0
AUTHORIZATION_EXPIRY = timedelta(days=7)
# Answers the one-statement settle records (a charge's final outcome); the others go through
# `PaymentService.record`.
SETTLING = frozenset({Outcome.SUCCEEDED, Outcome.FAILED})
_CHARGE_PREFIX = "kassa_charge_"


def charge_reference(payment_id: uuid.UUID) -> str:
    """The processor idempotency key of a payment's charge: the same on every attempt."""
    return f"{_CHARGE_PREFIX}{payment_id.hex}"


def payment_of_reference(reference: str) -> uuid.UUID | None:
    """The payment whose charge `charge_reference` named `reference`."""
    if not reference.startswith(_CHARGE_PREFIX):
        return None
    try:
        return uuid.UUID(hex=reference.removeprefix(_CHARGE_PREFIX))
    except ValueError:
        return None


@dataclass
class ReconcileReport:
    examined: int = 0
    settled: int = 0
    unresolved: int = 0
    resumed: int = 0  # payments that waited for their customer and went on


ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class ProcessOutcome:
    payment: Payment
    settled: bool  # False: the processor's answer is unknown; the payment stays processing


# PostgreSQL: each request's writes in one statement, built once per shape (with or without
# an Idempotency-Key to claim or keep; a charge that succeeded posts to the ledger).


@functools.cache
def _create_statement(keyed: bool, checked: bool) -> Select[Any]:
    def parts(made: CTE) -> list[CTE]:
        live = SESSION_IS_LIVE if checked else None
        claim = [IdempotencyService.claim_part(made, live)] if keyed else []
        return [*EventService.record_part(made), *claim]

    return repository.creating(parts, checked=checked)


@functools.cache
def _start_statement(keyed: bool) -> Select[Any]:
    def parts(moved: CTE) -> list[CTE]:
        claim = [IdempotencyService.claim_part(moved)] if keyed else []
        charge = TransactionService.record_part(moved, "charge_transaction")
        return [*EventService.record_part(moved), charge, *claim]

    return repository.moving_to_processing(parts)


@functools.cache
def _settle_statement(succeeded: bool, keyed: bool) -> Select[Any]:
    def parts(settled: CTE) -> list[CTE]:
        posting = LedgerService.post_part(settled) if succeeded else []
        kept = [IdempotencyService.complete_part(settled)] if keyed else []
        charge = TransactionService.settle_part(settled, of_refund=False)
        return [*EventService.record_part(settled), charge, *posting, *kept]

    return repository.settling(parts)


def changed(payment: Payment, **values: Any) -> Payment:
    """A copy of `payment` with `values` (attribute names) changed: the payment as a
    conditional update that matches it leaves it."""
    copy = record_of(Payment, values_of(payment))
    for name, value in values.items():
        setattr(copy, name, value)
    return copy


def _secret_context(payment_id: uuid.UUID, part: str) -> bytes:
    return f"payment:{payment_id}:{part}".encode()


async def _audit(
    db: Runner,
    actor: Actor,
    action: AuditAction,
    payment: Payment,
    now: datetime,
    **details: str | int,
) -> None:
    """The merchant's act on `payment` in the audit log, in the transaction that starts it."""
    await AuditLog.record(
        db,
        actor,
        action,
        object_type="payment",
        object_id=payment.id,
        at=now,
        user_id=payment.user_id,
        livemode=payment.livemode,
        details={"currency": payment.currency, **details},
    )


class PaymentService:
    def __init__(
        self,
        db: Database,
        vault: Vault,
        processors: Processor | Processors,
        clock: Callable[[], datetime],
        max_amount: int,
        processor_timeout: float = PROCESSOR_TIMEOUT_SECONDS,
        fingerprints: CardFingerprinter | None = None,
        authorization_expiry: timedelta = AUTHORIZATION_EXPIRY,
        require_https_return: bool = False,
        return_pages: ReturnPages | None = None,
    ) -> None:
        self._db = db
        self._authorization_expiry = authorization_expiry
        self._require_https_return = require_https_return
        self._return_pages = return_pages
        self._vault = vault
        self._processors = Processors.either(processors)
        self._clock = clock
        self._max_amount = max_amount
        self._processor_timeout = processor_timeout
        self._fingerprints = fingerprints

    async def create(
        self,
        user_id: uuid.UUID,
        request: CardPaymentRequest | WalletPaymentRequest,
        held: HeldKey | None = None,
        *,
        livemode: bool,
        session: SessionCheck | None = None,
    ) -> Payment:
        """A `pending` payment of one mode; the card number and CVC are sealed, never stored
        in clear. With an Idempotency-Key, the key records this payment in the same
        transaction. The statement that writes it pays the request's `session` check, if
        still owed (nothing is written once the session has ended)."""
        if request.amount > self._max_amount:
            raise AmountTooLarge(self._max_amount)
        now = self._clock()
        payment_id = new_id()
        details: dict[str, Any]
        fingerprint: str | None = None
        if isinstance(request, CardPaymentRequest):
            card = request.details
            if self._fingerprints is not None:
                fingerprint = await self._fingerprints.fingerprint(card.number)
            details = {
                "brand": detect_brand(card.number).value,
                "last4": last4(card.number),
                "exp_month": card.exp_month,
                "exp_year": card.exp_year,
                "holder_name": card.holder_name,
            }
            secret_payload = {
                "number": card.number,
                "exp_month": card.exp_month,
                "exp_year": card.exp_year,
                "holder_name": card.holder_name,
            }
            cvc: str | None = card.cvc
        else:
            details = {"wallet": request.details.wallet}
            secret_payload = {"wallet": request.details.wallet, "token": request.details.token}
            cvc = None
        sealed = self._vault.encrypt(
            orjson.dumps(secret_payload).decode(), context=_secret_context(payment_id, "source")
        )
        sealed_cvc = (
            self._vault.encrypt(cvc, context=_secret_context(payment_id, "cvc")) if cvc else None
        )
        columns: dict[str, Any] = {
            "id": payment_id,
            "user_id": user_id,
            "status": PaymentStatus.PENDING.value,
            "amount": request.amount,
            "amount_refunded": 0,
            "amount_refund_pending": 0,
            "currency": request.currency,
            "payment_method": request.payment_method,
            "details": details,
            "description": request.description,
            "metadata": request.metadata or {},
            "failure_code": None,
            "failure_message": None,
            "processor": self._processors.of(livemode).name,
            "livemode": livemode,
            "processor_reference": None,
            "charge_attempts": 0,
            "card_fingerprint": fingerprint,
            "capture_method": request.capture or CaptureMethod.AUTOMATIC.value,
            "created_at": now,
            "updated_at": now,
        }
        secret = {
            "payment_id": payment_id,
            "key_id": sealed.kid,
            "sealed": sealed.blob,
            "cvc_key_id": sealed_cvc.kid if sealed_cvc else None,
            "cvc_sealed": sealed_cvc.blob if sealed_cvc else None,
            "created_at": now,
        }
        payment = record_of(Payment, columns)
        # The answer is known now: a keyed request keeps it with the payment it made.
        answer = (201, payment_out(payment).model_dump_json().encode())
        if self._db.writes_at_once and (held is None or held.unclaimed):
            params = {
                **repository.create_values(columns, secret),
                **EventService.record_values(
                    user_id, "payment.created", payment_object(payment), now
                ),
            }
            if held is not None:
                params |= IdempotencyService.claim_values(
                    held.claim_row("create", payment_id, answer)
                )
            if session is not None:
                params |= session.params()
            statement = _create_statement(held is not None, session is not None)
            try:
                made = await self._db.first(statement, params)
            except IntegrityError as exc:
                raise claim_conflict(held, exc) or exc from None
            if session is not None:
                session.answered(made is not None)
            if held is not None:
                held.claimed = held.kept = True
        else:
            await sessions.confirm(self._db, session)
            async with self._db.transaction() as db:
                await commit_effect(db, held, "create", payment_id, answer)
                await repository.insert_payment(db, columns, secret)
                await self.record_event(db, payment, now)
        PAYMENTS.labels(payment.status, payment.payment_method, payment.currency).inc()
        log.info(
            "payment_created",
            payment_id=str(payment.id),
            user_id=str(user_id),
            amount=payment.amount,
            currency=payment.currency,
            payment_method=payment.payment_method,
        )
        return payment

    async def get(
        self,
        user_id: uuid.UUID,
        payment_id: uuid.UUID,
        *,
        livemode: bool,
        session: SessionCheck | None = None,
    ) -> Payment:
        """One of the user's payments of one mode (another mode's is not found); the read
        pays the request's `session` check, if it still owes one."""
        payment = await repository.find_payment(self._db, user_id, payment_id, livemode, session)
        if payment is None:
            raise PaymentNotFound
        return payment

    async def _explain_refusal(
        self, db: Runner, user_id: uuid.UUID, payment_id: uuid.UUID, livemode: bool, action: str
    ) -> Exception:
        current = await repository.find_payment(db, user_id, payment_id, livemode)
        if current is None:
            return PaymentNotFound()
        return PaymentNotPending(action, current.status)

    async def cancel(
        self,
        user_id: uuid.UUID,
        payment_id: uuid.UUID,
        held: HeldKey | None = None,
        *,
        livemode: bool,
        actor: Actor,
    ) -> ProcessOutcome:
        """pending → canceled, the vaulted card data destroyed in the same transaction; or
        requires_action / requires_capture → processing (void) → canceled once the processor
        has released the authorization (or the charge waiting for its customer). The
        `actor`'s request is in the audit log when, and only when, the cancel starts."""
        now = self._clock()
        async with self._db.transaction() as db:
            await commit_effect(db, held, "cancel", payment_id)
            current = await repository.find_payment(db, user_id, payment_id, livemode)
            if current is None:
                raise PaymentNotFound
            status_was = current.status
            if current.status == PaymentStatus.PENDING.value:
                payment = await repository.transition(
                    db,
                    user_id,
                    payment_id,
                    PaymentStatus.CANCELED,
                    livemode=livemode,
                    sources=frozenset({PaymentStatus.PENDING}),
                    updated_at=now,
                )
                if payment is None:
                    raise await self._explain_cancel(db, user_id, payment_id, livemode)
                await self.record_event(db, payment, now)
                await repository.delete_secret(db, payment_id)
            else:
                payment = await self._start_step(db, current, ProcessorStep.VOID, now)
                if payment is None:
                    raise await self._explain_cancel(db, user_id, payment_id, livemode)
            await _audit(db, actor, "payment.cancel_requested", payment, now, status_was=status_was)
        PAYMENTS.labels(payment.status, payment.payment_method, payment.currency).inc()
        if payment.status == PaymentStatus.CANCELED.value:
            log.info("payment_canceled", payment_id=str(payment_id))
            return ProcessOutcome(payment=payment, settled=True)
        outcome = await self._void(payment)
        if outcome.settled and outcome.payment.status != PaymentStatus.CANCELED.value:
            # Too late: the charge went through (the customer authenticated meanwhile).
            raise PaymentNotCancelable(outcome.payment.status)
        return outcome

    async def _explain_cancel(
        self, db: Runner, user_id: uuid.UUID, payment_id: uuid.UUID, livemode: bool
    ) -> Exception:
        current = await repository.find_payment(db, user_id, payment_id, livemode)
        if current is None:
            return PaymentNotFound()
        return PaymentNotCancelable(current.status)

    async def process(
        self,
        user_id: uuid.UUID,
        payment_id: uuid.UUID,
        held: HeldKey | None = None,
        return_url: str | None = None,
        *,
        livemode: bool,
        session: SessionCheck | None = None,
    ) -> ProcessOutcome:
        """pending → processing (committed, with the Idempotency-Key's record of it, before
        the processor is asked) → completed or failed; with manual capture requires_capture;
        requires_action when the card asks for 3-D Secure (the customer comes back to
        `return_url`). The first read pays the request's `session` check, if still owed."""
        https = return_url is None or return_url.startswith("https://")
        if self._require_https_return and not https:
            raise ReturnUrlNotAllowed
        now = self._clock()
        # The one-statement start has no place for a return_url: a payment given one starts
        # in a transaction.
        if self._db.writes_at_once and (held is None or held.unclaimed) and return_url is None:
            payment, source = await self._start(user_id, payment_id, held, now, livemode, session)
        else:
            await sessions.confirm(self._db, session)
            payment, source = await self._start_in_transaction(
                user_id, payment_id, held, now, livemode, return_url
            )
        PAYMENTS.labels(payment.status, payment.payment_method, payment.currency).inc()
        request = ChargeRequest(
            reference=charge_reference(payment_id),
            amount=payment.amount,
            currency=payment.currency,
            customer_id=str(user_id),
            card=source if isinstance(source, CardData) else None,
            wallet=source if isinstance(source, WalletData) else None,
            attempt=payment.charge_attempts,
            capture=payment.capture_method != CaptureMethod.MANUAL.value,
            return_url=self._processor_return_url(payment_id, return_url),
        )
        result = await self._prepare_and_charge(payment_id, request, livemode)
        if result is None:
            log.warning("payment_outcome_unknown", payment_id=str(payment_id))
            return ProcessOutcome(payment=payment, settled=False)
        if result.outcome not in SETTLING:
            # Authorized, or waiting for the customer: recorded with what that takes.
            return await self._recorded(payment, ProcessorStep.CHARGE, result)
        settled = await self.settle(
            user_id, payment_id, result, livemode=livemode, held=held, current=payment
        )
        if settled is None:
            # Reconciliation recorded this same charge (one reference, one charge) while we
            # waited for the processor: answer with what it recorded, not a stale `processing`.
            settled = await repository.find_payment(self._db, user_id, payment_id, livemode)
            if settled is None or settled.status == PaymentStatus.PROCESSING.value:
                return ProcessOutcome(payment=settled or payment, settled=False)
        return ProcessOutcome(payment=settled, settled=True)

    async def _start(
        self,
        user_id: uuid.UUID,
        payment_id: uuid.UUID,
        held: HeldKey | None,
        now: datetime,
        livemode: bool,
        session: SessionCheck | None,
    ) -> tuple[Payment, CardData | WalletData]:
        """PostgreSQL: read the payment and its source (paying the session check), then move
        it to processing with its event, its pending charge, its CVC destroyed and the key's
        claim in one statement, only if it is still as read."""
        found = await repository.find_payment_and_secret(
            self._db, user_id, payment_id, livemode, session
        )
        if found is None:
            raise PaymentNotFound
        current, secret = found
        if PaymentStatus(current.status) not in STEP_SOURCES[ProcessorStep.CHARGE]:
            raise PaymentNotPending("processed", current.status)
        source = self._open_source(current, secret)
        moved = changed(
            current,
            status=PaymentStatus.PROCESSING.value,
            charge_attempts=current.charge_attempts + 1,
            updated_at=now,
        )
        params: dict[str, Any] = {
            "payment": payment_id,
            "owner": user_id,
            "in_livemode": livemode,
            "seen_status": current.status,
            "now": now,
            **EventService.record_values(user_id, "payment.processing", payment_object(moved), now),
            **TransactionService.charge_values(
                user_id=user_id,
                livemode=livemode,
                payment_id=payment_id,
                amount=current.amount,
                currency=current.currency,
                payment_method=current.payment_method,
                now=now,
            ),
        }
        if held is not None:
            params |= IdempotencyService.claim_values(held.claim_row("process", payment_id))
        try:
            row = await self._db.first(_start_statement(held is not None), params)
        except IntegrityError as exc:
            raise claim_conflict(held, exc) or exc from None
        if held is not None:
            held.claimed = True
        if row is None:  # another request moved it since it was read
            raise await self._explain_refusal(self._db, user_id, payment_id, livemode, "processed")
        return moved, source

    async def _start_in_transaction(
        self,
        user_id: uuid.UUID,
        payment_id: uuid.UUID,
        held: HeldKey | None,
        now: datetime,
        livemode: bool,
        return_url: str | None = None,
    ) -> tuple[Payment, CardData | WalletData]:
        async with self._db.transaction() as db:
            await commit_effect(db, held, "process", payment_id)
            payment = await repository.transition(
                db,
                user_id,
                payment_id,
                PaymentStatus.PROCESSING,
                livemode=livemode,
                count_attempt=True,
                sources=STEP_SOURCES[ProcessorStep.CHARGE],
                updated_at=now,
                processor_step=ProcessorStep.CHARGE.value,
                return_url=return_url,
            )
            if payment is None:
                raise await self._explain_refusal(db, user_id, payment_id, livemode, "processed")
            await self.record_event(db, payment, now)
            secret = await repository.find_secret(db, payment_id)
            source = self._open_source(payment, secret)
            # The CVC is destroyed as processing starts: it lives on only in this request.
            await repository.forget_cvc(db, payment_id)
            await TransactionService.record_charge(
                db,
                user_id=user_id,
                livemode=livemode,
                payment_id=payment_id,
                amount=payment.amount,
                currency=payment.currency,
                payment_method=payment.payment_method,
                now=now,
            )
        return payment, source

    async def _charge(self, request: ChargeRequest, livemode: bool) -> ChargeResult | None:
        processor = self._processors.of(livemode)
        answer = await call_processor(
            processor.name,
            "charge",
            processor.charge(request),
            seconds=self._processor_timeout,
            reference=request.reference,
            outcome=lambda result: result.outcome.value,
        )
        return None if answer is None else answer.value

    async def _prepare_and_charge(
        self, payment_id: uuid.UUID, request: ChargeRequest, livemode: bool
    ) -> ChargeResult | None:
        """Charge, preparing first unless the processor's reference is already stored; the
        definite outcome, or None when it is unknown."""
        if request.processor_reference is None:
            prepared = await self._prepare(payment_id, request, livemode)
            if not isinstance(prepared, ChargeRequest):
                return prepared  # declined before anything could move, or unknown
            request = prepared
        return await self._charge(request, livemode)

    async def _prepare(
        self, payment_id: uuid.UUID, request: ChargeRequest, livemode: bool
    ) -> ChargeRequest | ChargeResult | None:
        """Let the processor register the charge, and store its reference on the payment in
        a short transaction of its own — before anything can move money — so that
        reconciliation can always find what a charge did. The request to charge with; the
        result when the processor already declined; None when the outcome is unknown (no
        answer, or the payment was settled by another worker meanwhile)."""
        processor = self._processors.of(livemode)
        try:
            answer = await call_processor(
                processor.name,
                "prepare",
                processor.prepare_charge(request),
                seconds=self._processor_timeout,
                reference=request.reference,
                outcome=lambda _reference: "prepared",
            )
        except ChargeDeclined as declined:
            return declined.result
        if answer is None:
            return None
        reference = answer.value
        if reference is None:
            return request
        kept = await repository.keep_processor_reference(self._db, payment_id, reference)
        if kept is None:
            return None
        return dataclasses.replace(request, processor_reference=kept)

    def _processor_return_url(self, payment_id: uuid.UUID, return_url: str | None) -> str | None:
        """Where the processor's own authentication page sends the customer: kassa's return
        page (which resumes the payment, then sends them on to `return_url`). The
        simulator's page is kassa's and resumes the payment itself."""
        # Test mode is always the simulator, whose page is kassa's own.
        if (
            return_url is None
            or self._return_pages is None
            or self._processors.live.name == "simulator"
        ):
            return return_url
        return self._return_pages.url_for(payment_id)

    async def customer_returned(
        self, payment_id: uuid.UUID, sig: str
    ) -> tuple[Payment, str] | None:
        """The customer is back from the processor's page: the payment resumed from what the
        processor says now, and the merchant's `return_url` to send them on to; None unless
        `sig` is the one kassa gave for this payment."""
        if self._return_pages is None or not self._return_pages.valid(payment_id, sig):
            return None
        await self.resume(payment_id)
        payment = await repository.find_payment_by_id(self._db, payment_id)
        if payment is None or payment.return_url is None:
            return None
        return payment, payment.return_url

    async def _recorded(
        self, payment: Payment, step: ProcessorStep, result: ChargeResult
    ) -> ProcessOutcome:
        """Record the answer to `step`, and answer with the payment as it then stands."""
        settled = await self.record(payment, step, result)
        if settled is None:
            # Reconciliation recorded this same answer (one reference, one effect) while we
            # waited for the processor: answer with what it recorded, not a stale `processing`.
            settled = await repository.find_payment(
                self._db, payment.user_id, payment.id, payment.livemode
            )
            if settled is None or settled.status == PaymentStatus.PROCESSING.value:
                return ProcessOutcome(payment=settled or payment, settled=False)
        return ProcessOutcome(payment=settled, settled=True)

    async def record(
        self, processing: Payment, step: ProcessorStep, result: ChargeResult
    ) -> Payment | None:
        """Record the processor's definite answer to `step` on a payment `processing` that
        step (`processing` as it was when the step began: its amounts and authorization do
        not change meanwhile) — its status, event, transaction row and ledger lines in one
        transaction; None if another request (or reconciliation) recorded it first."""
        now = self._clock()
        user_id, payment_id = processing.user_id, processing.id
        plan = plan_outcome(processing, step, result, now)
        async with self._db.transaction() as db:
            payment = await repository.transition(
                db,
                user_id,
                payment_id,
                plan.target,
                livemode=processing.livemode,
                sources=frozenset({PaymentStatus.PROCESSING}),
                step=step,
                updated_at=now,
                **plan.values,
            )
            if payment is None:
                return None
            if plan.captured is not None and step is not ProcessorStep.CHARGE:
                await EventService.record(
                    db, user_id, "payment.captured", payment_object(payment), now
                )
            await self.record_event(db, payment, now)
            if plan.release_hold:
                await LedgerService.release_hold(
                    db,
                    user_id=user_id,
                    payment_id=payment_id,
                    amount=payment.amount,
                    currency=payment.currency,
                    livemode=payment.livemode,
                    now=now,
                )
            if plan.target is PaymentStatus.REQUIRES_CAPTURE and plan.post_hold:
                await LedgerService.post_hold(
                    db,
                    user_id=user_id,
                    payment_id=payment_id,
                    amount=payment.amount,
                    currency=payment.currency,
                    livemode=payment.livemode,
                    now=now,
                )
            if plan.captured is not None:
                await LedgerService.post_charge(
                    db,
                    user_id=user_id,
                    payment_id=payment_id,
                    amount=plan.captured,
                    currency=payment.currency,
                    livemode=payment.livemode,
                    now=now,
                )
                await TransactionService.settle_charge(
                    db, payment_id, True, now, amount=plan.captured
                )
            elif plan.target in {PaymentStatus.FAILED, PaymentStatus.CANCELED}:
                await TransactionService.settle_charge(db, payment_id, False, now)
            if plan.target is not PaymentStatus.REQUIRES_CAPTURE or step is ProcessorStep.CHARGE:
                await repository.delete_secret(db, payment_id)
        PAYMENTS.labels(payment.status, payment.payment_method, payment.currency).inc()
        if plan.captured is not None:
            PAYMENT_AMOUNT.labels(payment.currency).inc(plan.captured)
        log.info(
            "payment_processed",
            payment_id=str(payment_id),
            step=step.value,
            status=payment.status,
            amount=payment.amount,
            currency=payment.currency,
            failure_code=payment.failure_code,
        )
        return payment

    # Capture, void and 3-D Secure --------------------------------------------------------

    async def _start_step(
        self, db: Runner, current: Payment, step: ProcessorStep, now: datetime, **values: Any
    ) -> Payment | None:
        """Move the payment to `processing` for `step` (committed with the caller's
        transaction before the processor is asked), only from where that step may start: of
        racing requests (two captures, a capture and a cancel) exactly one wins."""
        if PaymentStatus(current.status) not in STEP_SOURCES[step]:
            return None
        payment = await repository.transition(
            db,
            current.user_id,
            current.id,
            PaymentStatus.PROCESSING,
            livemode=current.livemode,
            sources=STEP_SOURCES[step],
            updated_at=now,
            processor_step=step.value,
            **values,
        )
        if payment is not None:
            await self.record_event(db, payment, now)
        return payment

    async def capture(
        self,
        user_id: uuid.UUID,
        payment_id: uuid.UUID,
        amount: int | None,
        held: HeldKey | None = None,
        *,
        livemode: bool,
        actor: Actor,
    ) -> ProcessOutcome:
        """requires_capture → processing (capture) → completed with `amount_captured` (all
        of the authorization, or `amount` of it; the rest is released). One capture per
        payment: of racing captures and cancels, one wins and the others get 409. The
        `actor`'s request is in the audit log when, and only when, the capture starts."""
        now = self._clock()
        async with self._db.transaction() as db:
            await commit_effect(db, held, "capture", payment_id)
            current = await repository.find_payment(db, user_id, payment_id, livemode)
            if current is None:
                raise PaymentNotFound
            if current.status != PaymentStatus.REQUIRES_CAPTURE.value:
                raise PaymentNotCapturable(current.status)
            wanted = current.amount if amount is None else amount
            if wanted > current.amount:
                raise CaptureExceedsAuthorized(current.amount, current.currency)
            payment = await self._start_step(
                db, current, ProcessorStep.CAPTURE, now, capture_amount=wanted
            )
            if payment is None:
                current = await repository.find_payment(db, user_id, payment_id, livemode)
                raise PaymentNotCapturable(current.status if current else "gone")
            await _audit(db, actor, "payment.capture_requested", payment, now, amount=wanted)
        PAYMENTS.labels(payment.status, payment.payment_method, payment.currency).inc()
        return await self._capture(payment)

    async def _capture(self, payment: Payment) -> ProcessOutcome:
        assert payment.capture_amount is not None
        request = CaptureRequest(
            reference=charge_reference(payment.id),
            processor_reference=payment.processor_reference,
            amount=payment.capture_amount,
            currency=payment.currency,
        )
        processor = self._processors.of(payment.livemode)
        answer = await call_processor(
            processor.name,
            "capture",
            processor.capture(request),
            seconds=self._processor_timeout,
            reference=request.reference,
            outcome=lambda result: result.outcome.value,
        )
        if answer is None:
            log.warning("payment_capture_unknown", payment_id=str(payment.id))
            return ProcessOutcome(payment=payment, settled=False)
        return await self._recorded(payment, ProcessorStep.CAPTURE, answer.value)

    async def _void(self, payment: Payment) -> ProcessOutcome:
        reference = payment.processor_reference or charge_reference(payment.id)
        processor = self._processors.of(payment.livemode)
        answer = await call_processor(
            processor.name,
            "void",
            processor.void(reference),
            seconds=self._processor_timeout,
            reference=reference,
            outcome=lambda result: result.outcome.value,
        )
        if answer is None:
            log.warning("payment_void_unknown", payment_id=str(payment.id))
            return ProcessOutcome(payment=payment, settled=False)
        return await self._recorded(payment, ProcessorStep.VOID, answer.value)

    async def _lookup(self, payment: Payment) -> ChargeResult | Unknown | None:
        looked_up = payment.processor_reference or charge_reference(payment.id)
        processor = self._processors.of(payment.livemode)
        answer = await call_processor(
            processor.name,
            "lookup",
            processor.lookup_charge(looked_up),
            seconds=self._processor_timeout,
            reference=looked_up,
            outcome=lambda found: "none" if found is None else found.outcome.value,
        )
        return UNKNOWN if answer is None else answer.value

    async def resume(self, payment_id: uuid.UUID) -> Payment | None:
        """A payment waiting for its customer (`requires_action`) goes on from what the
        processor says now — when the customer comes back from the challenge, or when
        reconciliation looks: requires_action → processing → completed, requires_capture or
        failed, exactly once (a conditional update). None while it still waits, or when it
        was not waiting."""
        payment = await repository.find_payment_by_id(self._db, payment_id)
        if payment is None or PaymentStatus(payment.status) not in RESUMABLE:
            return None
        result = await self._lookup(payment)
        if isinstance(result, Unknown) or result is None:
            return None
        if result.outcome is Outcome.REQUIRES_ACTION:
            return None  # still waiting for the customer
        now = self._clock()
        async with self._db.transaction() as db:
            moved = await repository.transition(
                db,
                payment.user_id,
                payment.id,
                PaymentStatus.PROCESSING,
                livemode=payment.livemode,
                sources=RESUMABLE,
                updated_at=now,
                processor_step=ProcessorStep.CHARGE.value,
            )
            if moved is None:
                return None  # resumed by another request meanwhile
            await self.record_event(db, moved, now)
        return (await self._recorded(moved, ProcessorStep.CHARGE, result)).payment

    async def expire_authorizations(self, *, batch_size: int = 100) -> int:
        """Void every authorization older than the expiry (`kassa worker`): requires_capture
        → processing (void) → canceled, like a cancel; the number voided."""
        cutoff = self._clock() - self._authorization_expiry
        voided = 0
        after: uuid.UUID | None = None
        while batch := await repository.list_in_status_since(
            self._db, PaymentStatus.REQUIRES_CAPTURE, cutoff, after, batch_size
        ):
            for current in batch:
                after = current.id
                now = self._clock()
                async with self._db.transaction() as db:
                    payment = await self._start_step(db, current, ProcessorStep.VOID, now)
                if payment is None:
                    continue  # captured or canceled meanwhile
                log.info("authorization_expired", payment_id=str(payment.id))
                outcome = await self._void(payment)
                if outcome.settled and outcome.payment.status == PaymentStatus.CANCELED.value:
                    voided += 1
        return voided

    async def resume_waiting(self, *, older_than: timedelta, batch_size: int = 100) -> int:
        """Look up every payment waiting for its customer longer than `older_than` (an
        abandoned or expired challenge fails authentication at the processor); the number
        that went on."""
        cutoff = self._clock() - older_than
        resumed = 0
        after: uuid.UUID | None = None
        while batch := await repository.list_in_status_since(
            self._db, PaymentStatus.REQUIRES_ACTION, cutoff, after, batch_size
        ):
            for payment in batch:
                after = payment.id
                try:
                    if await self.resume(payment.id) is not None:
                        resumed += 1
                except Exception:
                    log.exception("resume_failed", payment_id=str(payment.id))
        return resumed

    async def settle(
        self,
        user_id: uuid.UUID,
        payment_id: uuid.UUID,
        result: ChargeResult,
        *,
        livemode: bool,
        held: HeldKey | None = None,
        current: Payment | None = None,
    ) -> Payment | None:
        """Record a definite charge outcome on a `processing` payment; None if another
        request (or reconciliation) settled it first. With `held`, the request's answer
        (200, the settled payment) is kept with it. `current`: the payment as this request
        moved it to processing, so that its settled state is known before it is written."""
        now = self._clock()
        succeeded = result.outcome is Outcome.SUCCEEDED
        target = PaymentStatus.COMPLETED if succeeded else PaymentStatus.FAILED
        failure_code = None if succeeded else (result.failure_code or "processing_error")
        failure_message = None if succeeded else result.failure_message
        keyed = held is not None and not held.unclaimed
        if self._db.writes_at_once and current is not None:
            payment = changed(
                current,
                status=target.value,
                processor_reference=result.processor_reference,
                failure_code=failure_code,
                failure_message=failure_message,
                updated_at=now,
            )
            params: dict[str, Any] = {
                "payment": payment_id,
                "owner": user_id,
                "in_livemode": livemode,
                "target": target.value,
                "reference": result.processor_reference,
                "failure_code": failure_code,
                "failure_message": failure_message,
                "now": now,
                **EventService.record_values(
                    user_id, f"payment.{target.value}", payment_object(payment), now
                ),
                **TransactionService.settle_values(
                    payment_id, "succeeded" if succeeded else "failed", now
                ),
            }
            if succeeded:
                params |= LedgerService.charge_values(
                    user_id=user_id,
                    payment_id=payment_id,
                    amount=payment.amount,
                    currency=payment.currency,
                    livemode=payment.livemode,
                    now=now,
                )
            if held is not None and keyed:
                params |= held.answer_values((200, payment_out(payment).model_dump_json().encode()))
            if await self._db.first(_settle_statement(succeeded, keyed), params) is None:
                return None
            if held is not None and keyed:
                held.kept = True
            self._settled(payment, succeeded)
            return payment
        async with self._db.transaction() as db:
            moved = await repository.transition(
                db,
                user_id,
                payment_id,
                target,
                livemode=livemode,
                updated_at=now,
                processor_reference=result.processor_reference,
                failure_code=failure_code,
                failure_message=failure_message,
            )
            if moved is None:
                return None
            payment = moved
            await self.record_event(db, payment, now)
            await TransactionService.settle_charge(db, payment_id, succeeded, now)
            if succeeded:
                await LedgerService.post_charge(
                    db,
                    user_id=user_id,
                    payment_id=payment_id,
                    amount=payment.amount,
                    currency=payment.currency,
                    livemode=payment.livemode,
                    now=now,
                )
            await repository.delete_secret(db, payment_id)
            if held is not None and keyed:
                await keep_with_effect(
                    db, held, (200, payment_out(payment).model_dump_json().encode())
                )
        self._settled(payment, succeeded)
        return payment

    @staticmethod
    def _settled(payment: Payment, succeeded: bool) -> None:
        PAYMENTS.labels(payment.status, payment.payment_method, payment.currency).inc()
        if succeeded:
            PAYMENT_AMOUNT.labels(payment.currency).inc(payment.amount)
        log.info(
            "payment_processed",
            payment_id=str(payment.id),
            status=payment.status,
            amount=payment.amount,
            currency=payment.currency,
            failure_code=payment.failure_code,
        )

    def _open_source(self, payment: Payment, secret: PaymentSecret | None) -> CardData | WalletData:
        if secret is None:
            raise RuntimeError("vaulted card data missing for a pending payment")
        payload = orjson.loads(
            self._vault.decrypt(
                Sealed(secret.key_id, secret.sealed),
                context=_secret_context(payment.id, "source"),
            )
        )
        if "token" in payload:
            return WalletData(wallet=payload["wallet"], token=payload["token"])
        cvc = None
        if secret.cvc_key_id is not None and secret.cvc_sealed is not None:
            cvc = self._vault.decrypt(
                Sealed(secret.cvc_key_id, secret.cvc_sealed),
                context=_secret_context(payment.id, "cvc"),
            )
        return CardData(
            number=payload["number"],
            exp_month=payload["exp_month"],
            exp_year=payload["exp_year"],
            cvc=cvc,
            holder_name=payload.get("holder_name"),
        )

    async def reconcile(
        self,
        *,
        older_than: timedelta,
        batch_size: int = 100,
        progress: ProgressCallback | None = None,
    ) -> ReconcileReport:
        """Settle every payment left `processing` for longer than `older_than`.

        The processor is asked for the charge under the payment's deterministic reference:
        a charge it made is recorded; a charge it never saw is made now under that same
        reference (so a racing original request cannot make a second one). Safe to run from
        any number of workers at once: settling is a conditional update."""
        cutoff = self._clock() - older_than
        report = ReconcileReport()
        total = await repository.count_stale_processing(self._db, cutoff)
        after: uuid.UUID | None = None
        while True:
            stale = await repository.list_stale_processing(self._db, cutoff, after, batch_size)
            if not stale:
                break
            for payment in stale:
                after = payment.id
                report.examined += 1
                try:
                    resolved = await self._reconcile_one(payment)
                except Exception:
                    # One payment that cannot be settled now (a connector bug, an unreadable
                    # vault entry) must not keep every other one, and the worker's later
                    # jobs, from being settled: it stays processing for the next round.
                    log.exception("reconcile_failed", payment_id=str(payment.id))
                    resolved = False
                if resolved:
                    report.settled += 1
                else:
                    report.unresolved += 1
                if progress is not None:
                    progress(report.examined, max(total, report.examined))
        # Payments waiting for their customer: settled from the processor once the
        # customer is done there (or the challenge expired).
        report.resumed = await self.resume_waiting(older_than=older_than, batch_size=batch_size)
        if report.examined:
            log.info(
                "reconciled_payments",
                examined=report.examined,
                settled=report.settled,
                unresolved=report.unresolved,
            )
        return report

    async def _reconcile_one(self, payment: Payment) -> bool:
        step = ProcessorStep(payment.processor_step or ProcessorStep.CHARGE.value)
        if step is ProcessorStep.CAPTURE:
            # Capture again under the same reference: the processor captures once.
            return (await self._capture(payment)).settled
        if step is ProcessorStep.VOID:
            return (await self._void(payment)).settled
        reference = charge_reference(payment.id)
        # The processor's own reference when it prepared the charge, else kassa's.
        looked_up = payment.processor_reference or reference
        # The processor of the payment's mode: the one its charge went to.
        processor = self._processors.of(payment.livemode)
        answer = await call_processor(
            processor.name,
            "lookup",
            processor.lookup_charge(looked_up),
            seconds=self._processor_timeout,
            reference=looked_up,
            outcome=lambda found: "none" if found is None else found.outcome.value,
        )
        if answer is None:
            return False  # no answer: try again next round
        result = answer.value
        if result is None:
            secret = await repository.find_secret(self._db, payment.id)
            if secret is None:
                result = ChargeResult(
                    outcome=Outcome.FAILED,
                    processor_reference=reference,
                    failure_code=FailureCode.PROCESSING_ERROR,
                    failure_message="The payment could not be completed; it was not charged.",
                )
            else:
                source = self._open_source(payment, secret)
                attempt = await repository.next_charge_attempt(self._db, payment.id)
                if attempt is None:
                    return True  # settled by another worker meanwhile
                request = ChargeRequest(
                    reference=reference,
                    amount=payment.amount,
                    currency=payment.currency,
                    customer_id=str(payment.user_id),
                    card=source if isinstance(source, CardData) else None,
                    wallet=source if isinstance(source, WalletData) else None,
                    processor_reference=payment.processor_reference,
                    attempt=attempt,
                )
                result = await self._prepare_and_charge(payment.id, request, payment.livemode)
                if result is None:
                    return False
        if result.outcome in SETTLING:
            await self.settle(payment.user_id, payment.id, result, livemode=payment.livemode)
        else:
            await self.record(payment, ProcessorStep.CHARGE, result)
        return True

    # Vault rotation: re-seal vaulted card data under the vault's current key.

    @property
    def vault_primary_kid(self) -> str:
        return self._vault.primary_kid

    async def count_to_reseal(self) -> int:
        return await repository.count_secrets_to_reseal(self._db, self._vault.primary_kid)

    async def reseal_batch(self, after: uuid.UUID | None, batch_size: int) -> ResealBatch:
        """Re-seal up to `batch_size` secrets (those after `after`) under the current key,
        in one transaction holding their row locks; a secret no key opens is skipped."""
        primary = self._vault.primary_kid
        resealed = unreadable = 0
        async with self._db.transaction() as db:
            secrets = await repository.lock_secrets_to_reseal(db, primary, after, batch_size)
            for secret in secrets:
                try:
                    source = self._reseal(secret.payment_id, "source", secret.key_id, secret.sealed)
                    cvc = (
                        self._reseal(secret.payment_id, "cvc", secret.cvc_key_id, secret.cvc_sealed)
                        if secret.cvc_key_id is not None and secret.cvc_sealed is not None
                        else None
                    )
                except VaultError:
                    unreadable += 1
                    log.error("vault_entry_unreadable", payment_id=str(secret.payment_id))
                    continue
                secret.key_id, secret.sealed = source.kid, source.blob
                if cvc is not None:
                    secret.cvc_key_id, secret.cvc_sealed = cvc.kid, cvc.blob
                await repository.save_sealed(db, secret)
                resealed += 1
        return ResealBatch(
            examined=len(secrets),
            resealed=resealed,
            unreadable=unreadable,
            last_id=secrets[-1].payment_id if secrets else None,
        )

    def _reseal(self, payment_id: uuid.UUID, part: str, kid: str, blob: bytes) -> Sealed:
        sealed = Sealed(kid, blob)
        if not self._vault.needs_rotation(sealed):
            return sealed
        context = _secret_context(payment_id, part)
        return self._vault.encrypt(self._vault.decrypt(sealed, context=context), context=context)

    # Events: the outbox row of a state change, written in the transaction that makes it.

    @staticmethod
    async def record_event(db: Runner, payment: Payment, now: datetime) -> None:
        """Record `payment.<status>` (`payment.created` for pending) with the payment as the
        API shows it now; call in the transaction that set that status."""
        status = PaymentStatus(payment.status)
        kind = "created" if status is PaymentStatus.PENDING else status.value
        await EventService.record(
            db, payment.user_id, f"payment.{kind}", payment_object(payment), now
        )

    # Refund support: called by the refunds service inside its own transaction.

    @staticmethod
    async def find(
        db: Runner,
        user_id: uuid.UUID,
        payment_id: uuid.UUID,
        *,
        livemode: bool,
        session: SessionCheck | None = None,
    ) -> Payment | None:
        """The caller's payment of that mode as it stands (no lock); the read pays the
        request's `session` check, if still owed."""
        return await repository.find_payment(db, user_id, payment_id, livemode, session)

    # PostgreSQL: a refund's changes to its payment inside the refund's own statements,
    # decided on the payment as the refund read it (`seen_values`).

    @staticmethod
    def seen_values(payment: Payment) -> dict[str, Any]:
        return repository.seen_values(payment)

    @staticmethod
    def reserve_part() -> CTE:
        return repository.reserve_part()

    @staticmethod
    def release_part(when: ColumnElement[bool]) -> CTE:
        return repository.release_part(when)

    @staticmethod
    def event_values(payment: Payment, now: datetime) -> dict[str, Any]:
        """The parameters of `EventService.record_part` for the event `record_event`
        would write."""
        status = PaymentStatus(payment.status)
        kind = "created" if status is PaymentStatus.PENDING else status.value
        return EventService.record_values(
            payment.user_id, f"payment.{kind}", payment_object(payment), now
        )

    @staticmethod
    async def lock_refundable(
        db: Runner, user_id: uuid.UUID, payment_id: uuid.UUID, *, livemode: bool
    ) -> Payment | None:
        """The payment (of that mode), locked until the transaction ends; a detached copy
        whose refund changes (`reserve_refund`, `release_refund`) `save_refund` writes back."""
        return await repository.lock_payment(db, user_id, payment_id, livemode)

    @staticmethod
    async def save_refund(db: Runner, payment: Payment) -> None:
        await repository.save_refund_amounts(db, payment)

    @staticmethod
    async def processor_reference(
        db: Runner, user_id: uuid.UUID, payment_id: uuid.UUID, *, livemode: bool
    ) -> str | None:
        payment = await repository.find_payment(db, user_id, payment_id, livemode)
        return None if payment is None else payment.processor_reference

    @staticmethod
    def is_refundable(payment: Payment) -> bool:
        return PaymentStatus(payment.status) in REFUNDABLE

    @staticmethod
    def reserve_refund(payment: Payment, amount: int, now: datetime) -> None:
        """Hold `amount` against the payment while the processor refunds it. The caller
        holds the payment's row lock."""
        if amount <= 0 or amount > refundable_amount(payment):
            raise ValueError("refund amount outside what is refundable")
        payment.amount_refund_pending += amount
        payment.updated_at = now

    @staticmethod
    def release_refund(payment: Payment, amount: int, succeeded: bool, now: datetime) -> None:
        """Turn a held refund into a succeeded one (or drop it when it failed)."""
        payment.amount_refund_pending -= amount
        if succeeded:
            payment.amount_refunded += amount
            current = PaymentStatus(payment.status)
            target = status_after_refund(payment.captured_amount(), payment.amount_refunded)
            if target is not current and not can_transition(current, target):
                raise ValueError(f"a refund cannot move a {current} payment to {target}")
            payment.status = target.value
        payment.updated_at = now


def refundable_amount(payment: Payment) -> int:
    """What a refund may still take: what was captured less succeeded and pending refunds."""
    return payment.captured_amount() - payment.amount_refunded - payment.amount_refund_pending


class Unknown:
    """The processor's answer is unknown (as opposed to None: nothing found)."""


UNKNOWN = Unknown()


@dataclass(frozen=True, slots=True)
class Plan:
    """What recording one answer of the processor does to a `processing` payment."""

    target: PaymentStatus
    values: dict[str, Any]
    captured: int | None = None  # a charge of this much moved now: post it
    post_hold: bool = False
    release_hold: bool = False


def plan_outcome(
    payment: Payment, step: ProcessorStep, result: ChargeResult, now: datetime
) -> Plan:
    """The status, columns and postings that record `result` as the answer to `step`.

    charge: succeeded → completed; failed (or voided under it) → failed; authorized →
    requires_capture (hold posted); requires_action → requires_action (with the page).
    capture: succeeded → completed (hold released, the captured part charged); voided →
    canceled (hold released); otherwise back to requires_capture, with the reason.
    void: voided or failed → canceled (hold released); succeeded (too late) → completed;
    authorized / requires_action → back where it was."""
    done: dict[str, Any] = {
        "processor_step": None,
        "capture_amount": None,
        "next_action_url": None,
        "processor_reference": payment.processor_reference or result.processor_reference,
    }
    held = payment.authorized_at is not None
    outcome = result.outcome
    if outcome is Outcome.SUCCEEDED:
        fallback = payment.capture_amount if step is ProcessorStep.CAPTURE else None
        captured = result.amount_captured or fallback or payment.amount
        captured = min(captured, payment.amount)
        return Plan(
            PaymentStatus.COMPLETED,
            {**done, "amount_captured": captured, "failure_code": None, "failure_message": None},
            captured=captured,
            release_hold=held,
        )
    if step is ProcessorStep.CHARGE:
        if outcome is Outcome.AUTHORIZED:
            return Plan(
                PaymentStatus.REQUIRES_CAPTURE,
                {**done, "authorized_at": now},
                post_hold=True,
            )
        if outcome is Outcome.REQUIRES_ACTION and result.next_action is not None:
            return Plan(
                PaymentStatus.REQUIRES_ACTION,
                {**done, "next_action_url": result.next_action.url},
            )
        code = result.failure_code or FailureCode.PROCESSING_ERROR
        return Plan(
            PaymentStatus.FAILED,
            {
                **done,
                "failure_code": code.value,
                "failure_message": result.failure_message or FAILURE_MESSAGES[code],
            },
        )
    if outcome is Outcome.VOIDED or (step is ProcessorStep.VOID and outcome is Outcome.FAILED):
        return Plan(PaymentStatus.CANCELED, done, release_hold=held)
    if outcome is Outcome.REQUIRES_ACTION and result.next_action is not None:
        return Plan(
            PaymentStatus.REQUIRES_ACTION, {**done, "next_action_url": result.next_action.url}
        )
    # The capture (or void) did not happen and the authorization still stands.
    reason: dict[str, Any] = {}
    if result.failure_code is not None:
        reason = {
            "failure_code": result.failure_code.value,
            "failure_message": result.failure_message or FAILURE_MESSAGES[result.failure_code],
        }
    return Plan(PaymentStatus.REQUIRES_CAPTURE, {**done, **reason})
