from enum import StrEnum


class CardBrand(StrEnum):
    AMEX = "amex"
    DINERS = "diners"
    DISCOVER = "discover"
    JCB = "jcb"
    MASTERCARD = "mastercard"
    UNIONPAY = "unionpay"
    UNKNOWN = "unknown"
    VISA = "visa"

    def __str__(self) -> str:
        return str(self.value)
