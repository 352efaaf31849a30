"""The processor of each mode: test mode always uses the simulator (and its test cards), live
mode the configured processor (`KASSA_PROCESSOR`). Every call picks by the mode of the payment
or refund it is about, so the worker and reconciliation ask the processor that made it."""

from __future__ import annotations

from dataclasses import dataclass

from kassa.processors.base import Processor


@dataclass(frozen=True, slots=True)
class Processors:
    test: Processor
    live: Processor

    def of(self, livemode: bool) -> Processor:
        return self.live if livemode else self.test

    @classmethod
    def either(cls, processors: Processor | Processors) -> Processors:
        """`processors` as they are, or one processor for both modes (tests' doubles)."""
        if isinstance(processors, Processors):
            return processors
        return cls(test=processors, live=processors)
