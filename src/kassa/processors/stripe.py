"""The Stripe connector, on the official SDK. No Stripe type or exception leaves this module.

One payment is one PaymentIntent. `prepare_charge` makes it ready without moving money — the
user's Stripe customer, the card as a PaymentMethod attached to that customer (as Stripe
recommends for repeat payers; this is also where many declines show), and the PaymentIntent
holding both — and kassa stores the PaymentIntent's id before `charge` confirms it. A lost
answer is therefore always settled by retrieving that id: never by searching, and never by
making a second PaymentIntent. Stripe lets a PaymentIntent succeed at most once, which is
what makes a repeated `charge` safe; every request also carries an idempotency key derived
from kassa's reference, the step and the attempt, which Stripe honours for 24 hours (the
design does not depend on it).

Outcomes:
- a decline (HTTP 402, or a PaymentIntent whose `last_payment_error` says so) fails with a
  contract failure code (`failure_code_for`); a decline is final for the payment;
- a request Stripe refuses (400/404) is settled by what the PaymentIntent then says; when
  nothing moved, a 400 (Stripe refusing kassa's own request: an unknown parameter, a setting
  the account lacks — an integration fault, not the customer's) fails the payment with
  `processor_error`, and Stripe's error type and message are logged at error level
  (`stripe_request_refused`, with Stripe's request id) for the operator; other refusals (an
  id Stripe does not know, such as a client's wallet token) are logged the same way at
  warning level and stay `processing_error`;
- a network fault, a timeout, 429, 5xx, and a bad key raise `ProcessorUnavailable`: the
  outcome is unknown, and reconciliation retrieves the PaymentIntent later;
- a PaymentIntent that asks for customer action (3-D Secure) with a page to send the customer
  to (`next_action.redirect_to_url`, which Stripe gives when kassa confirms with a
  `return_url` — kassa's signed return page, `kassa.payments.returns`) answers
  `REQUIRES_ACTION` with Stripe's own `next_action` passed through; the outcome is read from
  the PaymentIntent when the customer returns or reconciliation looks it up. One that asks
  with nothing kassa can send the customer to (no `return_url`) is canceled, and the payment
  fails with `authentication_failed`.

Manual capture: the PaymentIntent is made with `capture_method: manual`, so confirming it
authorizes (`requires_capture` → `AUTHORIZED`); `capture` takes `amount_to_capture` once
(Stripe captures a PaymentIntent at most once), and `void` cancels the PaymentIntent.

Card data is sent to Stripe once, while kassa still holds the CVC, with Stripe's raw card
data API (which the Stripe account must have enabled). Wallet tokens (Apple Pay, Google
Pay, PayPal) are PaymentMethod (`pm_…`) or token (`tok_…`) ids made client-side with
Stripe.js or Stripe's mobile SDKs.

Amounts: kassa counts ISO 4217 minor units, Stripe its own; they differ for ISK (two-decimal
at Stripe) and MGA (zero-decimal at Stripe), which `stripe_amount` converts exactly.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

import stripe
import structlog

from kassa.money import currency_exponent
from kassa.processors.base import (
    FAILURE_MESSAGES,
    CaptureRequest,
    ChargeDeclined,
    ChargeRequest,
    ChargeResult,
    FailureCode,
    NextAction,
    Outcome,
    ProcessorUnavailable,
    RefundRequest,
    RefundResult,
)
from kassa.processors.customers import CustomerStore

if TYPE_CHECKING:
    from stripe.params import (
        PaymentIntentConfirmParams,
        PaymentIntentCreateParams,
        PaymentMethodCreateParams,
        PaymentMethodCreateParamsCard,
        RefundListParams,
    )

log = structlog.get_logger("kassa.processors.stripe")

T = TypeVar("T")

DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_NETWORK_RETRIES = 2

# Stripe's documented decline codes (docs.stripe.com/declines/codes) and card error codes
# (docs.stripe.com/error-codes) that say more than "declined"; every other one — including
# codes Stripe adds later — is `card_declined`.
SPECIFIC_FAILURES: dict[str, FailureCode] = {
    "insufficient_funds": FailureCode.INSUFFICIENT_FUNDS,
    "card_velocity_exceeded": FailureCode.INSUFFICIENT_FUNDS,
    "withdrawal_count_exceeded": FailureCode.INSUFFICIENT_FUNDS,
    "expired_card": FailureCode.EXPIRED_CARD,
    "invalid_expiry_month": FailureCode.EXPIRED_CARD,
    "invalid_expiry_year": FailureCode.EXPIRED_CARD,
    "incorrect_cvc": FailureCode.INCORRECT_CVC,
    "invalid_cvc": FailureCode.INCORRECT_CVC,
    "processing_error": FailureCode.PROCESSING_ERROR,
    "issuer_not_available": FailureCode.PROCESSING_ERROR,
    "try_again_later": FailureCode.PROCESSING_ERROR,
    "reenter_transaction": FailureCode.PROCESSING_ERROR,
    "payment_intent_authentication_failure": FailureCode.AUTHENTICATION_FAILED,
}
# docs.stripe.com/currencies#special-cases: where Stripe's minor unit is not ISO 4217's.
# ISK stays two-decimal in Stripe's API (ISO: none); MGA is zero-decimal there (ISO: 2).
STRIPE_EXPONENTS: dict[str, int] = {"ISK": 2, "MGA": 0}
NEEDS_AUTHENTICATION = (
    "The card needs authentication (3-D Secure), which this payment cannot ask for."
)


def failure_code_for(code: str | None, decline_code: str | None) -> FailureCode:
    """The contract's failure code for a Stripe card error: the decline code (the issuer's
    reason) first, then the error code; anything unrecognised is `card_declined`."""
    for candidate in (decline_code, code):
        if candidate and candidate in SPECIFIC_FAILURES:
            return SPECIFIC_FAILURES[candidate]
    return FailureCode.CARD_DECLINED


def stripe_amount(amount: int, currency: str) -> int | None:
    """kassa's `amount` (ISO 4217 minor units of `currency`) in Stripe's minor units, exactly;
    None when Stripe's unit is the coarser and `amount` is not a whole number of it (never
    rounded: a charge or refund of another amount is no answer)."""
    code = currency.upper()
    if code not in STRIPE_EXPONENTS:
        return amount
    shift = STRIPE_EXPONENTS[code] - currency_exponent(code)
    unit: int = 10 ** abs(shift)
    if shift >= 0:
        return amount * unit
    whole, rest = divmod(amount, unit)
    return whole if rest == 0 else None


def kassa_amount(amount: int, currency: str) -> int:
    """Stripe's minor units of `currency` back in kassa's (ISO 4217) minor units."""
    code = currency.upper()
    if code not in STRIPE_EXPONENTS:
        return amount
    shift = STRIPE_EXPONENTS[code] - currency_exponent(code)
    unit: int = 10 ** abs(shift)
    return amount // unit if shift >= 0 else amount * unit


def _not_whole(currency: str) -> str:
    return f"Stripe takes {currency.upper()} amounts in whole units only."


class _Declined(Exception):
    """Stripe declined (HTTP 402): a definite answer, no money moved."""

    def __init__(self, failure: FailureCode) -> None:
        super().__init__(failure.value)
        self.failure = failure


class _Refused(Exception):
    """Stripe refused the request itself (HTTP 400/404); what it did is still to be asked."""

    def __init__(self, code: str | None, http_status: int | None = None) -> None:
        super().__init__(code or "invalid_request")
        self.code = code
        self.http_status = http_status

    @property
    def failure(self) -> FailureCode:
        """A 400 about the request kassa built — no code (as for an unknown parameter), or a
        `parameter_*` code — is an integration fault: `processor_error`. Anything else (an
        id Stripe does not know, such as a client's wallet token; an object in another state;
        a refusal kassa made itself) is `processing_error`."""
        if self.http_status == 400 and (self.code is None or self.code.startswith("parameter_")):
            return FailureCode.PROCESSOR_ERROR
        return FailureCode.PROCESSING_ERROR


def _failed(
    processor_reference: str, failure: FailureCode, message: str | None = None
) -> ChargeResult:
    return ChargeResult(
        outcome=Outcome.FAILED,
        processor_reference=processor_reference,
        failure_code=failure,
        failure_message=message or FAILURE_MESSAGES[failure],
    )


def _intent_outcome(intent: stripe.PaymentIntent) -> ChargeResult | None:
    """What a PaymentIntent says about money: a definite result (succeeded, failed,
    authorized, voided, or waiting for its customer at a page), None when it was never
    confirmed (nothing moved), or `ProcessorUnavailable` while Stripe has no answer yet."""
    status = intent.status
    if status == "succeeded":
        received = _field(intent, "amount_received")
        currency = str(_field(intent, "currency") or "")
        captured = None
        if _field(intent, "capture_method") == "manual" and isinstance(received, int):
            captured = kassa_amount(received, currency)
        return ChargeResult(
            outcome=Outcome.SUCCEEDED, processor_reference=intent.id, amount_captured=captured
        )
    if status == "requires_capture":
        return ChargeResult(outcome=Outcome.AUTHORIZED, processor_reference=intent.id)
    if status == "processing":
        raise ProcessorUnavailable(f"the PaymentIntent is {status}")
    if status == "requires_action":
        url = _redirect_url(intent)
        if url is not None:
            return ChargeResult(
                outcome=Outcome.REQUIRES_ACTION,
                processor_reference=intent.id,
                next_action=NextAction(url=url),
            )
        return None  # nowhere to send the customer: the caller abandons it
    error = _field(intent, "last_payment_error")
    code, decline = _field(error, "code"), _field(error, "decline_code")
    if code or decline:
        return _failed(intent.id, failure_code_for(code, decline))
    if status == "canceled":
        if _field(intent, "capture_method") == "manual":
            return ChargeResult(outcome=Outcome.VOIDED, processor_reference=intent.id)
        return _failed(intent.id, FailureCode.CARD_DECLINED)
    return None


def _redirect_url(intent: stripe.PaymentIntent) -> str | None:
    """Stripe's page for the customer (`next_action.redirect_to_url.url`), if it gave one."""
    action = _field(intent, "next_action")
    if _field(action, "type") != "redirect_to_url":
        return None
    url = _field(_field(action, "redirect_to_url"), "url")
    return url if isinstance(url, str) and url else None


