from __future__ import annotations

from kassa.errors import FieldError, InvalidState, KassaError, NotFound, ValidationFailed


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


class PaymentNotCapturable(InvalidState):
    def __init__(self, status: str) -> None:
        super().__init__(
            f"Only an authorized payment (requires_capture) can be captured; this one is {status}."
        )


class PaymentNotCancelable(InvalidState):
    def __init__(self, status: str) -> None:
        super().__init__(
            "Only a pending, requires_action or requires_capture payment can be canceled; "
            f"this one is {status}."
        )


class CaptureExceedsAuthorized(KassaError):
    def __init__(self, authorized: int, currency: str) -> None:
        super().__init__(
            "amount_exceeds_capturable",
            422,
            f"The capture exceeds the authorized amount ({authorized} {currency} minor units).",
            title="Amount Exceeds Capturable",
            errors=[FieldError("amount", f"must be at most {authorized}")],
        )


class ReturnUrlNotAllowed(ValidationFailed):
    def __init__(self) -> None:
        super().__init__([FieldError("return_url", "must be an https URL")])
