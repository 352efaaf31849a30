from enum import StrEnum


class CreateCheckoutSessionRequestCapture(StrEnum):
    AUTOMATIC = "automatic"
    MANUAL = "manual"

    def __str__(self) -> str:
        return str(self.value)
