from enum import StrEnum


class WalletPaymentRequestCapture(StrEnum):
    AUTOMATIC = "automatic"
    MANUAL = "manual"

    def __str__(self) -> str:
        return str(self.value)
