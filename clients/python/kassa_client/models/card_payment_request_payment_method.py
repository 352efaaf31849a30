from enum import StrEnum


class CardPaymentRequestPaymentMethod(StrEnum):
    CREDIT_CARD = "credit_card"
    DEBIT_CARD = "debit_card"

    def __str__(self) -> str:
        return str(self.value)
