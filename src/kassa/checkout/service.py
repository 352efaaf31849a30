"""Checkout sessions: a merchant creates one for an amount; the customer pays it on kassa's
page, so the card goes only to kassa.

Paying is keyed, not locked. Attempt `n` of a session (`attempt`, the count of its failed
payments) is an Idempotency-Key of the merchant's, derived from the session's id and `n`,
claimed through the same `IdempotencyService` the API uses: the payment of attempt `n` is
created once (the key commits in the payment's own transaction), whatever submits it —
a double click, a second tab, a retry after a crash — and every later submit of attempt
`n` is answered from that one payment. The charge itself is `PaymentService.process`,
whose state machine charges a pending payment once. A declined attempt opens attempt
`n + 1` (a conditional update); a completed one completes the session (open → complete,
conditional, so `checkout.session.completed` is recorded once, in the same transaction).
No transaction is held while the processor is asked.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson
import structlog

from kassa.auth.service import Principal
from kassa.checkout import repository
from kassa.checkout.errors import (
    CheckoutAmountTooLarge,
    CheckoutSessionClosed,
    CheckoutSessionNotFound,
)
from kassa.checkout.models import CheckoutSession
from kassa.checkout.schemas import (
    SESSION_ID_PLACEHOLDER,
    CheckoutSessionOut,
    CreateCheckoutSessionRequest,
)
from kassa.db import Database, new_id
from kassa.events.service import EventService
from kassa.idempotency.service import ClaimKind, HeldKey, IdempotencyService
from kassa.payments.errors import PaymentNotPending
from kassa.payments.models import Payment
from kassa.payments.schemas import (
    CardDetailsIn,
    CardPaymentRequest,
    WalletDetailsIn,
    WalletPaymentRequest,
)
from kassa.payments.service import PaymentService
from kassa.payments.states import PaymentStatus

log = structlog.get_logger("kassa.checkout")
COMPLETED_EVENT = "checkout.session.completed"
# The statuses of a payment that has taken the customer's money (or its authorization).
_PAID = frozenset({PaymentStatus.COMPLETED.value, PaymentStatus.REQUIRES_CAPTURE.value})
_FAILED = frozenset({PaymentStatus.FAILED.value, PaymentStatus.CANCELED.value})
_UNSETTLED = frozenset({PaymentStatus.PENDING.value, PaymentStatus.PROCESSING.value})


def attempt_key(session_id: uuid.UUID, attempt: int) -> str:
    """The Idempotency-Key of a session's attempt. It holds `§`, which no client's key can
    (the API takes printable ASCII only), so a merchant's own keys never collide with it."""
    return f"checkout§{session_id}§{attempt}"


def status_of(session: CheckoutSession, now: datetime) -> str:
    """`open`, `complete`, or `expired` (an open session past its expiry)."""
    if session.status == "open" and session.expires_at <= now:
        return "expired"
    return session.status


def session_out(session: CheckoutSession, now: datetime) -> CheckoutSessionOut:
    return CheckoutSessionOut(
        id=session.id,
        url=session.url,
        status=status_of(session, now),
        amount=session.amount,
        currency=session.currency,
        description=session.description,
        capture=session.capture,
        metadata=session.metadata_,
        success_url=session.success_url,
        cancel_url=session.cancel_url,
        payment_id=session.payment_id,
        livemode=session.livemode,
        created_at=session.created_at,
        expires_at=session.expires_at,
        completed_at=session.completed_at,
    )


def return_url(session: CheckoutSession) -> str:
    """Where the 3-D Secure challenge sends the customer back: the session's own page."""
    return f"{session.url}/return"


def redirect_target(url: str, session_id: uuid.UUID) -> str:
    """The merchant's success or cancel URL with the session's id where it asked for it."""
    return url.replace(SESSION_ID_PLACEHOLDER, str(session_id))


class Outcome(StrEnum):
    COMPLETE = "complete"  # paid: on to the success URL
    DECLINED = "declined"  # the attempt failed; the next one is open
    IN_PROGRESS = "in_progress"  # another submit of this attempt runs, or the outcome is unknown
    REQUIRES_ACTION = "requires_action"  # the card asks for 3-D Secure: on to its challenge
    STALE = "stale"  # the form was for an earlier attempt: show the session as it is now


@dataclass(frozen=True, slots=True)
class PayResult:
    outcome: Outcome
    session: CheckoutSession
    payment: Payment | None = None


