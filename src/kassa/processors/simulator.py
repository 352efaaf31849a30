"""The built-in processor: answers like a card network's test mode.

Charges are remembered by kassa's reference, so asking twice with one reference charges
once — the property reconciliation relies on. The same holds for what came with manual
capture and 3-D Secure: an authorization is captured at most once and voided at most once
(one conditional update each, so a capture racing a void has one winner), and a 3-D Secure
challenge is finished once.

3-D Secure: Stripe's test cards that ask for authentication answer `REQUIRES_ACTION` with a
challenge page kassa serves (`kassa.challenge`): "Complete" authenticates (the charge then
succeeds, or is authorized with manual capture; 4000008400001629 then declines), "Fail"
fails it with `authentication_failed`, and a challenge left open past its expiry fails the
same way when the charge is next looked up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from kassa.db import utcnow
from kassa.ids import random_hex
from kassa.processors.base import (
    FAILURE_MESSAGES,
    CaptureRequest,
    ChargeRequest,
    ChargeResult,
    FailureCode,
    NextAction,
    Outcome,
    RefundRequest,
    RefundResult,
)
from kassa.processors.simulator_store import (
    Challenge,
    MemorySimulatorStore,
    SimulatorStore,
)

DECLINING_CARDS: dict[str, FailureCode] = {
    "4000000000000002": FailureCode.CARD_DECLINED,
    "4000000000009995": FailureCode.INSUFFICIENT_FUNDS,
    "4000000000000069": FailureCode.EXPIRED_CARD,
    "4000000000000127": FailureCode.INCORRECT_CVC,
    "4000000000000119": FailureCode.PROCESSING_ERROR,
}
# Stripe's 3-D Secure test cards: each asks; the value is what follows authentication.
AUTHENTICATING_CARDS: dict[str, FailureCode | None] = {
    "4000002760003184": None,
    "4000002500003155": None,
    "4000000000003220": None,
    "4000008400001629": FailureCode.CARD_DECLINED,
}
DECLINING_WALLET_PREFIX = "declined"
CHALLENGE_TTL = timedelta(minutes=15)
CHALLENGE_PATH = "/simulator/3ds/"
# Where a charge waiting for its customer may go; an authorization may be captured or voided.
_WAITING = frozenset({Outcome.REQUIRES_ACTION})
_VOIDABLE = frozenset({Outcome.AUTHORIZED, Outcome.REQUIRES_ACTION})
_CAPTURABLE = frozenset({Outcome.AUTHORIZED})


@dataclass(frozen=True, slots=True)
class ChallengeAnswer:
    """A finished challenge: its charge's reference, what the charge became, and where the
    customer goes next."""

    reference: str
    result: ChargeResult
    return_url: str | None


class SimulatorProcessor:
    """The contract's test-mode processor. With a `DatabaseSimulatorStore` every server
    process and host agrees on what was charged, as a real processor would."""

    name = "simulator"

    def __init__(
        self,
        store: SimulatorStore | None = None,
        *,
        delay_seconds: float = 0.0,
        public_url: str = "http://127.0.0.1:8000",
        clock: Callable[[], datetime] = utcnow,
        challenge_ttl: timedelta = CHALLENGE_TTL,
    ) -> None:
        self._store = store or MemorySimulatorStore()
        self._delay = delay_seconds  # a network's latency, for load and crash tests
        self._public_url = public_url.rstrip("/")
        self._clock = clock
        self._challenge_ttl = challenge_ttl
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

    def challenge_url(self, token: str) -> str:
        return f"{self._public_url}{CHALLENGE_PATH}{token}"

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
        number = request.card.number if request.card is not None else None
        processor_reference = f"sim_ch_{random_hex()}"
        if number in AUTHENTICATING_CARDS:
            kept = await self._store.put_charge(
                request.reference,
                ChargeResult(Outcome.REQUIRES_ACTION, processor_reference),
                request.amount,
                request.currency,
                manual=not request.capture,
                failure_after_action=AUTHENTICATING_CARDS[number],
            )
            if kept.outcome is Outcome.REQUIRES_ACTION:
                await self._store.put_challenge(
                    Challenge(
                        token=secrets.token_urlsafe(32),
                        reference=request.reference,
                        status="open",
                        amount=request.amount,
                        currency=request.currency,
                        return_url=request.return_url,
                        expires_at=self._clock() + self._challenge_ttl,
                    )
                )
            return await self._answer(request.reference, kept)
        failure = self._decide(request)
        if failure:
            outcome = Outcome.FAILED
        else:
            outcome = Outcome.SUCCEEDED if request.capture else Outcome.AUTHORIZED
        result = ChargeResult(
            outcome=outcome,
            processor_reference=processor_reference,
            failure_code=failure,
            failure_message=FAILURE_MESSAGES[failure] if failure else None,
        )
        return await self._store.put_charge(
            request.reference,
            result,
            request.amount,
            request.currency,
            manual=not request.capture,
        )

    async def _answer(self, reference: str, result: ChargeResult) -> ChargeResult:
        """`result`, with where the customer goes when it waits for them: an open challenge
        past its expiry fails the charge (`authentication_failed`) first."""
        if result.outcome is not Outcome.REQUIRES_ACTION:
            return result
        challenge = await self._store.challenge_of(reference)
        if challenge is None:  # the challenge is written right after the charge
            return result
        now = self._clock()
        if challenge.status == "open" and challenge.expires_at <= now:
            if await self._store.finish_challenge(challenge.token, "expired", now, unexpired=False):
                await self._store.move_charge(
                    reference,
                    _WAITING,
                    Outcome.FAILED,
                    failure_code=FailureCode.AUTHENTICATION_FAILED,
                )
            return await self._settled(reference, result)
        return ChargeResult(
            outcome=result.outcome,
            processor_reference=result.processor_reference,
            next_action=NextAction(url=self.challenge_url(challenge.token)),
        )

    async def _settled(self, reference: str, fallback: ChargeResult) -> ChargeResult:
        current = await self._store.get_charge(reference)
        return fallback if current is None else current

    async def challenge(self, token: str) -> Challenge | None:
        """The challenge behind a page's token (any status; `expired` once an open one is
        past its expiry), for the page to show."""
        challenge = await self._store.get_challenge(token)
        open_ = challenge is not None and challenge.status == "open"
        if challenge is not None and open_ and challenge.expires_at <= self._clock():
            return dataclasses.replace(challenge, status="expired")
        return challenge

    async def finish_challenge(self, token: str, *, authenticated: bool) -> ChallengeAnswer | None:
        """The customer completes (or fails) the challenge: once. The charge then succeeds,
        is authorized (manual capture) or fails; None when the challenge is unknown, already
        finished or expired — a second click, a reload or a second tab changes nothing."""
        now = self._clock()
        status = "completed" if authenticated else "failed"
        challenge = await self._store.finish_challenge(token, status, now, unexpired=True)
        if challenge is None:
            return None
        record = await self._store.get_charge_record(challenge.reference)
        if record is None:
            return None
        failure: FailureCode | None
        if not authenticated:
            failure = FailureCode.AUTHENTICATION_FAILED
        else:
            failure = record.failure_after_action
        if failure is not None:
            outcome = Outcome.FAILED
        else:
            outcome = Outcome.AUTHORIZED if record.manual else Outcome.SUCCEEDED
        moved = await self._store.move_charge(
            challenge.reference, _WAITING, outcome, failure_code=failure
        )
        result = moved or await self._settled(challenge.reference, record.result)
        return ChallengeAnswer(challenge.reference, result, challenge.return_url)

    async def capture(self, request: CaptureRequest) -> ChargeResult:
        if self._delay:
            await asyncio.sleep(self._delay)
        captured = await self._store.move_charge(
            request.reference, _CAPTURABLE, Outcome.SUCCEEDED, amount_captured=request.amount
        )
        if captured is not None:
            return captured
        current = await self._store.get_charge(request.reference)
        if current is None:
            return ChargeResult(
                Outcome.FAILED,
                request.reference,
                FailureCode.PROCESSING_ERROR,
                "There is no authorization to capture.",
            )
        if current.outcome is Outcome.AUTHORIZED:  # asked for more than was authorized
            return ChargeResult(
                Outcome.FAILED,
                current.processor_reference,
                FailureCode.PROCESSING_ERROR,
                "The capture exceeds the authorized amount.",
            )
        return current  # captured already (answer that capture), voided, or failed

    async def void(self, reference: str) -> ChargeResult:
        voided = await self._store.move_charge(reference, _VOIDABLE, Outcome.VOIDED)
        if voided is not None:
            record = await self._store.get_charge_record(reference)
            kassa_reference = record.reference if record is not None else reference
            challenge = await self._store.challenge_of(kassa_reference)
            if challenge is not None:
                await self._store.finish_challenge(
                    challenge.token, "voided", self._clock(), unexpired=False
                )
            return voided
        current = await self._store.get_charge(reference)
        # Nothing was ever charged under the reference: nothing to release.
        return current or ChargeResult(Outcome.VOIDED, reference)

    async def refund(self, request: RefundRequest) -> RefundResult:
        result = RefundResult(
            outcome=Outcome.SUCCEEDED, processor_reference=f"sim_re_{random_hex()}"
        )
        return await self._store.put_refund(
            request.reference, result, request.charge_reference, request.amount, request.currency
        )

    async def lookup_charge(self, reference: str) -> ChargeResult | None:
        record = await self._store.get_charge_record(reference)
        if record is None:
            return None
        return await self._answer(record.reference or reference, record.result)
