from enum import StrEnum


class AuditAction(StrEnum):
    API_KEY_CREATED = "api_key.created"
    API_KEY_REVOKED = "api_key.revoked"
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    PASSWORD_CHANGED = "password_changed"
    PAYMENT_CANCEL_REQUESTED = "payment.cancel_requested"
    PAYMENT_CAPTURE_REQUESTED = "payment.capture_requested"
    REFUND_CREATED = "refund.created"
    WEBHOOK_ENDPOINT_CREATED = "webhook_endpoint.created"
    WEBHOOK_ENDPOINT_DELETED = "webhook_endpoint.deleted"
    WEBHOOK_ENDPOINT_SECRET_ROTATED = "webhook_endpoint.secret_rotated"

    def __str__(self) -> str:
        return str(self.value)
