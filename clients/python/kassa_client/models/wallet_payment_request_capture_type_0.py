from enum import StrEnum


class WalletPaymentRequestCaptureType0(StrEnum):
    AUTOMATIC = "automatic"
    MANUAL = "manual"

    def __str__(self) -> str:
        return str(self.value)
