"""What kassa asks of a processor. Outcomes are decided here, never by the client.

A charge takes two steps (three with manual capture). `prepare_charge` registers the charge
with the processor without moving money and returns the processor's own reference for it (a
Stripe PaymentIntent id), which kassa stores before calling `charge`; a processor that needs no
such step returns None and is looked up under kassa's reference instead. A call either returns
a definite answer or raises `ProcessorUnavailable` when the outcome is unknown (timeout, lost
response, 5xx); the caller then leaves the payment in `processing` and reconciliation settles
it later by looking the charge up by its reference — never by charging again under a new one.

A charge with `capture=False` only authorizes: the answer is `AUTHORIZED` (the amount held on
the card) and `capture` later takes all or part of it, once per reference, or `void` releases
it. A card that needs 3-D Secure answers `REQUIRES_ACTION` with a `NextAction` (where to send
the customer); once the customer has authenticated, `lookup_charge` tells the outcome.

Vendor types and vendor exceptions never cross this interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"  # money moved (captured)
    FAILED = "failed"
    AUTHORIZED = "authorized"  # held on the card, not captured yet
    REQUIRES_ACTION = "requires_action"  # the customer must authenticate (3-D Secure)
    VOIDED = "voided"  # an authorization (or a charge awaiting its customer) released


class FailureCode(StrEnum):
    CARD_DECLINED = "card_declined"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    EXPIRED_CARD = "expired_card"
    INCORRECT_CVC = "incorrect_cvc"
    PROCESSING_ERROR = "processing_error"
    AUTHENTICATION_FAILED = "authentication_failed"
    # The processor refused kassa's own request (HTTP 400: an integration or configuration
    # fault, never the customer's card); logged with the processor's message for the operator.
    PROCESSOR_ERROR = "processor_error"


FAILURE_MESSAGES: dict[FailureCode, str] = {
    FailureCode.CARD_DECLINED: "The card was declined.",
    FailureCode.INSUFFICIENT_FUNDS: "The card has insufficient funds.",
    FailureCode.EXPIRED_CARD: "The card has expired.",
    FailureCode.INCORRECT_CVC: "The card's security code is incorrect.",
    FailureCode.PROCESSING_ERROR: "An error occurred while processing the card.",
    FailureCode.AUTHENTICATION_FAILED: (
        "The customer did not complete the card's authentication (3-D Secure)."
    ),
    FailureCode.PROCESSOR_ERROR: (
        "The payment processor refused the request; the card was not charged. This is not a "
        "decline of the card but a fault on the payment service's side."
    ),
}


class ProcessorUnavailable(Exception):
    """The processor's answer is unknown; the operation may or may not have happened."""


class ChargeDeclined(Exception):
    """`prepare_charge` already has the definite answer: the charge failed before anything
    could move money (for example a card refused when attached to the customer)."""

    def __init__(self, result: ChargeResult) -> None:
        super().__init__(result.failure_code.value if result.failure_code else "declined")
        self.result = result


@dataclass(frozen=True, slots=True)
class CardData:
    number: str
    exp_month: int
    exp_year: int
    cvc: str | None
    holder_name: str | None = None

    def __repr__(self) -> str:
        return "CardData(<redacted>)"


@dataclass(frozen=True, slots=True)
class WalletData:
    wallet: str
    token: str

    def __repr__(self) -> str:
        return f"WalletData(wallet={self.wallet!r}, token=<redacted>)"


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    reference: str  # kassa's idempotency key for this charge; the same on every retry
    amount: int
    currency: str
    customer_id: str
    card: CardData | None = None
    wallet: WalletData | None = field(default=None)
    # What `prepare_charge` returned and kassa stored, when the processor prepares charges.
    processor_reference: str | None = None
    # 1 for the first call to `charge`, then one more for each retry by reconciliation.
    attempt: int = 1
    # False: authorize only (manual capture); the amount is captured later by `capture`.
    capture: bool = True
    # Where the customer returns after authenticating (3-D Secure), when the card asks.
    return_url: str | None = None


@dataclass(frozen=True, slots=True)
class NextAction:
    """Where the customer must go before the charge can go on (`redirect_to_url`)."""

    url: str
    type: str = "redirect_to_url"


@dataclass(frozen=True, slots=True)
class ChargeResult:
    outcome: Outcome
    processor_reference: str
    failure_code: FailureCode | None = None
    failure_message: str | None = None
    next_action: NextAction | None = None  # with REQUIRES_ACTION
    # What moved, with SUCCEEDED after a partial capture (None: the whole amount).
    amount_captured: int | None = None


@dataclass(frozen=True, slots=True)
class CaptureRequest:
    reference: str  # kassa's reference of the charge; one capture per charge
    processor_reference: str | None  # what `prepare_charge` returned, when it did
    amount: int  # at most what was authorized; the rest is released
    currency: str


@dataclass(frozen=True, slots=True)
class RefundRequest:
    reference: str  # kassa's idempotency key for this refund
    charge_reference: str
    amount: int
    currency: str


@dataclass(frozen=True, slots=True)
class RefundResult:
    outcome: Outcome
    processor_reference: str


class Processor(Protocol):
    name: str

    async def prepare_charge(self, request: ChargeRequest) -> str | None:
        """Register the charge without moving money; the processor's reference for it, which
        kassa stores before `charge`, or None when the processor has no such step. Raises
        `ChargeDeclined` when the answer is already a definite failure."""
        ...

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        """Charge once per `reference`: asked again, answer what the first call did."""
        ...

    async def capture(self, request: CaptureRequest) -> ChargeResult:
        """Capture an authorization once: asked again, answer what the first capture did
        (SUCCEEDED with `amount_captured`); FAILED or VOIDED when it can no longer be
        captured (expired, voided)."""
        ...

    async def void(self, reference: str) -> ChargeResult:
        """Release an authorization, or a charge still waiting for its customer: VOIDED; or
        what the charge became instead when it is too late (SUCCEEDED, FAILED)."""
        ...

    async def refund(self, request: RefundRequest) -> RefundResult: ...

    async def lookup_charge(self, reference: str) -> ChargeResult | None:
        """The charge made under `reference` — the prepared reference when there is one,
        else kassa's — or None when no money moved under it."""
        ...
