from enum import StrEnum


class ProblemCode(StrEnum):
    AMOUNT_EXCEEDS_REFUNDABLE = "amount_exceeds_refundable"
    BAD_REQUEST = "bad_request"
    CORS_PREFLIGHT_REFUSED = "cors_preflight_refused"
    DUPLICATE_KEY = "duplicate_key"
    EMAIL_TAKEN = "email_taken"
    EVENT_NOT_FOUND = "event_not_found"
    FORBIDDEN = "forbidden"
    HEADERS_TOO_LARGE = "headers_too_large"
    HTTP_ERROR = "http_error"
    IDEMPOTENCY_KEY_IN_USE = "idempotency_key_in_use"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    INTERNAL_ERROR = "internal_error"
    INVALID_CREDENTIALS = "invalid_credentials"
    INVALID_IDEMPOTENCY_KEY = "invalid_idempotency_key"
    INVALID_REFRESH_TOKEN = "invalid_refresh_token"
    INVALID_STATE = "invalid_state"
    JSON_TOO_DEEP = "json_too_deep"
    MALFORMED_JSON = "malformed_json"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_ACCEPTABLE = "not_acceptable"
    NOT_FOUND = "not_found"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    PAYMENT_NOT_FOUND = "payment_not_found"
    RATE_LIMITED = "rate_limited"
    SERVICE_UNAVAILABLE = "service_unavailable"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    UNAUTHORIZED = "unauthorized"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    VALIDATION_ERROR = "validation_error"
    WEBHOOK_LIMIT_REACHED = "webhook_limit_reached"
    WEBHOOK_NOT_FOUND = "webhook_not_found"
    WEBHOOK_URL_REFUSED = "webhook_url_refused"

    def __str__(self) -> str:
        return str(self.value)
