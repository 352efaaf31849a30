"""Cancel, status and get: who may see a payment, and which moves its state allows."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import (
    Api,
    card_details,
    completed_payment,
    create_payment,
    payment_body,
    register_user,
)
from tests.payments import (
    PAYMENT_KEYS,
    STATUS_KEYS,
    assert_invalid,
    assert_problem,
    count_payments,
)

UNKNOWN_ID = "3f2a1b0c-9d8e-4f7a-8b6c-5d4e3f2a1b0c"
MALFORMED_IDS = [
    "abc",
    "123",
    "3f2a1b0c9d8e4f7a8b6c5d4e3f2a1b0",
    "3f2a1b0c-9d8e-4f7a-8b6c-5d4e3f2a1b0g",
]


async def _request(api: Api, route: str, payment_id: str, headers: dict[str, str]) -> Any:
    base = f"/api/payments/{payment_id}"
    if route == "get":
        return await api.client.get(base, headers=headers)
    if route == "status":
        return await api.client.get(f"{base}/status", headers=headers)
    if route == "cancel":
        return await api.client.post(f"{base}/cancel", headers=headers)
    return await api.client.post(f"{base}/refund", json={}, headers=headers)


ROUTES = ["get", "status", "cancel", "refund"]


async def test_cancel_of_a_pending_payment_answers_canceled(api: Api) -> None:
    user = await register_user(api.client)
    payment = await create_payment(api.client, user)
    response = await api.client.post(f"/api/payments/{payment['id']}/cancel", headers=user.headers)
    assert response.status_code == 200, response.text
    assert set(response.json()) == PAYMENT_KEYS
    assert response.json()["status"] == "canceled"
    assert response.json()["amount_refunded"] == 0
    fetched = await api.client.get(f"/api/payments/{payment['id']}", headers=user.headers)
    assert fetched.json() == response.json()


async def test_cancel_creates_no_transaction(api: Api) -> None:
    user = await register_user(api.client)
    payment = await create_payment(api.client, user)
    await api.client.post(f"/api/payments/{payment['id']}/cancel", headers=user.headers)
    listing = await api.client.get("/api/transactions", headers=user.headers)
    assert listing.json()["data"] == []


async def test_cancel_of_a_completed_payment_is_an_invalid_state(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user)
    response = await api.client.post(f"/api/payments/{payment['id']}/cancel", headers=user.headers)
    assert_problem(response, 409, "invalid_state")
    status = await api.client.get(f"/api/payments/{payment['id']}/status", headers=user.headers)
    assert status.json()["status"] == "completed"


async def test_cancel_of_a_failed_payment_is_an_invalid_state(api: Api) -> None:
    user = await register_user(api.client)
    payment = await create_payment(api.client, user, details=card_details("4000000000000002"))
    await api.client.post(
        "/api/payments/process", json={"payment_id": payment["id"]}, headers=user.headers
    )
    response = await api.client.post(f"/api/payments/{payment['id']}/cancel", headers=user.headers)
    assert_problem(response, 409, "invalid_state")


async def test_cancel_twice_is_an_invalid_state(api: Api) -> None:
    user = await register_user(api.client)
    payment = await create_payment(api.client, user)
    first = await api.client.post(f"/api/payments/{payment['id']}/cancel", headers=user.headers)
    assert first.status_code == 200
    again = await api.client.post(f"/api/payments/{payment['id']}/cancel", headers=user.headers)
    assert_problem(again, 409, "invalid_state")


async def test_status_has_exactly_the_contract_fields(api: Api) -> None:
    user = await register_user(api.client)
    payment = await create_payment(api.client, user, amount=900, currency="gbp")
    response = await api.client.get(f"/api/payments/{payment['id']}/status", headers=user.headers)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == STATUS_KEYS
    assert body == {
        "id": payment["id"],
        "status": "pending",
        "amount": 900,
        "amount_captured": 0,
        "amount_refunded": 0,
        "currency": "GBP",
        "updated_at": payment["updated_at"],
    }


async def test_status_follows_the_payment_through_a_refund(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user, amount=1000)
    await api.client.post(
        f"/api/payments/{payment['id']}/refund", json={"amount": 250}, headers=user.headers
    )
    status = (
        await api.client.get(f"/api/payments/{payment['id']}/status", headers=user.headers)
    ).json()
    full = (await api.client.get(f"/api/payments/{payment['id']}", headers=user.headers)).json()
    assert status == {key: full[key] for key in STATUS_KEYS}
    assert (status["status"], status["amount_refunded"]) == ("partially_refunded", 250)


@pytest.mark.parametrize("route", ROUTES)
async def test_unknown_id_is_not_found(api: Api, route: str) -> None:
    user = await register_user(api.client)
    assert_problem(await _request(api, route, UNKNOWN_ID, user.headers), 404, "payment_not_found")


@pytest.mark.parametrize("payment_id", MALFORMED_IDS)
@pytest.mark.parametrize("route", ROUTES)
async def test_malformed_id_is_not_found(api: Api, route: str, payment_id: str) -> None:
    user = await register_user(api.client)
    response = await _request(api, route, payment_id, user.headers)
    assert_problem(response, 404, "payment_not_found")


@pytest.mark.parametrize("route", ROUTES)
async def test_another_users_payment_is_not_found_exactly_like_an_unknown_id(
    api: Api, route: str
) -> None:
    owner = await register_user(api.client)
    intruder = await register_user(api.client)
    payment = await completed_payment(api.client, owner)
    theirs = await _request(api, route, payment["id"], intruder.headers)
    unknown = await _request(api, route, UNKNOWN_ID, intruder.headers)
    assert_problem(theirs, 404, "payment_not_found")
    assert theirs.json() == unknown.json()
    assert payment["id"] not in theirs.text
    after = await api.client.get(f"/api/payments/{payment['id']}", headers=owner.headers)
    assert after.json() == payment


@pytest.mark.parametrize("route", ROUTES)
async def test_payment_routes_need_a_bearer_token(api: Api, route: str) -> None:
    owner = await register_user(api.client)
    payment = await create_payment(api.client, owner)
    assert_problem(await _request(api, route, payment["id"], {}), 401, "unauthorized")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/payments", payment_body()),
        ("POST", "/api/payments/process", "PROCESS"),
        ("GET", "/api/payments/{id}", None),
        ("GET", "/api/payments/{id}/status", None),
        ("POST", "/api/payments/{id}/cancel", None),
        ("POST", "/api/payments/{id}/refund", {}),
        ("GET", "/api/transactions", None),
    ],
)
async def test_unknown_query_parameter_is_refused_and_nothing_happens(
    api: Api, method: str, path: str, body: Any
) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user)
    if path.endswith("cancel"):
        payment = await create_payment(api.client, user)
    if body == "PROCESS":
        payment = await create_payment(api.client, user)
        body = {"payment_id": payment["id"]}
    before = (await api.client.get(f"/api/payments/{payment['id']}", headers=user.headers)).json()
    payments_before = await count_payments(api, user)
    response = await api.client.request(
        method,
        path.format(id=payment["id"]),
        params={"expand": "all"},
        json=body,
        headers=user.headers,
    )
    assert_invalid(response, "expand")
    after = (await api.client.get(f"/api/payments/{payment['id']}", headers=user.headers)).json()
    assert after == before
    assert await count_payments(api, user) == payments_before
