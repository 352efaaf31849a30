"""No key secret, in any form that could be replayed, appears anywhere kassa writes after the
create answer: run a key's whole life (create, use on every kind of request, a refused use,
revoke, a use after revoke) with DEBUG logs, then scan the database (`pg_dump`, or the SQLite
file's bytes), every log line, `/metrics`, every event and every later response body for
the secret, its random part, and its unkeyed SHA-256 (a dump holding that could be checked
against guesses offline)."""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.apikeys.keys import create_key
from tests.conftest import Api, payment_body, register_user
from tests.test_no_card_data_leaks import database_text


@pytest.fixture(autouse=True)
def _park_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    yield
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.stream = io.StringIO()
    logging.getLogger().setLevel(logging.WARNING)


async def test_no_key_secret_anywhere_after_its_create_answer(
    api_factory: Any, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    api: Api = await api_factory(log_level="DEBUG", webhook_allow_private="true")
    capsys.readouterr()
    user = await register_user(api.client)
    key = await create_key(api.client, user)
    live = await create_key(api.client, user, mode="live", scopes=["read"])
    secrets = [key.secret, live.secret]
    bodies: list[str] = []

    async def call(method: str, path: str, headers: dict[str, str], **kwargs: Any) -> Any:
        response = await api.client.request(method, path, headers=headers, **kwargs)
        bodies.append(response.text)
        return response

    keyed = {**key.headers, "Idempotency-Key": uuid.uuid4().hex}
    created = await call("POST", "/api/payments", keyed, json=payment_body())
    await call("POST", "/api/payments", keyed, json=payment_body())  # replayed
    payment_id = created.json()["id"]
    await call("POST", "/api/payments/process", key.headers, json={"payment_id": payment_id})
    await call("POST", f"/api/payments/{payment_id}/refund", key.headers, json={"amount": 100})
    await call(
        "POST",
        "/api/webhooks",
        key.headers,
        json={"url": "http://127.0.0.1:9/hook", "events": ["*"]},
    )
    for path in (
        "/api/transactions",
        "/api/events",
        "/api/webhooks",
        f"/api/payments/{payment_id}",
    ):
        await call("GET", path, key.headers)
    await call("POST", "/api/payments", live.headers, json=payment_body())  # 403: scope
    await call("GET", "/api/keys", user.headers)
    await call("POST", "/api/keys", key.headers, json={"name": "x", "mode": "test"})  # 403
    await call("DELETE", f"/api/keys/{key.id}", user.headers)
    refused = await call("GET", "/api/transactions", key.headers)
    assert refused.status_code == 401
    await call("GET", "/api/transactions", {"Authorization": "Bearer " + key.secret[:-1]})
    metrics = (await api.client.get("/metrics")).text
    logged = capsys.readouterr()
    assert "api_key_revoked" in logged.out  # the logs were captured

    stored = database_text(database_url)
    assert "api_key" in stored  # the right database: the key table is there
    for secret in secrets:
        forms = [
            secret,
            secret.split("_", 2)[2],
            secret.split("_", 2)[2][:24],
            hashlib.sha256(secret.encode()).hexdigest(),
        ]
        raw_hash = hashlib.sha256(secret.encode()).digest().decode("latin-1")
        for where, text in (
            ("response bodies", "\n".join(bodies)),
            ("the logs", logged.out + logged.err),
            ("/metrics", metrics),
            ("the database", stored),
        ):
            for form in forms:
                assert form not in text, f"a form of the key's secret is in {where}"
        assert raw_hash not in stored
