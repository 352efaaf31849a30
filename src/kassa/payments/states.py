"""The payment state machine, as one explicit table.

```
pending ─process─▶ processing ─▶ completed ─refund (part)─▶ partially_refunded ─▶ refunded
   │                   └───────▶ failed        └───────refund (all)─────────────────▶ refunded
   └─cancel─▶ canceled
```
Every status change in the code goes through a conditional update whose `WHERE status IN`
comes from `sources_of`, so the database, not Python, decides a race.
"""

from __future__ import annotations

from enum import StrEnum


class PaymentStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    PaymentStatus.PENDING: frozenset({PaymentStatus.PROCESSING, PaymentStatus.CANCELED}),
    PaymentStatus.PROCESSING: frozenset({PaymentStatus.COMPLETED, PaymentStatus.FAILED}),
    PaymentStatus.COMPLETED: frozenset({PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED}),
    # A further partial refund leaves a payment partially refunded: no transition.
    PaymentStatus.PARTIALLY_REFUNDED: frozenset({PaymentStatus.REFUNDED}),
    PaymentStatus.FAILED: frozenset(),
    PaymentStatus.CANCELED: frozenset(),
    PaymentStatus.REFUNDED: frozenset(),
}

TERMINAL = frozenset(s for s, targets in TRANSITIONS.items() if not targets)
REFUNDABLE = frozenset({PaymentStatus.COMPLETED, PaymentStatus.PARTIALLY_REFUNDED})
# Statuses whose charge succeeded: money moved, and the ledger holds the charge.
CHARGED = REFUNDABLE | {PaymentStatus.REFUNDED}


def can_transition(source: PaymentStatus, target: PaymentStatus) -> bool:
    return target in TRANSITIONS[source]


def sources_of(target: PaymentStatus) -> frozenset[PaymentStatus]:
    """Every status from which `target` may be reached in one step."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)


def status_after_refund(amount: int, amount_refunded: int) -> PaymentStatus:
    """The status of a completed payment once `amount_refunded` has succeeded in total."""
    if not 0 < amount_refunded <= amount:
        raise ValueError("refunded total must be positive and at most the amount")
    return PaymentStatus.REFUNDED if amount_refunded == amount else PaymentStatus.PARTIALLY_REFUNDED
