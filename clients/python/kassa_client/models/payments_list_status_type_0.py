from enum import StrEnum


class PaymentsListStatusType0(StrEnum):
    CANCELED = "canceled"
    COMPLETED = "completed"
    FAILED = "failed"
    PARTIALLY_REFUNDED = "partially_refunded"
    PENDING = "pending"
    PROCESSING = "processing"
    REFUNDED = "refunded"

    def __str__(self) -> str:
        return str(self.value)