@dataclass(frozen=True, slots=True)
class CheckoutView:
    """What the page shows: the session, its status now, who is paid, and the current
    attempt's payment (none until one is made; why the previous one failed is the session's
    `last_failure_code`)."""

    session: CheckoutSession
    status: str
    merchant_name: str
    last_payment: Payment | None


PaymentSource = CardDetailsIn | WalletDetailsIn


class CheckoutService:
    def __init__(
        self,
        db: Database,
        payments: PaymentService,
        idempotency: IdempotencyService,
        merchant_name: Callable[[uuid.UUID], Awaitable[str | None]],
        clock: Callable[[], datetime],
        *,
        ttl: timedelta,
        max_amount: int,
    ) -> None:
        self._db = db
        self._payments = payments
        self._idempotency = idempotency
        self._merchant_name = merchant_name
        self._clock = clock
        self._ttl = ttl
        self._max_amount = max_amount

    async def create(
        self, principal: Principal, request: CreateCheckoutSessionRequest, base_url: str
    ) -> CheckoutSession:
        """An open session of the caller's mode, payable on kassa's page until it expires.
        `base_url` is where customers reach kassa (the session's `url` starts with it)."""
        if request.amount > self._max_amount:
            raise CheckoutAmountTooLarge(self._max_amount)
        now = self._clock()
        session_id = new_id()  # a version-4 UUID: 122 random bits, the page's only key
        values: dict[str, Any] = {
            "id": session_id,
            "user_id": principal.user_id,
            "livemode": principal.livemode,
            "status": "open",
            "amount": request.amount,
            "currency": request.currency,
            "description": request.description,
            "capture": request.capture,
            "metadata": request.metadata or {},
            "url": f"{base_url.rstrip('/')}/checkout/{session_id}",
            "success_url": request.success_url,
            "cancel_url": request.cancel_url,
            "attempt": 0,
            "last_payment_id": None,
            "payment_id": None,
            "created_at": now,
            "updated_at": now,
            "expires_at": now + self._ttl,
            "completed_at": None,
        }
        await repository.insert_session(self._db, values)
        log.info(
            "checkout_session_created",
            checkout_session_id=str(session_id),
            user_id=str(principal.user_id),
            amount=request.amount,
            currency=request.currency,
        )
        found = await repository.get_session(self._db, session_id)
        assert found is not None
        return found

    async def get(self, principal: Principal, session_id: uuid.UUID) -> CheckoutSession:
        session = await repository.find_session(
            self._db, principal.user_id, principal.livemode, session_id
        )
        if session is None:
            raise CheckoutSessionNotFound
        return session

    def out(self, session: CheckoutSession) -> CheckoutSessionOut:
        return session_out(session, self._clock())

    async def view(self, session_id: uuid.UUID) -> CheckoutView:
        """The session as its page shows it. A latest attempt that completed after its
        request ended (an outcome settled later) completes the session here."""
        session = await self._session(session_id)
        last = None
        if session.last_payment_id is not None:
            last = await self._payments.get(
                session.user_id, session.last_payment_id, livemode=session.livemode
            )
            if session.status == "open" and last.status in _PAID:
                session = await self._complete(session, last)
            elif session.status == "open" and last.status in _FAILED:
                # Settled after its request ended (a 3-D Secure challenge that failed, an
                # unknown outcome that reconciliation settled): the next attempt opens.
                await self._next_attempt(session, session.attempt, last)
                session = await self._session(session_id)
                last = None
        name = await self._merchant_name(session.user_id)
        return CheckoutView(session, status_of(session, self._clock()), name or "", last)

    async def pay(self, session_id: uuid.UUID, attempt: int, source: PaymentSource) -> PayResult:
        """Pay attempt `attempt` of an open session with `source` (at most one payment per
        attempt, however often it is submitted)."""
        session = await self._session(session_id)
        status = status_of(session, self._clock())
        if status != "open":
            raise CheckoutSessionClosed(status)
        if attempt != session.attempt:
            return PayResult(Outcome.STALE, session)
        payment_id = await self._attempt_payment(session, attempt, source)
        if payment_id is None:
            return PayResult(Outcome.IN_PROGRESS, session)
        await repository.record_attempt(self._db, session.id, attempt, payment_id, self._clock())
        payment = await self._payments.get(session.user_id, payment_id, livemode=session.livemode)
        if payment.status == PaymentStatus.PENDING.value:
            try:
                outcome = await self._payments.process(
                    session.user_id,
                    payment_id,
                    return_url=return_url(session),
                    livemode=session.livemode,
                )
                payment = outcome.payment
            except PaymentNotPending:  # another submit of this attempt is charging it
                payment = await self._payments.get(
                    session.user_id, payment_id, livemode=session.livemode
                )
        return await self._conclude(session, attempt, payment)

    async def _attempt_payment(
        self, session: CheckoutSession, attempt: int, source: PaymentSource
    ) -> uuid.UUID | None:
        """The payment of attempt `attempt`, created now unless it already was; None while
        another submit of the attempt is creating it."""
        key = attempt_key(session.id, attempt)
        fingerprint = self._idempotency.fingerprint(
            "POST", f"/checkout/{session.id}", orjson.dumps({"attempt": attempt})
        )
        claim = await self._idempotency.claim(session.user_id, key, fingerprint)
        if claim.kind is ClaimKind.REPLAY and claim.body:
            return uuid.UUID(claim.body.decode())
        if claim.kind is ClaimKind.COMMITTED:
            return claim.effect_id
        if claim.kind is not ClaimKind.NEW:
            return None  # in use (or, never by kassa itself, reused): nothing new is made
        assert claim.record_id is not None
        assert claim.token is not None
        try:
            payment = await self._payments.create(
                session.user_id,
                self._payment_request(session, attempt, source),
                HeldKey(claim.record_id, claim.token),
                livemode=session.livemode,
            )
        except BaseException:
            await self._idempotency.release(claim.record_id, claim.token)
            raise
        await self._idempotency.complete(
            claim.record_id, claim.token, 201, str(payment.id).encode(), "text/plain"
        )
        return payment.id

    @staticmethod
    def _payment_request(
        session: CheckoutSession, attempt: int, source: PaymentSource
    ) -> CardPaymentRequest | WalletPaymentRequest:
        common: dict[str, Any] = {
            "amount": session.amount,
            "currency": session.currency,
            "capture": session.capture,
            "description": session.description,
            "metadata": session.metadata_ or None,
        }
        if isinstance(source, CardDetailsIn):
            return CardPaymentRequest.model_construct(
                payment_method="credit_card", details=source, **common
            )
        return WalletPaymentRequest.model_construct(
            payment_method="digital_wallet", details=source, **common
        )

    async def _conclude(
        self, session: CheckoutSession, attempt: int, payment: Payment
    ) -> PayResult:
        if payment.status in _PAID:
            return PayResult(Outcome.COMPLETE, await self._complete(session, payment), payment)
        if payment.status == PaymentStatus.REQUIRES_ACTION.value:
            return PayResult(Outcome.REQUIRES_ACTION, session, payment)
        if payment.status in _UNSETTLED:
            return PayResult(Outcome.IN_PROGRESS, session, payment)
        # Failed (or canceled): the customer may try again, as attempt + 1.
        await self._next_attempt(session, attempt, payment)
        log.info(
            "checkout_attempt_failed",
            checkout_session_id=str(session.id),
            attempt=attempt,
            failure_code=payment.failure_code,
        )
        return PayResult(Outcome.DECLINED, await self._session(session.id), payment)

    async def _next_attempt(self, session: CheckoutSession, attempt: int, payment: Payment) -> None:
        code = payment.failure_code or payment.status
        await repository.next_attempt(
            self._db, session.id, attempt, payment.id, code, self._clock()
        )

    async def _complete(self, session: CheckoutSession, payment: Payment) -> CheckoutSession:
        """open → complete with `payment`, and its event in the same transaction; the
        session as it stands when another request completed it first."""
        now = self._clock()
        async with self._db.transaction() as tx:
            completed = await repository.complete(tx, session.id, payment.id, now)
            if completed is not None:
                await EventService.record(
                    tx,
                    completed.user_id,
                    COMPLETED_EVENT,
                    session_out(completed, now).model_dump(mode="json"),
                    now,
                )
        if completed is None:
            return await self._session(session.id)
        log.info(
            "checkout_session_completed",
            checkout_session_id=str(session.id),
            payment_id=str(payment.id),
        )
        return completed

    async def _session(self, session_id: uuid.UUID) -> CheckoutSession:
        session = await repository.get_session(self._db, session_id)
        if session is None:
            raise CheckoutSessionNotFound
        return session
