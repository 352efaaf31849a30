"""Scopes: a key without the scope an operation needs gets 403 `insufficient_scope` and changes
nothing; a login token holds every scope. Modes: a key acts in its own mode, a login token in
test mode unless the request says `Kassa-Mode: live`; anything else is refused."""

from __future__ import annotations

import uuid

import pytest

from tests.apikeys.keys import create_key
from tests.conftest import Api, completed_payment, payment_body, register_user


def _assert_insufficient(response: object, scope: str) -> None:
    assert response.status_code == 403, response.text  # type: ignore[attr-defined]
    problem = response.json()  # type: ignore[attr-defined]
    assert problem["code"] == "insufficient_scope"
    assert f"`{scope}`" in problem["detail"]


async def test_a_read_only_key_reads_but_cannot_write(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user)
    key = await create_key(api.client, user, scopes=["read"])
    for path in (
        f"/api/payments/{payment['id']}",
        f"/api/payments/{payment['id']}/status",
        "/api/transactions",
        "/api/events",
        "/api/webhooks",
    ):
        response = await api.client.get(path, headers=key.headers)
        assert response.status_code == 200, (path, response.text)
    writes = [
        ("/api/payments", payment_body(), "payments"),
        ("/api/payments/process", {"payment_id": payment["id"]}, "payments"),
        (f"/api/payments/{payment['id']}/cancel", None, "payments"),
        (f"/api/payments/{payment['id']}/refund", {"amount": 100}, "refunds"),
        ("/api/webhooks", {"url": "https://example.com/hook", "events": ["*"]}, "webhooks"),
    ]
    for path, body, scope in writes:
        response = await api.client.post(path, json=body, headers=key.headers)
        _assert_insufficient(response, scope)
    after = await api.client.get(f"/api/payments/{payment['id']}", headers=user.headers)
    assert after.json()["amount_refunded"] == 0
    assert (await api.client.get("/api/webhooks", headers=user.headers)).json()["data"] == []


async def test_a_payments_key_cannot_read_refund_or_manage_webhooks(api: Api) -> None:
    user = await register_user(api.client)
    key = await create_key(api.client, user, scopes=["payments"])
    created = await api.client.post("/api/payments", json=payment_body(), headers=key.headers)
    assert created.status_code == 201, created.text
    payment_id = created.json()["id"]
    processed = await api.client.post(
        "/api/payments/process", json={"payment_id": payment_id}, headers=key.headers
    )
    assert processed.status_code == 200, processed.text
    _assert_insufficient(
        await api.client.get(f"/api/payments/{payment_id}", headers=key.headers), "read"
    )
    _assert_insufficient(await api.client.get("/api/transactions", headers=key.headers), "read")
    _assert_insufficient(
        await api.client.post(f"/api/payments/{payment_id}/refund", headers=key.headers),
        "refunds",
    )
    _assert_insufficient(
        await api.client.delete(f"/api/webhooks/{uuid.uuid4()}", headers=key.headers),
        "webhooks",
    )


async def test_a_refunds_key_refunds_and_a_webhooks_key_manages_endpoints(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user)
    refunds = await create_key(api.client, user, scopes=["refunds"])
    refunded = await api.client.post(
        f"/api/payments/{payment['id']}/refund", json={"amount": 50}, headers=refunds.headers
    )
    assert refunded.status_code == 201, refunded.text
    hooks = await create_key(api.client, user, scopes=["webhooks"])
    event_id = str(uuid.uuid4())
    redeliver = await api.client.post(f"/api/events/{event_id}/redeliver", headers=hooks.headers)
    assert redeliver.status_code == 404  # past the scope check: the event is unknown
    _assert_insufficient(
        await api.client.post(f"/api/events/{event_id}/redeliver", headers=refunds.headers),
        "webhooks",
    )


async def test_a_scope_refusal_says_nothing_about_the_object(api: Api) -> None:
    """Another user's payment and an unknown one are refused alike: 403 before any lookup."""
    owner = await register_user(api.client)
    theirs = await completed_payment(api.client, owner)
    user = await register_user(api.client)
    key = await create_key(api.client, user, scopes=["read"])
    for payment_id in (theirs["id"], str(uuid.uuid4())):
        response = await api.client.post(f"/api/payments/{payment_id}/refund", headers=key.headers)
        _assert_insufficient(response, "refunds")


async def test_kassa_mode_chooses_the_mode_of_a_login_token(api: Api) -> None:
    from kassa.auth.middleware import Authentication, AuthenticationMiddleware

    user = await register_user(api.client)
    key = await create_key(api.client, user, mode="live")
    middleware = AuthenticationMiddleware(
        app=None,  # type: ignore[arg-type]
        auth=api.container.auth,
        keys=api.container.keys,
    )

    async def mode_of(token: str, header: str | None) -> bool:
        headers = [(b"kassa-mode", header.encode())] if header is not None else []
        principal, _owed = await middleware._authenticate(
            {"headers": headers}, token, Authentication()
        )
        return principal.livemode

    assert await mode_of(user.access_token, None) is False
    assert await mode_of(user.access_token, "test") is False
    assert await mode_of(user.access_token, "live") is True
    assert await mode_of(user.access_token, " Live ") is True
    assert await mode_of(key.secret, None) is True
    assert await mode_of(key.secret, "live") is True


@pytest.mark.parametrize("mode", ["prod", "", "true", "1"])
async def test_an_unknown_kassa_mode_is_422(api: Api, mode: str) -> None:
    user = await register_user(api.client)
    response = await api.client.get(
        "/api/transactions", headers={**user.headers, "Kassa-Mode": mode}
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_mode"


async def test_a_key_naming_the_other_mode_is_422(api: Api) -> None:
    user = await register_user(api.client)
    test_key = await create_key(api.client, user, mode="test")
    live_key = await create_key(api.client, user, mode="live")
    for key, other in ((test_key, "live"), (live_key, "test")):
        response = await api.client.post(
            "/api/payments", json=payment_body(), headers={**key.headers, "Kassa-Mode": other}
        )
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "invalid_mode"


async def test_a_bad_token_with_a_bad_mode_is_401_first(api: Api) -> None:
    response = await api.client.get(
        "/api/transactions", headers={"Authorization": "Bearer sk_test_x", "Kassa-Mode": "x"}
    )
    assert response.status_code == 401


async def test_an_idempotency_key_of_one_mode_never_answers_the_other(api: Api) -> None:
    user = await register_user(api.client)
    test_key = await create_key(api.client, user, mode="test")
    live_key = await create_key(api.client, user, mode="live")
    idem = {"Idempotency-Key": f"order-{uuid.uuid4().hex}"}
    first = await api.client.post(
        "/api/payments", json=payment_body(), headers={**test_key.headers, **idem}
    )
    assert first.status_code == 201, first.text
    replay = await api.client.post(
        "/api/payments", json=payment_body(), headers={**user.headers, **idem}
    )
    assert replay.headers.get("idempotent-replayed") == "true"  # same user, same mode
    for headers in (live_key.headers, {**user.headers, "Kassa-Mode": "live"}):
        other = await api.client.post(
            "/api/payments", json=payment_body(), headers={**headers, **idem}
        )
        assert other.status_code == 422, other.text
        assert other.json()["code"] == "idempotency_key_reused"
