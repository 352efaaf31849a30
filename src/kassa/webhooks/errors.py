from __future__ import annotations

from kassa.errors import FieldError, KassaError, NotFound


class WebhookNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("webhook endpoint")
        self.code = "webhook_not_found"
        self.title = "Webhook Endpoint Not Found"


class WebhookUrlRefused(KassaError):
    """The URL's host is (or resolves to) an address webhooks are never sent to."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            "webhook_url_refused",
            422,
            f"Webhooks cannot be sent to this URL: {reason}.",
            title="Webhook URL Refused",
            errors=[FieldError("url", reason)],
        )


class TooManyWebhooks(KassaError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            "webhook_limit_reached",
            422,
            f"An account can have at most {limit} webhook endpoints; delete one first.",
            title="Webhook Limit Reached",
        )
