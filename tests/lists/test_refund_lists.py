"""GET /api/refunds and GET /api/payments/{id}/refunds: the caller's refunds of its mode,
newest first, in cursor pages; a payment's list is a 404 unless the payment is the caller's
and of its mode."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import Api, User, completed_payment, create_payment, register_user
from tests.lists import get_list, insert_payment, insert_refund, walk
from tests.payments import REFUND_KEYS, assert_problem
from tests.transactions.test_transactions import ticking_clock


async def _refund(api: Api, user: User, payment_id: str, amount: int) -> dict[str, Any]:
    response = await api.client.post(
        f"/api/payments/{payment_id}/refund", json={"amount": amount}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_refunds_are_listed_newest_first_across_payments(api_factory: Any) -> None:
    api: Api = await api_factory(clock=ticking_clock())
    user = await register_user(api.client)
    first = await completed_payment(api.client, user, amount=1000)
    second = await completed_payment(api.client, user, amount=1000)
    made = [
        await _refund(api, user, first["id"], 100),
        await _refund(api, user, second["id"], 200),
        await _refund(api, user, first["id"], 300),
    ]
    data = (await get_list(api, user, "/api/refunds"))["data"]
    assert [r["id"] for r in data] == [r["id"] for r in made[::-1]]
    assert all(set(r) == REFUND_KEYS for r in data)
    assert data[0] == made[2] | {"status": data[0]["status"]}
    of_first = (await get_list(api, user, f"/api/payments/{first['id']}/refunds"))["data"]
    assert [r["id"] for r in of_first] == [made[2]["id"], made[0]["id"]]


@pytest.mark.parametrize("limit", [1, 2, 5])
async def test_pages_visit_every_refund_once_while_refunds_are_made(
    api_factory: Any, limit: int
) -> None:
    api: Api = await api_factory(clock=ticking_clock())
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user, amount=10_000)
    for _ in range(6):
        await _refund(api, user, payment["id"], 10)
    for path in ("/api/refunds", f"/api/payments/{payment['id']}/refunds"):
        before = [r["id"] for r in (await get_list(api, user, path, limit=100))["data"]]
        walked: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": limit}
            if cursor:
                params["cursor"] = cursor
            page = await get_list(api, user, path, **params)
            walked += [r["id"] for r in page["data"]]
            await _refund(api, user, payment["id"], 1)  # newer than the cursor
            if not page["has_more"]:
                break
            cursor = page["next_cursor"]
        assert walked == before  # what was there, each once, in order; nothing newer
        assert len(await walk(api, user, path, limit=100)) > len(before)


async def test_a_payment_without_refunds_lists_none(api: Api) -> None:
    user = await register_user(api.client)
    payment = await create_payment(api.client, user)
    page = await get_list(api, user, f"/api/payments/{payment['id']}/refunds")
    assert page == {"data": [], "has_more": False, "next_cursor": None}


async def test_another_users_refunds_are_never_listed_and_their_payment_is_404(
    api: Api,
) -> None:
    user, other = await register_user(api.client), await register_user(api.client)
    theirs = await completed_payment(api.client, other)
    await _refund(api, other, theirs["id"], 100)
    assert (await get_list(api, user, "/api/refunds"))["data"] == []
    response = await api.client.get(f"/api/payments/{theirs['id']}/refunds", headers=user.headers)
    assert_problem(response, 404, "payment_not_found")


@pytest.mark.parametrize("raw", ["5d0c4b8e-6a0f-4c1e-9f3a-2b7d8e9f0a1b", "not-an-id", "0" * 36])
async def test_an_unknown_or_malformed_payment_is_404(api: Api, raw: str) -> None:
    user = await register_user(api.client)
    response = await api.client.get(f"/api/payments/{raw}/refunds", headers=user.headers)
    assert_problem(response, 404, "payment_not_found")


async def test_live_refunds_never_appear_to_a_test_mode_caller(api: Api) -> None:
    user = await register_user(api.client)
    db = api.container.db
    live_payment = await insert_payment(db, user, livemode=True)
    live_refund = await insert_refund(db, user, live_payment, livemode=True)
    mine = await completed_payment(api.client, user)
    test_refund = await _refund(api, user, mine["id"], 100)
    listed = (await get_list(api, user, "/api/refunds"))["data"]
    assert [r["id"] for r in listed] == [test_refund["id"]]
    response = await api.client.get(f"/api/payments/{live_payment}/refunds", headers=user.headers)
    assert_problem(response, 404, "payment_not_found")
    # The other way round: a live-mode list holds the live refund only.
    lists = api.container.refund_lists
    live = await lists.list(uuid.UUID(user.id), True, limit=10, cursor=None)
    assert [r.id for r in live.data] == [live_refund]
    of_payment = await lists.list(
        uuid.UUID(user.id), True, limit=10, cursor=None, payment_id=live_payment
    )
    assert [r.id for r in of_payment.data] == [live_refund]


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=101", "cursor=zzz", "status=succeeded", "limit=1&limit=2"]
)
async def test_a_bad_query_is_refused_with_422(api: Api, query: str) -> None:
    user = await register_user(api.client)
    payment = await create_payment(api.client, user)
    for path in ("/api/refunds", f"/api/payments/{payment['id']}/refunds"):
        response = await api.client.get(f"{path}?{query}", headers=user.headers)
        assert_problem(response, 422, "validation_error")


async def test_listing_refunds_needs_a_login(api: Api) -> None:
    assert_problem(await api.client.get("/api/refunds"), 401, "unauthorized")
    response = await api.client.get(f"/api/payments/{uuid.uuid4()}/refunds")
    assert_problem(response, 401, "unauthorized")
