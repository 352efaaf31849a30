from __future__ import annotations

from kassa.errors import FieldError, InvalidState, KassaError


class PaymentNotRefundable(InvalidState):
    def __init__(self, status: str) -> None:
        super().__init__(
            f"Only a completed or partially refunded payment can be refunded; this one is {status}."
        )


class RefundExceedsRefundable(KassaError):
    def __init__(self, refundable: int, currency: str) -> None:
        super().__init__(
            "amount_exceeds_refundable",
            422,
            f"The refund exceeds what is left to refund ({refundable} {currency} minor units).",
            title="Amount Exceeds Refundable",
            errors=[FieldError("amount", f"must be at most {refundable}")],
        )