def _field(obj: object, name: str) -> Any:
    """An optional field of a Stripe object: Stripe sends it as null, a fake may leave it out."""
    return getattr(obj, name, None) if obj is not None else None


def _metadata(metadata: object) -> dict[str, str]:
    """A Stripe object's metadata as a plain dict."""
    to_dict = getattr(metadata, "to_dict", None)
    plain = to_dict() if callable(to_dict) else metadata
    return {str(k): str(v) for k, v in plain.items()} if isinstance(plain, dict) else {}


def _wallet_types(wallet: str) -> list[str]:
    # Apple Pay and Google Pay reach Stripe as card PaymentMethods.
    return ["paypal"] if wallet == "paypal" else ["card"]


class StripeProcessor:
    """kassa's processor Protocol over Stripe's PaymentIntents."""

    name = "stripe"

    def __init__(
        self,
        client: stripe.StripeClient,
        customers: CustomerStore,
        http_client: stripe.HTTPClient | None = None,
    ) -> None:
        self._client = client
        self._customers = customers
        self._http_client = http_client
        # The SDK logs request bodies (card numbers, CVCs) at DEBUG: never let them through.
        logging.getLogger("stripe").setLevel(logging.WARNING)

    @classmethod
    def connect(
        cls,
        api_key: str,
        customers: CustomerStore,
        *,
        api_base: str | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        max_network_retries: int = DEFAULT_NETWORK_RETRIES,
    ) -> StripeProcessor:
        http_client = stripe.HTTPXClient(timeout=timeout_seconds)
        client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base.rstrip("/")} if api_base else None,
            http_client=http_client,
            max_network_retries=max_network_retries,
        )
        return cls(client, customers, http_client)

    async def aclose(self) -> None:
        if self._http_client is not None:
            await self._http_client.close_async()  # type: ignore[no-untyped-call]

    # Calls ---------------------------------------------------------------------------------

    async def _call(self, operation: str, call: Awaitable[T]) -> T:
        """Await one Stripe request, turning its errors into kassa's: a decline, a refusal,
        or `ProcessorUnavailable` for everything whose outcome is unknown."""
        try:
            return await call
        except stripe.CardError as exc:
            body = exc.json_body.get("error") if isinstance(exc.json_body, dict) else None
            decline = body.get("decline_code") if isinstance(body, dict) else None
            raise _Declined(failure_code_for(exc.code, decline)) from None
        except stripe.IdempotencyError:
            log.error("stripe_idempotency_error", operation=operation)
            raise ProcessorUnavailable(f"stripe {operation}: idempotency error") from None
        except stripe.InvalidRequestError as exc:
            refused = _Refused(exc.code, exc.http_status)
            error = exc.error
            # Stripe's own words (`code` is often null): what the operator needs to fix it.
            # An integration fault is an error; an unknown id or a state conflict a warning.
            report = log.error if refused.failure is FailureCode.PROCESSOR_ERROR else log.warning
            report(
                "stripe_request_refused",
                operation=operation,
                status=exc.http_status,
                type=_field(error, "type"),
                code=exc.code,
                param=_field(error, "param"),
                message=_without_quoted_values(_field(error, "message") or exc.user_message),
                request_id=exc.request_id,
            )
            raise refused from None
        except stripe.StripeError as exc:
            # Connection errors, timeouts, 429, 5xx, and a wrong key or permissions: retry later.
            log.warning(
                "stripe_unavailable",
                operation=operation,
                error=type(exc).__name__,
                status=exc.http_status,
                request_id=exc.request_id,
            )
            raise ProcessorUnavailable(f"stripe {operation}: {type(exc).__name__}") from None

    async def _retrieve(self, intent_id: str) -> stripe.PaymentIntent:
        try:
            return await self._call(
                "retrieve_payment_intent",
                self._client.v1.payment_intents.retrieve_async(intent_id),
            )
        except _Refused:
            # kassa stored this id itself: Stripe not knowing it (another account or key?)
            # is for a human to look at, not a reason to charge again.
            raise ProcessorUnavailable("Stripe does not know the stored PaymentIntent") from None

    async def _customer(self, user_id: str) -> str:
        known = await self._customers.get(user_id)
        if known is not None:
            return known
        customer = await self._call(
            "create_customer",
            self._client.v1.customers.create_async(
                {"metadata": {"kassa_user_id": user_id}},
                {"idempotency_key": f"kassa_customer_{user_id}"},
            ),
        )
        return await self._customers.put(user_id, customer.id)

    async def _create_intent(
        self, request: ChargeRequest, amount: int, customer: str, method: str
    ) -> str:
        types = _wallet_types(request.wallet.wallet) if request.wallet else ["card"]
        params: PaymentIntentCreateParams = {
            "amount": amount,
            "currency": request.currency.lower(),
            "customer": customer,
            "payment_method": method,
            "allowed_payment_method_types": types,
            "metadata": {"kassa_reference": request.reference},
        }
        if not request.capture:
            params["capture_method"] = "manual"
        intent = await self._call(
            "create_payment_intent",
            self._client.v1.payment_intents.create_async(
                params, {"idempotency_key": f"{request.reference}-intent-{request.attempt}"}
            ),
        )
        return intent.id

    async def _payment_method(self, request: ChargeRequest, customer: str) -> str:
        """The PaymentMethod to charge, attached to the user's customer."""
        key = f"{request.reference}-{{step}}-{request.attempt}"
        methods = self._client.v1.payment_methods
        if request.card is not None:
            card: PaymentMethodCreateParamsCard = {
                "number": request.card.number,
                "exp_month": request.card.exp_month,
                "exp_year": request.card.exp_year,
            }
            if request.card.cvc:
                card["cvc"] = request.card.cvc
            params: PaymentMethodCreateParams = {"type": "card", "card": card}
            if request.card.holder_name:
                params["billing_details"] = {"name": request.card.holder_name}
            method = await self._call(
                "create_payment_method",
                methods.create_async(params, {"idempotency_key": key.format(step="method")}),
            )
        elif request.wallet is not None and request.wallet.token.startswith("tok_"):
            method = await self._call(
                "create_payment_method",
                methods.create_async(
                    {"type": "card", "card": {"token": request.wallet.token}},
                    {"idempotency_key": key.format(step="method")},
                ),
            )
        elif request.wallet is not None and request.wallet.token.startswith("pm_"):
            method = await self._call(
                "retrieve_payment_method", methods.retrieve_async(request.wallet.token)
            )
            if _field(method, "customer") == customer:
                return method.id
        else:
            raise _Refused("wallet token is neither a Stripe PaymentMethod nor a token")
        attached = await self._call(
            "attach_payment_method",
            methods.attach_async(
                method.id, {"customer": customer}, {"idempotency_key": key.format(step="attach")}
            ),
        )
        return attached.id

    async def _abandon(self, intent: stripe.PaymentIntent) -> ChargeResult:
        """Cancel a PaymentIntent that waits for the customer, so it can never succeed later."""
        try:
            intent = await self._call(
                "cancel_payment_intent",
                self._client.v1.payment_intents.cancel_async(
                    intent.id, options={"idempotency_key": f"{intent.id}-cancel"}
                ),
            )
        except _Refused:
            intent = await self._retrieve(intent.id)
        if intent.status == "canceled":
            return _failed(intent.id, FailureCode.AUTHENTICATION_FAILED, NEEDS_AUTHENTICATION)
        known = _intent_outcome(intent)
        if known is None:
            raise ProcessorUnavailable(f"the PaymentIntent stayed {intent.status}")
        return known

    async def _settle_from(self, intent: stripe.PaymentIntent) -> ChargeResult | None:
        known = _intent_outcome(intent)
        if known is None and intent.status == "requires_action":
            return await self._abandon(intent)
        return known

    # The Protocol ----------------------------------------------------------------------------

    async def prepare_charge(self, request: ChargeRequest) -> str | None:
        """Make the charge ready without moving money: the user's customer, the card (or
        wallet token) as a PaymentMethod attached to it, and a PaymentIntent for the amount
        holding both, whose id kassa stores. Card data goes to Stripe here, once, while kassa
        still has the CVC. A card refused on attaching, or a request Stripe refuses, is a
        definite `ChargeDeclined`, and so is an amount Stripe's unit cannot express."""
        amount = stripe_amount(request.amount, request.currency)
        if amount is None:
            failed = _failed(
                request.reference, FailureCode.PROCESSING_ERROR, _not_whole(request.currency)
            )
            raise ChargeDeclined(failed)
        try:
            customer = await self._customer(request.customer_id)
            method = await self._payment_method(request, customer)
            return await self._create_intent(request, amount, customer, method)
        except _Declined as exc:
            raise ChargeDeclined(_failed(request.reference, exc.failure)) from None
        except _Refused as exc:
            raise ChargeDeclined(_failed(request.reference, exc.failure)) from None

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        """Confirm the prepared PaymentIntent — or answer what it already did."""
        intent_id = request.processor_reference
        if intent_id is None:  # kassa prepares first; a caller that did not gets it done here
            try:
                intent_id = await self.prepare_charge(request)
            except ChargeDeclined as declined:
                return declined.result
            assert intent_id is not None
        intent = await self._retrieve(intent_id)
        known = await self._settle_from(intent)
        if known is not None:
            return known
        try:
            if not _field(intent, "payment_method"):
                # A PaymentIntent this connector did not prepare with a card: attach one now.
                customer = await self._customer(request.customer_id)
                method = await self._payment_method(request, customer)
                await self._call(
                    "update_payment_intent",
                    self._client.v1.payment_intents.update_async(
                        intent_id,
                        {"payment_method": method},
                        {"idempotency_key": f"{request.reference}-use-{request.attempt}"},
                    ),
                )
            confirm: PaymentIntentConfirmParams = {}
            if request.return_url:
                confirm["return_url"] = request.return_url
            intent = await self._call(
                "confirm_payment_intent",
                self._client.v1.payment_intents.confirm_async(
                    intent_id,
                    confirm,
                    options={"idempotency_key": f"{request.reference}-confirm-{request.attempt}"},
                ),
            )
        except _Declined as exc:
            return _failed(intent_id, exc.failure)
        except _Refused as exc:
            # Stripe refused one step; the PaymentIntent says whether money moved.
            intent = await self._retrieve(intent_id)
            known = await self._settle_from(intent)
            return known or _failed(intent_id, exc.failure)
        known = await self._settle_from(intent)
        if known is None:
            raise ProcessorUnavailable(f"the PaymentIntent is {intent.status} after confirming")
        return known

    async def lookup_charge(self, reference: str) -> ChargeResult | None:
        """The outcome of the PaymentIntent kassa stored. A reference that is not a
        PaymentIntent id means kassa never stored one, so nothing was ever confirmed."""
        if not reference.startswith("pi_"):
            return None
        return _intent_outcome(await self._retrieve(reference))

    async def capture(self, request: CaptureRequest) -> ChargeResult:
        """Capture `amount` of the authorized PaymentIntent, once; asked again (or when Stripe
        refuses because it is captured already), answer what the PaymentIntent says."""
        intent_id = request.processor_reference
        if intent_id is None or not intent_id.startswith("pi_"):
            return _failed(request.reference, FailureCode.PROCESSING_ERROR)
        amount = stripe_amount(request.amount, request.currency)
        if amount is None:
            return _failed(intent_id, FailureCode.PROCESSING_ERROR, _not_whole(request.currency))
        captured_now = True
        try:
            intent = await self._call(
                "capture_payment_intent",
                self._client.v1.payment_intents.capture_async(
                    intent_id,
                    {"amount_to_capture": amount},
                    {"idempotency_key": f"{request.reference}-capture"},
                ),
            )
        except (_Declined, _Refused):
            # Captured already (Stripe captures once), voided, or expired: as it stands.
            intent = await self._retrieve(intent_id)
            captured_now = False
        known = _intent_outcome(intent)
        if known is None:
            return _failed(intent_id, FailureCode.PROCESSING_ERROR)
        if known.outcome is Outcome.SUCCEEDED and known.amount_captured is None and captured_now:
            # This capture took exactly `amount_to_capture` (for fakes without amount_received).
            return dataclasses.replace(known, amount_captured=request.amount)
        return known

    async def void(self, reference: str) -> ChargeResult:
        """Cancel the PaymentIntent (an authorization, or one waiting for its customer):
        VOIDED; what it became instead when it is too late to cancel."""
        if not reference.startswith("pi_"):
            return ChargeResult(outcome=Outcome.VOIDED, processor_reference=reference)
        try:
            intent = await self._call(
                "cancel_payment_intent",
                self._client.v1.payment_intents.cancel_async(
                    reference, options={"idempotency_key": f"{reference}-void"}
                ),
            )
        except (_Declined, _Refused):
            intent = await self._retrieve(reference)
        if intent.status == "canceled":
            return ChargeResult(outcome=Outcome.VOIDED, processor_reference=intent.id)
        known = _intent_outcome(intent)
        if known is None:
            raise ProcessorUnavailable(f"the PaymentIntent stayed {intent.status}")
        return known

    async def refund(self, request: RefundRequest) -> RefundResult:
        """Refund part or all of a PaymentIntent, once per kassa reference: a refund already
        made under it (found by its metadata, so even after the idempotency key expired) is
        answered instead of refunding again."""
        intent_id = request.charge_reference
        if not intent_id.startswith("pi_"):
            log.error("stripe_refund_without_payment_intent", reference=request.reference)
            return RefundResult(outcome=Outcome.FAILED, processor_reference="")
        amount = stripe_amount(request.amount, request.currency)
        if amount is None:
            log.error(
                "stripe_refund_amount_not_whole",
                reference=request.reference,
                currency=request.currency,
            )
            return RefundResult(outcome=Outcome.FAILED, processor_reference="")
        try:
            made = await self._find_refund(intent_id, request.reference)
            if made is None:
                made = await self._call(
                    "create_refund",
                    self._client.v1.refunds.create_async(
                        {
                            "payment_intent": intent_id,
                            "amount": amount,
                            "metadata": {"kassa_reference": request.reference},
                        },
                        {"idempotency_key": request.reference},
                    ),
                )
        except (_Declined, _Refused):
            made = await self._find_refund_or_none(intent_id, request.reference)
            if made is None:
                return RefundResult(outcome=Outcome.FAILED, processor_reference="")
        if made.status == "succeeded":
            return RefundResult(outcome=Outcome.SUCCEEDED, processor_reference=made.id)
        if made.status in {"failed", "canceled"}:
            return RefundResult(outcome=Outcome.FAILED, processor_reference=made.id)
        raise ProcessorUnavailable(f"the refund is {made.status}")

    async def _find_refund(self, intent_id: str, reference: str) -> stripe.Refund | None:
        params: RefundListParams = {"payment_intent": intent_id, "limit": 100}
        while True:
            page = await self._call("list_refunds", self._client.v1.refunds.list_async(params))
            for refund in page.data:
                if _metadata(_field(refund, "metadata")).get("kassa_reference") == reference:
                    return refund
            if not page.has_more or not page.data:
                return None
            params["starting_after"] = page.data[-1].id

    async def _find_refund_or_none(self, intent_id: str, reference: str) -> stripe.Refund | None:
        try:
            return await self._find_refund(intent_id, reference)
        except (_Declined, _Refused):
            return None


_QUOTED = re.compile(r"'[^']*'")


def _without_quoted_values(message: str | None) -> str | None:
    """Stripe's message without the values it quotes: "No such PaymentMethod: 'pm_…'" names a
    client's wallet token, which no log line may hold; the words and `param` remain."""
    return _QUOTED.sub("'…'", message) if message else message
