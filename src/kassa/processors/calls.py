"""One call to the payment processor, timed, traced and counted the same way everywhere."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog

from kassa.db import release_held_connection
from kassa.observability.metrics import PROCESSOR_CALLS
from kassa.observability.tracing import processor_span
from kassa.processors.base import ChargeDeclined, ProcessorUnavailable

log = structlog.get_logger("kassa.processors")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Answer(Generic[T]):
    """What the processor answered (which may itself be None, e.g. nothing to prepare)."""

    value: T


async def call_processor(
    processor: str,
    operation: str,
    call: Awaitable[T],
    *,
    seconds: float,
    reference: str,
    outcome: Callable[[T], str],
) -> Answer[T] | None:
    """The processor's answer, or None when it is unknown: no answer in time, the processor
    unreachable, or an exception nobody expected from a connector. Whether money moved is
    unknown then, so callers leave the payment or refund for reconciliation, never failed.

    A ChargeDeclined passes through (recorded under the outcome it carries): the processor
    answered, and the answer is no."""
    # The processor may take seconds to answer: the request's connection goes back to the
    # pool meanwhile (the simulator's own record, if any, takes one as any statement does).
    await release_held_connection()
    started = asyncio.get_running_loop().time()
    label = "unknown"
    with processor_span(processor, operation) as record_outcome:
        try:
            result = await asyncio.wait_for(call, timeout=seconds)
            label = outcome(result)
            return Answer(result)
        except ChargeDeclined as declined:
            label = declined.result.outcome.value
            raise
        except (ProcessorUnavailable, TimeoutError):
            return None
        except Exception:
            log.exception("processor_error", operation=operation, reference=reference)
            return None
        finally:
            record_outcome(label)
            PROCESSOR_CALLS.labels(processor, operation, label).observe(
                asyncio.get_running_loop().time() - started
            )
