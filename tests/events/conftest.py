from tests.webhooks.conftest import clean_webhooks

__all__ = ["clean_webhooks"]
