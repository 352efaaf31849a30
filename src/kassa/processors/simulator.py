"""The built-in processor: answers like a card network's test mode.

Charges are remembered by kassa's reference, so asking twice with one reference charges
once — the property reconciliation relies on.
"""

from __future__ import annotations

import asyncio
import uuid

from kassa.processors.base import (
    FAILURE_MESSAGES,
    ChargeRequest,
    ChargeResult,
    FailureCode,
    Outcome,
    RefundRequest,
    RefundResult,
)

DECLINING_CARDS: dict[str, FailureCode] = {
    "4000000000000002": FailureCode.CARD_DECLINED,
    "4000000000009995": FailureCode.INSUFFICIENT_FUNDS,
    "4000000000000069": FailureCode.EXPIRED_CARD,
    "4000000000000127": FailureCode.INCORRECT_CVC,
    "4000000000000119": FailureCode.PROCESSING_ERROR,
}
DECLINING_WALLET_PREFIX = "declined"


class SimulatorProcessor:
    name = "simulator"

    def __init__(self) -> None:
        self._charges: dict[str, ChargeResult] = {}
        self._refunds: dict[str, RefundResult] = {}
        self._lock = asyncio.Lock()
        self.charge_attempts = 0

    @property
    def charges_made(self) -> int:
        """How many distinct charges moved money (for tests that count double charges)."""
        return sum(1 for r in self._charges.values() if r.outcome is Outcome.SUCCEEDED)

    def _decide(self, request: ChargeRequest) -> FailureCode | None:
        if request.card is not None:
            return DECLINING_CARDS.get(request.card.number)
        if request.wallet is not None and request.wallet.token.startswith(DECLINING_WALLET_PREFIX):
            return FailureCode.CARD_DECLINED
        return None

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        async with self._lock:
            self.charge_attempts += 1
            known = self._charges.get(request.reference)
            if known is not None:
                return known
            failure = self._decide(request)
            result = ChargeResult(
                outcome=Outcome.FAILED if failure else Outcome.SUCCEEDED,
                processor_reference=f"sim_ch_{uuid.uuid4().hex}",
                failure_code=failure,
                failure_message=FAILURE_MESSAGES[failure] if failure else None,
            )
            self._charges[request.reference] = result
            return result

    async def refund(self, request: RefundRequest) -> RefundResult:
        async with self._lock:
            known = self._refunds.get(request.reference)
            if known is not None:
                return known
            result = RefundResult(
                outcome=Outcome.SUCCEEDED, processor_reference=f"sim_re_{uuid.uuid4().hex}"
            )
            self._refunds[request.reference] = result
            return result

    async def lookup_charge(self, reference: str) -> ChargeResult | None:
        async with self._lock:
            return self._charges.get(reference)
