from enum import StrEnum


class ApiKeyScope(StrEnum):
    CHECKOUT = "checkout"
    PAYMENTS = "payments"
    READ = "read"
    REFUNDS = "refunds"
    WEBHOOKS = "webhooks"

    def __str__(self) -> str:
        return str(self.value)
