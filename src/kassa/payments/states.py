"""The payment state machine, as one explicit table.

```
pending ─process─▶ processing ─▶ completed ─refund (part)─▶ partially_refunded ─▶ refunded
   │                 ▲  │  │ └──▶ failed        └───────refund (all)─────────────────▶ refunded
   │                 │  │  └───▶ canceled (a void or an expired authorization)
   │                 │  ├──────▶ requires_capture ─capture / cancel─┐
   │                 │  └──────▶ requires_action ─authenticated / cancel─┐
   │                 └──────────────────────────────────────────────────┴┘
   └─cancel─▶ canceled
```
`processing` lasts while the processor is asked — to charge or authorize, to capture, or to
void — and the payment's `processor_step` says which, so a crash in between is settled by
reconciliation repeating that same step under the same reference. A manual-capture payment is
authorized into `requires_capture`; a card that asks for 3-D Secure waits in
`requires_action` until the customer has authenticated (or failed to).

Every status change in the code goes through a conditional update whose `WHERE status IN`
comes from `sources_of` (or a subset of it), so the database, not Python, decides a race.
"""

from __future__ import annotations

from enum import StrEnum


class PaymentStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    REQUIRES_ACTION = "requires_action"
    REQUIRES_CAPTURE = "requires_capture"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


class ProcessorStep(StrEnum):
    """What a `processing` payment is asking the processor."""

    CHARGE = "charge"  # charge, or authorize a manual-capture payment; or resume after 3DS
    CAPTURE = "capture"
    VOID = "void"


class CaptureMethod(StrEnum):
    AUTOMATIC = "automatic"
    MANUAL = "manual"


TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    PaymentStatus.PENDING: frozenset({PaymentStatus.PROCESSING, PaymentStatus.CANCELED}),
    PaymentStatus.PROCESSING: frozenset(
        {
            PaymentStatus.COMPLETED,
            PaymentStatus.FAILED,
            PaymentStatus.REQUIRES_ACTION,
            PaymentStatus.REQUIRES_CAPTURE,
            PaymentStatus.CANCELED,
        }
    ),
    # Authenticated (or not), or canceled: the processor is asked again either way.
    PaymentStatus.REQUIRES_ACTION: frozenset({PaymentStatus.PROCESSING}),
    # Captured or voided: the processor is asked either way.
    PaymentStatus.REQUIRES_CAPTURE: frozenset({PaymentStatus.PROCESSING}),
    PaymentStatus.COMPLETED: frozenset({PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED}),
    # A further partial refund leaves a payment partially refunded: no transition.
    PaymentStatus.PARTIALLY_REFUNDED: frozenset({PaymentStatus.REFUNDED}),
    PaymentStatus.FAILED: frozenset(),
    PaymentStatus.CANCELED: frozenset(),
    PaymentStatus.REFUNDED: frozenset(),
}

# Which step may start from which status: `process` only from pending, a capture only from an
# authorization, a void from an authorization or a payment waiting for its customer.
STEP_SOURCES: dict[ProcessorStep, frozenset[PaymentStatus]] = {
    ProcessorStep.CHARGE: frozenset({PaymentStatus.PENDING}),
    ProcessorStep.CAPTURE: frozenset({PaymentStatus.REQUIRES_CAPTURE}),
    ProcessorStep.VOID: frozenset({PaymentStatus.REQUIRES_CAPTURE, PaymentStatus.REQUIRES_ACTION}),
}
# Where a customer's return after authentication resumes the charge step from.
RESUMABLE = frozenset({PaymentStatus.REQUIRES_ACTION})
# Statuses `cancel` accepts (the pending one without asking the processor).
CANCELABLE = frozenset({PaymentStatus.PENDING}) | STEP_SOURCES[ProcessorStep.VOID]

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
    """The status of a completed payment once `amount_refunded` has succeeded in total;
    `amount` is what was captured."""
    if not 0 < amount_refunded <= amount:
        raise ValueError("refunded total must be positive and at most the amount")
    return PaymentStatus.REFUNDED if amount_refunded == amount else PaymentStatus.PARTIALLY_REFUNDED
