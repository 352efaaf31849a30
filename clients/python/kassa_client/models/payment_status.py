from enum import StrEnum


class PaymentStatus(StrEnum):
    CANCELED = "canceled"
    COMPLETED = "completed"
    FAILED = "failed"
    PARTIALLY_REFUNDED = "partially_refunded"
    PENDING = "pending"
    PROCESSING = "processing"
    REFUNDED = "refunded"
    REQUIRES_ACTION = "requires_action"
    REQUIRES_CAPTURE = "requires_capture"

    def __str__(self) -> str:
        return str(self.value)
