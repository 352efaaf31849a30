"""What kassa asks of a processor. Outcomes are decided here, never by the client.

A call either returns a definite answer or raises `ProcessorUnavailable` when the outcome is
unknown (timeout, lost response, 5xx); the caller then leaves the payment in `processing`
and reconciliation settles it later by looking the charge up by its reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class FailureCode(StrEnum):
    CARD_DECLINED = "card_declined"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    EXPIRED_CARD = "expired_card"
    INCORRECT_CVC = "incorrect_cvc"
    PROCESSING_ERROR = "processing_error"


FAILURE_MESSAGES: dict[FailureCode, str] = {
    FailureCode.CARD_DECLINED: "The card was declined.",
    FailureCode.INSUFFICIENT_FUNDS: "The card has insufficient funds.",
    FailureCode.EXPIRED_CARD: "The card has expired.",
    FailureCode.INCORRECT_CVC: "The card's security code is incorrect.",
    FailureCode.PROCESSING_ERROR: "An error occurred while processing the card.",
}


class ProcessorUnavailable(Exception):
    """The processor's answer is unknown; the operation may or may not have happened."""


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


@dataclass(frozen=True, slots=True)
class ChargeResult:
    outcome: Outcome
    processor_reference: str
    failure_code: FailureCode | None = None
    failure_message: str | None = None


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

    async def charge(self, request: ChargeRequest) -> ChargeResult: ...

    async def refund(self, request: RefundRequest) -> RefundResult: ...

    async def lookup_charge(self, reference: str) -> ChargeResult | None:
        """The charge made under kassa's `reference`, or None when none was made."""
        ...
