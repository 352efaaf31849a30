from enum import StrEnum


class WalletName(StrEnum):
    APPLE_PAY = "apple_pay"
    GOOGLE_PAY = "google_pay"
    PAYPAL = "paypal"

    def __str__(self) -> str:
        return str(self.value)
