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
from kassa.processors.simulator_store import MemorySimulatorStore, SimulatorStore

DECLINING_CARDS: dict[str, FailureCode] = {
    "4000000000000002": FailureCode.CARD_DECLINED,
    "4000000000009995": FailureCode.INSUFFICIENT_FUNDS,
    "4000000000000069": FailureCode.EXPIRED_CARD,
    "4000000000000127": FailureCode.INCORRECT_CVC,
    "4000000000000119": FailureCode.PROCESSING_ERROR,
}
DECLINING_WALLET_PREFIX = "declined"


class SimulatorProcessor:
    """The contract's test-mode processor. With a `DatabaseSimulatorStore` every server
    process and host agrees on what was charged, as a real processor would."""

    name = "simulator"

    def __init__(self, store: SimulatorStore | None = None, *, delay_seconds: float = 0.0) -> None:
        self._store = store or MemorySimulatorStore()
        self._delay = delay_seconds  # a network's latency, for load and crash tests
        self.charge_attempts = 0

    @property
    def charges_made(self) -> int:
        """Distinct charges that moved money, for in-memory simulators in tests."""
        if not isinstance(self._store, MemorySimulatorStore):
            raise TypeError("use count_charges() with a database store")
        return self._store.succeeded_charges

    async def count_charges(self) -> int:
        """Distinct charges that moved money, wherever the simulator keeps them."""
        return await self._store.count_succeeded_charges()

    def _decide(self, request: ChargeRequest) -> FailureCode | None:
        if request.card is not None:
            return DECLINING_CARDS.get(request.card.number)
        if request.wallet is not None and request.wallet.token.startswith(DECLINING_WALLET_PREFIX):
            return FailureCode.CARD_DECLINED
        return None

    async def prepare_charge(self, request: ChargeRequest) -> str | None:
        """The simulator charges under kassa's own reference: nothing to prepare."""
        return None

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        if self._delay:
            await asyncio.sleep(self._delay)
        # No lock and no read first: the store keeps the first answer for a reference, even
        # across processes, and hands it back, so a repeated or racing charge under one
        # reference gets that one answer.
        self.charge_attempts += 1
        failure = self._decide(request)
        result = ChargeResult(
            outcome=Outcome.FAILED if failure else Outcome.SUCCEEDED,
            processor_reference=f"sim_ch_{uuid.uuid4().hex}",
            failure_code=failure,
            failure_message=FAILURE_MESSAGES[failure] if failure else None,
        )
        return await self._store.put_charge(
            request.reference, result, request.amount, request.currency
        )

    async def refund(self, request: RefundRequest) -> RefundResult:
        result = RefundResult(
            outcome=Outcome.SUCCEEDED, processor_reference=f"sim_re_{uuid.uuid4().hex}"
        )
        return await self._store.put_refund(
            request.reference, result, request.charge_reference, request.amount, request.currency
        )

    async def lookup_charge(self, reference: str) -> ChargeResult | None:
        return await self._store.get_charge(reference)
