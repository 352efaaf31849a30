from enum import StrEnum


class CardPaymentRequestCaptureType0(StrEnum):
    AUTOMATIC = "automatic"
    MANUAL = "manual"

    def __str__(self) -> str:
        return str(self.value)
