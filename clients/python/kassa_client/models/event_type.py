from enum import StrEnum


class EventType(StrEnum):
    PAYMENT_CANCELED = "payment.canceled"
    PAYMENT_CAPTURED = "payment.captured"
    PAYMENT_COMPLETED = "payment.completed"
    PAYMENT_CREATED = "payment.created"
    PAYMENT_FAILED = "payment.failed"
    PAYMENT_PARTIALLY_REFUNDED = "payment.partially_refunded"
    PAYMENT_PROCESSING = "payment.processing"
    PAYMENT_REFUNDED = "payment.refunded"
    PAYMENT_REQUIRES_ACTION = "payment.requires_action"
    PAYMENT_REQUIRES_CAPTURE = "payment.requires_capture"
    REFUND_CREATED = "refund.created"

    def __str__(self) -> str:
        return str(self.value)
