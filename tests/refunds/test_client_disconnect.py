"""A client that disconnects before its request body is whole changes nothing.

Found by the benchmark: when wrk stopped mid-run, a partial refund whose connection closed
while it queued was run with an empty body, and a refund without an amount refunds what is
left — a full refund nobody asked for."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.types import Message

from kassa.app import create_app
from tests.conftest import Api, User, completed_payment, register_user

PARTIAL = json.dumps({"amount": 1000}).encode()


def _scope(path: str, user: User, idempotency_key: str | None) -> dict[str, Any]:
    headers = [
        (b"host", b"kassa.test"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(PARTIAL)).encode()),
        *[(k.lower().encode(), v.encode()) for k, v in user.headers.items()],
    ]
    if idempotency_key is not None:
        headers.append((b"idempotency-key", idempotency_key.encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("kassa.test", 80),
    }


def _receiving(messages: list[Message]) -> Any:
    pending = list(messages)

    async def receive() -> Message:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    return receive


@pytest.mark.parametrize("idempotency_key", ["refund-after-disconnect", None])
@pytest.mark.parametrize(
    "arrived",
    [
        [],  # the connection closed before any of the body
        [{"type": "http.request", "body": PARTIAL[:10], "more_body": True}],  # part of it
    ],
    ids=["no-body", "part-of-the-body"],
)
async def test_a_refund_whose_client_left_before_the_body_ended_refunds_nothing(
    api: Api, idempotency_key: str | None, arrived: list[Message]
) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user)
    path = f"/api/payments/{payment['id']}/refund"
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    app = create_app(container=api.container)
    await app(_scope(path, user, idempotency_key), _receiving(arrived), send)

    after = (await api.client.get(f"/api/payments/{payment['id']}", headers=user.headers)).json()
    assert after["status"] == "completed"
    assert after["amount_refunded"] == 0
    transactions = (await api.client.get("/api/transactions", headers=user.headers)).json()
    assert [t["type"] for t in transactions["data"]] == ["charge"]
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert all(m["status"] != 201 for m in starts)

    # The key was not spent: the client's retry with the whole body is the first refund.
    headers = {**user.headers, "Content-Type": "application/json"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    retry = await api.client.post(path, content=PARTIAL, headers=headers)
    assert retry.status_code == 201, retry.text
    assert retry.json()["amount"] == 1000
