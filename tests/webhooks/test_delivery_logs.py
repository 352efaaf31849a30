"""What the webhook worker logs of a delivery: the receiver's URL without its query string
(where receivers put their tokens), and never the whole URL through the HTTP client's own
request log."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from kassa.webhooks.urls import loggable_url
from tests.conftest import Api, create_payment, register_user
from tests.test_observability import json_lines
from tests.webhooks import Receiver, create_webhook

pytestmark = pytest.mark.usefixtures("clean_webhooks")
TOKEN = "tok-3f9a1c77e2"


@pytest.fixture
def stdout_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    yield
    # capsys closes its buffer after the test; park the handler until logging is set again.
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.stream = io.StringIO()


@pytest.mark.usefixtures("stdout_logs")
async def test_the_worker_logs_the_webhook_url_without_its_query_string(
    api_factory: Any, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    api: Api = await api_factory(log_level="INFO", webhook_allow_private=True)
    capsys.readouterr()
    user = await register_user(api.client)
    url = f"http://127.0.0.1:{receiver.port}/hooks/in?token={TOKEN}&source=kassa"
    await create_webhook(api.client, user, url)
    await create_payment(api.client, user)
    assert await api.container.deliveries.deliver_due(20) == 1
    assert receiver.requests[0].path == f"/hooks/in?token={TOKEN}&source=kassa"  # it went
    out = capsys.readouterr().out
    assert TOKEN not in out
    attempts = [line for line in json_lines(out) if line["event"] == "webhook_attempt"]
    assert [a["url"] for a in attempts] == [f"http://127.0.0.1:{receiver.port}/hooks/in"]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://shop.example/hooks?token=x", "https://shop.example/hooks"),
        ("https://user:pw@shop.example:8443/a/b?q#frag", "https://shop.example:8443/a/b"),
        ("https://[2001:db8::1]/h?k=v", "https://[2001:db8::1]/h"),
        ("https://shop.example", "https://shop.example/"),
        ("https://shop.example:99999/x", "(not a valid URL)"),
    ],
)
def test_loggable_url_keeps_scheme_host_port_and_path(url: str, shown: str) -> None:
    assert loggable_url(url) == shown
