"""POST /api/checkout/sessions and GET /api/checkout/sessions/{id}: the contract's shapes,
owner-scoped, strict bodies."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.apikeys.keys import create_key
from tests.checkout import session_body
from tests.conftest import Api, register_user


async def test_a_session_is_created_open_with_a_url_on_kassa(api: Api) -> None:
    user = await register_user(api.client)
    response = await api.client.post(
        "/api/checkout/sessions",
        json=session_body(description="Order 1001", metadata={"order_id": "1001"}),
        headers=user.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "open"
    assert body["amount"] == 2500
    assert body["currency"] == "EUR"
    assert body["payment_id"] is None
    assert body["livemode"] is False
    assert body["capture"] == "automatic"
    assert body["metadata"] == {"order_id": "1001"}
    assert body["url"] == f"http://kassa.test/checkout/{body['id']}"
    assert uuid.UUID(body["id"]).version == 4  # 122 random bits: unguessable
    created = datetime.fromisoformat(body["created_at"])
    assert datetime.fromisoformat(body["expires_at"]) - created == timedelta(hours=24)

    fetched = await api.client.get(f"/api/checkout/sessions/{body['id']}", headers=user.headers)
    assert fetched.status_code == 200
    assert fetched.json() == body


async def test_the_url_starts_with_the_public_url_when_one_is_set(api_factory: Any) -> None:
    api = await api_factory(public_url="https://pay.example.com/")
    user = await register_user(api.client)
    response = await api.client.post(
        "/api/checkout/sessions", json=session_body(), headers=user.headers
    )
    assert response.json()["url"] == f"https://pay.example.com/checkout/{response.json()['id']}"


async def test_the_expiry_follows_the_setting(api_factory: Any) -> None:
    api = await api_factory(checkout_session_ttl_seconds=3600)
    user = await register_user(api.client)
    body = (
        await api.client.post("/api/checkout/sessions", json=session_body(), headers=user.headers)
    ).json()
    lifetime = datetime.fromisoformat(body["expires_at"]) - datetime.fromisoformat(
        body["created_at"]
    )
    assert lifetime == timedelta(hours=1)


async def test_creating_a_session_needs_a_login(api: Api) -> None:
    response = await api.client.post("/api/checkout/sessions", json=session_body())
    assert response.status_code == 401


async def test_another_users_session_is_not_found(api: Api) -> None:
    owner = await register_user(api.client)
    other = await register_user(api.client)
    created = await api.client.post(
        "/api/checkout/sessions", json=session_body(), headers=owner.headers
    )
    session_id = created.json()["id"]
    for path in (session_id, str(uuid.uuid4()), "not-an-id"):
        response = await api.client.get(f"/api/checkout/sessions/{path}", headers=other.headers)
        assert response.status_code == 404, path
        assert response.json()["code"] == "checkout_session_not_found"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"status": "complete"}, "status"),
        ({"payment_id": str(uuid.uuid4())}, "payment_id"),
        ({"amount": 10.5}, "amount"),
        ({"amount": 0}, "amount"),
        ({"amount": 100_000_000}, "amount"),
        ({"currency": "XXX"}, "currency"),
        ({"success_url": "javascript:alert(1)"}, "success_url"),
        ({"success_url": "/thanks"}, "success_url"),
        ({"cancel_url": "https://user:pw@shop.example/"}, "cancel_url"),
        ({"cancel_url": "https://shop.example/a b"}, "cancel_url"),
        ({"description": "card 4242 4242 4242 4242"}, "description"),
        ({"capture": "later"}, "capture"),
    ],
)
async def test_a_bad_body_is_refused(api: Api, overrides: dict[str, Any], field: str) -> None:
    user = await register_user(api.client)
    response = await api.client.post(
        "/api/checkout/sessions", json=session_body(**overrides), headers=user.headers
    )
    assert response.status_code == 422, response.text
    assert any(error["field"].startswith(field) for error in response.json()["errors"])


async def test_an_api_key_opens_sessions_of_its_own_mode(api: Api) -> None:
    user = await register_user(api.client)
    live = await create_key(api.client, user, mode="live", scopes=["checkout"])
    created = await api.client.post(
        "/api/checkout/sessions", json=session_body(), headers=live.headers
    )
    assert created.status_code == 201, created.text
    assert created.json()["livemode"] is True
    path = f"/api/checkout/sessions/{created.json()['id']}"
    # Invisible to a caller acting in test mode: the login token by default, a test key.
    test_key = await create_key(api.client, user, mode="test")
    for headers in (user.headers, test_key.headers):
        assert (await api.client.get(path, headers=headers)).status_code == 404
    live_login = {**user.headers, "Kassa-Mode": "live"}
    assert (await api.client.get(path, headers=live_login)).status_code == 200
    # A key reads what it made only with the read scope.
    refused = await api.client.get(path, headers=live.headers)
    assert refused.status_code == 403
    assert refused.json()["code"] == "insufficient_scope"


async def test_a_key_without_the_checkout_scope_is_refused(api: Api) -> None:
    user = await register_user(api.client)
    key = await create_key(api.client, user, scopes=["payments", "read"])
    response = await api.client.post(
        "/api/checkout/sessions", json=session_body(), headers=key.headers
    )
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"
