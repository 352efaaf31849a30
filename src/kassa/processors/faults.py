"""A processor wrapper that injects the faults of a real network, for tests and drills.

Faults are planned per operation and used up in order, one per call:
- `LOSE_REQUEST`: the call never reaches the processor (nothing happens there);
- `LOSE_ANSWER`: the processor does the work, the answer is lost on its way back;
- `HANG`: the processor does the work and the answer never comes (the caller's timeout
  decides); the same as a read timeout;
- `SERVER_ERROR`: the processor answers 500 before doing anything.
Each surfaces to kassa the way a connector reports it: `ProcessorUnavailable`, or a caller's
`asyncio` timeout for `HANG`. A call with no fault planned passes straight through.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TypeVar

from kassa.processors.base import (
    CaptureRequest,
    ChargeRequest,
    ChargeResult,
    Processor,
    ProcessorUnavailable,
    RefundRequest,
    RefundResult,
)

T = TypeVar("T")
OPERATIONS = frozenset({"prepare_charge", "charge", "capture", "void", "refund", "lookup_charge"})


class Fault(StrEnum):
    LOSE_REQUEST = "lose_request"
    LOSE_ANSWER = "lose_answer"
    HANG = "hang"
    SERVER_ERROR = "server_error"


class FaultInjectingProcessor:
    """Wraps any `Processor`; `plan("charge", Fault.LOSE_ANSWER)` breaks the next charge."""

    def __init__(self, inner: Processor, *, hang_seconds: float = 3600.0) -> None:
        self.inner = inner
        self.name = inner.name
        self._hang_seconds = hang_seconds
        self._plans: defaultdict[str, deque[Fault]] = defaultdict(deque)
        self.calls: defaultdict[str, int] = defaultdict(int)

    def plan(self, operation: str, *faults: Fault) -> None:
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}")
        self._plans[operation].extend(faults)

    def pending(self, operation: str) -> int:
        """Faults planned for `operation` and not used yet."""
        return len(self._plans[operation])

    async def _run(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        self.calls[operation] += 1
        plan = self._plans[operation]
        fault = plan.popleft() if plan else None
        if fault is Fault.LOSE_REQUEST:
            raise ProcessorUnavailable(f"{operation}: connection reset before the request")
        if fault is Fault.SERVER_ERROR:
            raise ProcessorUnavailable(f"{operation}: HTTP 500")
        result = await call()
        if fault is Fault.LOSE_ANSWER:
            raise ProcessorUnavailable(f"{operation}: connection reset after the request")
        if fault is Fault.HANG:
            await asyncio.sleep(self._hang_seconds)
            raise ProcessorUnavailable(f"{operation}: read timeout")
        return result

    async def prepare_charge(self, request: ChargeRequest) -> str | None:
        return await self._run("prepare_charge", lambda: self.inner.prepare_charge(request))

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        return await self._run("charge", lambda: self.inner.charge(request))

    async def capture(self, request: CaptureRequest) -> ChargeResult:
        return await self._run("capture", lambda: self.inner.capture(request))

    async def void(self, reference: str) -> ChargeResult:
        return await self._run("void", lambda: self.inner.void(reference))

    async def refund(self, request: RefundRequest) -> RefundResult:
        return await self._run("refund", lambda: self.inner.refund(request))

    async def lookup_charge(self, reference: str) -> ChargeResult | None:
        return await self._run("lookup_charge", lambda: self.inner.lookup_charge(reference))


def parse_faults(spec: str) -> list[tuple[str, Fault]]:
    """`operation:fault` items, comma-separated, in the order they are used up
    (`KASSA_SIMULATOR_FAULTS`, a hook for tests and drills)."""
    plan: list[tuple[str, Fault]] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        operation, _, fault = item.partition(":")
        if operation not in OPERATIONS or fault not in {f.value for f in Fault}:
            raise ValueError(f"{item!r} is not operation:fault, such as refund:hang")
        plan.append((operation, Fault(fault)))
    return plan
