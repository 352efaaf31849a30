from __future__ import annotations

from kassa.errors import FieldError, InvalidState, NotFound, ValidationFailed


class CheckoutSessionNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("checkout session")
        self.code = "checkout_session_not_found"
        self.title = "Checkout Session Not Found"


class CheckoutSessionClosed(InvalidState):
    """The session takes no more payments: it is complete or expired."""

    def __init__(self, status: str) -> None:
        super().__init__(f"This checkout session is {status}; it takes no more payments.")
        self.session_status = status


class CheckoutAmountTooLarge(ValidationFailed):
    def __init__(self, maximum: int) -> None:
        super().__init__([FieldError("amount", f"must be at most {maximum}")])
