from enum import StrEnum


class TransactionType(StrEnum):
    CHARGE = "charge"
    REFUND = "refund"

    def __str__(self) -> str:
        return str(self.value)
