"""Payment business rules. The only place that knows where a database transaction starts
and ends.

A processor is never called while a transaction is open: `process` commits the move to
`processing` first, calls the processor, then records the outcome in a second short
transaction. A crash in between leaves `processing`, which reconciliation settles by
looking the charge up under the same deterministic reference — so nothing is charged twice.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import structlog

from kassa.db import Database, Runner, new_id, record_of
from kassa.events.service import EventService
from kassa.idempotency.service import HeldKey, commit_effect
from kassa.ledger.service import LedgerService
from kassa.observability.metrics import PAYMENT_AMOUNT, PAYMENTS
from kassa.payments import repository
from kassa.payments.errors import AmountTooLarge, PaymentNotFound, PaymentNotPending
from kassa.payments.models import Payment, PaymentSecret
from kassa.payments.schemas import CardPaymentRequest, WalletPaymentRequest, payment_object
from kassa.payments.states import (
    REFUNDABLE,
    PaymentStatus,
    can_transition,
    status_after_refund,
)
from kassa.processors.base import (
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
from kassa.transactions.service import TransactionService
from kassa.vault.cards import detect_brand, last4
from kassa.vault.crypto import Sealed, Vault, VaultError
from kassa.vault.fingerprint import CardFingerprinter
from kassa.vault.rotation import ResealBatch

log = structlog.get_logger("kassa.payments")
PROCESSOR_TIMEOUT_SECONDS = 15.0


def charge_reference(payment_id: uuid.UUID) -> str:
    """The processor idempotency key of a payment's charge: the same on every attempt."""
    return f"kassa_charge_{payment_id.hex}"


@dataclass
class ReconcileReport:
    examined: int = 0
    settled: int = 0
    unresolved: int = 0


ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class ProcessOutcome:
    payment: Payment
    settled: bool  # False: the processor's answer is unknown; the payment stays processing


def _secret_context(payment_id: uuid.UUID, part: str) -> bytes:
    return f"payment:{payment_id}:{part}".encode()


