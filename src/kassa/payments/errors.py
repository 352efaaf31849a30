from __future__ import annotations

from kassa.errors import FieldError, InvalidState, NotFound, ValidationFailed


class PaymentNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("payment")
        self.code = "payment_not_found"
        self.title = "Payment Not Found"


class PaymentNotPending(InvalidState):
    def __init__(self, action: str, status: str) -> None:
        super().__init__(f"Only a pending payment can be {action}; this one is {status}.")


class AmountTooLarge(ValidationFailed):
    def __init__(self, maximum: int) -> None:
        super().__init__([FieldError("amount", f"must be at most {maximum}")])
