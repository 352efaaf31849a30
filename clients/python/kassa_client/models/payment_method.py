from enum import StrEnum


class PaymentMethod(StrEnum):
    CREDIT_CARD = "credit_card"
    DEBIT_CARD = "debit_card"
    DIGITAL_WALLET = "digital_wallet"

    def __str__(self) -> str:
        return str(self.value)