class PaymentService:
    def __init__(
        self,
        db: Database,
        vault: Vault,
        processor: Processor,
        clock: Callable[[], datetime],
        max_amount: int,
        processor_timeout: float = PROCESSOR_TIMEOUT_SECONDS,
        fingerprints: CardFingerprinter | None = None,
    ) -> None:
        self._db = db
        self._vault = vault
        self._processor = processor
        self._clock = clock
        self._max_amount = max_amount
        self._processor_timeout = processor_timeout
        self._fingerprints = fingerprints

    async def create(
        self,
        user_id: uuid.UUID,
        request: CardPaymentRequest | WalletPaymentRequest,
        held: HeldKey | None = None,
    ) -> Payment:
        """A `pending` payment; the card number and CVC are sealed, never stored in clear.
        With an Idempotency-Key, the key records this payment in the same transaction."""
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
            "processor": self._processor.name,
            "processor_reference": None,
            "charge_attempts": 0,
            "card_fingerprint": fingerprint,
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
        async with self._db.transaction() as db:
            await commit_effect(db, held, "create", payment_id)
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

    async def get(self, user_id: uuid.UUID, payment_id: uuid.UUID) -> Payment:
        payment = await repository.find_payment(self._db, user_id, payment_id)
        if payment is None:
            raise PaymentNotFound
        return payment

    async def _explain_refusal(
        self, db: Runner, user_id: uuid.UUID, payment_id: uuid.UUID, action: str
    ) -> Exception:
        current = await repository.find_payment(db, user_id, payment_id)
        if current is None:
            return PaymentNotFound()
        return PaymentNotPending(action, current.status)

    async def cancel(
        self, user_id: uuid.UUID, payment_id: uuid.UUID, held: HeldKey | None = None
    ) -> Payment:
        """pending → canceled; the vaulted card data is destroyed in the same transaction."""
        async with self._db.transaction() as db:
            await commit_effect(db, held, "cancel", payment_id)
            payment = await repository.transition(
                db, user_id, payment_id, PaymentStatus.CANCELED, updated_at=self._clock()
            )
            if payment is None:
                raise await self._explain_refusal(db, user_id, payment_id, "canceled")
            await self.record_event(db, payment, payment.updated_at)
            await repository.delete_secret(db, payment_id)
        PAYMENTS.labels(payment.status, payment.payment_method, payment.currency).inc()
        log.info("payment_canceled", payment_id=str(payment_id))
        return payment

    async def process(
        self, user_id: uuid.UUID, payment_id: uuid.UUID, held: HeldKey | None = None
    ) -> ProcessOutcome:
        """pending → processing (committed, with the Idempotency-Key's record of it, before
        the processor is asked) → completed or failed."""
        now = self._clock()
        async with self._db.transaction() as db:
            await commit_effect(db, held, "process", payment_id)
            payment = await repository.transition(
                db,
                user_id,
                payment_id,
                PaymentStatus.PROCESSING,
                count_attempt=True,
                updated_at=now,
            )
            if payment is None:
                raise await self._explain_refusal(db, user_id, payment_id, "processed")
            await self.record_event(db, payment, now)
            secret = await repository.find_secret(db, payment_id)
            source = self._open_source(payment, secret)
            # The CVC is destroyed as processing starts: it lives on only in this request.
            await repository.forget_cvc(db, payment_id)
            await TransactionService.record_charge(
                db,
                user_id=user_id,
                payment_id=payment_id,
                amount=payment.amount,
                currency=payment.currency,
                payment_method=payment.payment_method,
                now=now,
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
        )
        result = await self._prepare_and_charge(payment_id, request)
        if result is None:
            log.warning("payment_outcome_unknown", payment_id=str(payment_id))
            return ProcessOutcome(payment=payment, settled=False)
        settled = await self.settle(user_id, payment_id, result)
        if settled is None:
            # Reconciliation recorded this same charge (one reference, one charge) while we
            # waited for the processor: answer with what it recorded, not a stale `processing`.
            settled = await repository.find_payment(self._db, user_id, payment_id)
            if settled is None or settled.status == PaymentStatus.PROCESSING.value:
                return ProcessOutcome(payment=settled or payment, settled=False)
        return ProcessOutcome(payment=settled, settled=True)

    async def _charge(self, request: ChargeRequest) -> ChargeResult | None:
        answer = await call_processor(
            self._processor.name,
            "charge",
            self._processor.charge(request),
            seconds=self._processor_timeout,
            reference=request.reference,
            outcome=lambda result: result.outcome.value,
        )
        return None if answer is None else answer.value

    async def _prepare_and_charge(
        self, payment_id: uuid.UUID, request: ChargeRequest
    ) -> ChargeResult | None:
        """Charge, preparing first unless the processor's reference is already stored; the
        definite outcome, or None when it is unknown."""
        if request.processor_reference is None:
            prepared = await self._prepare(payment_id, request)
            if not isinstance(prepared, ChargeRequest):
                return prepared  # declined before anything could move, or unknown
            request = prepared
        return await self._charge(request)

    async def _prepare(
        self, payment_id: uuid.UUID, request: ChargeRequest
    ) -> ChargeRequest | ChargeResult | None:
        """Let the processor register the charge, and store its reference on the payment in
        a short transaction of its own — before anything can move money — so that
        reconciliation can always find what a charge did. The request to charge with; the
        result when the processor already declined; None when the outcome is unknown (no
        answer, or the payment was settled by another worker meanwhile)."""
        try:
            answer = await call_processor(
                self._processor.name,
                "prepare",
                self._processor.prepare_charge(request),
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

    async def settle(
        self, user_id: uuid.UUID, payment_id: uuid.UUID, result: ChargeResult
    ) -> Payment | None:
        """Record a definite charge outcome on a `processing` payment; None if another
        request (or reconciliation) settled it first."""
        now = self._clock()
        succeeded = result.outcome is Outcome.SUCCEEDED
        target = PaymentStatus.COMPLETED if succeeded else PaymentStatus.FAILED
        async with self._db.transaction() as db:
            payment = await repository.transition(
                db,
                user_id,
                payment_id,
                target,
                updated_at=now,
                processor_reference=result.processor_reference,
                failure_code=None if succeeded else (result.failure_code or "processing_error"),
                failure_message=None if succeeded else result.failure_message,
            )
            if payment is None:
                return None
            await self.record_event(db, payment, now)
            await TransactionService.settle_charge(db, payment_id, succeeded, now)
            if succeeded:
                await LedgerService.post_charge(
                    db,
                    user_id=user_id,
                    payment_id=payment_id,
                    amount=payment.amount,
                    currency=payment.currency,
                    now=now,
                )
            await repository.delete_secret(db, payment_id)
        PAYMENTS.labels(payment.status, payment.payment_method, payment.currency).inc()
        if succeeded:
            PAYMENT_AMOUNT.labels(payment.currency).inc(payment.amount)
        log.info(
            "payment_processed",
            payment_id=str(payment_id),
            status=payment.status,
            amount=payment.amount,
            currency=payment.currency,
            failure_code=payment.failure_code,
        )
        return payment

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
        if report.examined:
            log.info(
                "reconciled_payments",
                examined=report.examined,
                settled=report.settled,
                unresolved=report.unresolved,
            )
        return report

    async def _reconcile_one(self, payment: Payment) -> bool:
        reference = charge_reference(payment.id)
        # The processor's own reference when it prepared the charge, else kassa's.
        looked_up = payment.processor_reference or reference
        answer = await call_processor(
            self._processor.name,
            "lookup",
            self._processor.lookup_charge(looked_up),
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
                result = await self._prepare_and_charge(payment.id, request)
                if result is None:
                    return False
        await self.settle(payment.user_id, payment.id, result)
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
    async def lock_refundable(
        db: Runner, user_id: uuid.UUID, payment_id: uuid.UUID
    ) -> Payment | None:
        """The payment, locked until the transaction ends; a detached copy whose refund
        changes (`reserve_refund`, `release_refund`) `save_refund` writes back."""
        return await repository.lock_payment(db, user_id, payment_id)

    @staticmethod
    async def save_refund(db: Runner, payment: Payment) -> None:
        await repository.save_refund_amounts(db, payment)

    @staticmethod
    async def processor_reference(
        db: Runner, user_id: uuid.UUID, payment_id: uuid.UUID
    ) -> str | None:
        payment = await repository.find_payment(db, user_id, payment_id)
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
            target = status_after_refund(payment.amount, payment.amount_refunded)
            if target is not current and not can_transition(current, target):
                raise ValueError(f"a refund cannot move a {current} payment to {target}")
            payment.status = target.value
        payment.updated_at = now


def refundable_amount(payment: Payment) -> int:
    """What a refund may still take: the amount less succeeded and pending refunds."""
    return payment.amount - payment.amount_refunded - payment.amount_refund_pending
