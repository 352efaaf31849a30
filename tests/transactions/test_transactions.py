"""GET /api/transactions: one charge per processed payment, one refund per refund, newest
first, cursor pages that visit every row exactly once, and only the caller's rows."""

from __future__ import annotations

import base64
import itertools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import (
    Api,
    User,
    card_details,
    completed_payment,
    create_payment,
    register_user,
)
from tests.payments import TRANSACTION_KEYS, assert_invalid
from tests.payments.test_process import UnavailableProcessor


def ticking_clock(step: timedelta = timedelta(milliseconds=1)) -> Callable[[], datetime]:
    """Real time, but every reading strictly later than the one before."""
    last = [datetime.now(UTC)]

    def now() -> datetime:
        last[0] = max(datetime.now(UTC), last[0] + step)
        return last[0]

    return now


def frozen_clock() -> Callable[[], datetime]:
    fixed = datetime.now(UTC)
    return lambda: fixed


async def _list(api: Api, user: User, **params: Any) -> dict[str, Any]:
    response = await api.client.get("/api/transactions", params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _walk(api: Api, user: User, **params: Any) -> list[dict[str, Any]]:
    """Every page, following next_cursor, checking has_more on the way."""
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(100):
        query = dict(params)
        if cursor is not None:
            query["cursor"] = cursor
        page = await _list(api, user, **query)
        assert len(page["data"]) <= params.get("limit", 20)
        seen.extend(page["data"])
        if not page["has_more"]:
            assert page["next_cursor"] is None
            return seen
        assert page["next_cursor"]
        assert len(page["data"]) == params.get("limit", 20)
        cursor = page["next_cursor"]
    raise AssertionError("pagination did not end")


async def _history(api: Api, user: User) -> list[tuple[str, str, int]]:
    """Makes a known history; returns (type, status, amount) oldest first."""
    done = await completed_payment(api.client, user, amount=1000)
    failed = await create_payment(
        api.client, user, amount=200, details=card_details("4000000000000002")
    )
    await api.client.post(
        "/api/payments/process", json={"payment_id": failed["id"]}, headers=user.headers
    )
    await create_payment(api.client, user, amount=300)  # pending: no transaction
    canceled = await create_payment(api.client, user, amount=400)
    await api.client.post(f"/api/payments/{canceled['id']}/cancel", headers=user.headers)
    for amount in (100, 250):
        response = await api.client.post(
            f"/api/payments/{done['id']}/refund", json={"amount": amount}, headers=user.headers
        )
        assert response.status_code == 201
    wallet = await completed_payment(api.client, user, amount=50, method="digital_wallet")
    assert wallet["status"] == "completed"
    return [
        ("charge", "succeeded", 1000),
        ("charge", "failed", 200),
        ("refund", "succeeded", 100),
        ("refund", "succeeded", 250),
        ("charge", "succeeded", 50),
    ]


async def test_a_new_user_has_no_transactions(api: Api) -> None:
    user = await register_user(api.client)
    assert await _list(api, user) == {"data": [], "has_more": False, "next_cursor": None}


async def test_transaction_has_exactly_the_contract_fields(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user, amount=1234, currency="eur")
    [charge] = (await _list(api, user))["data"]
    assert set(charge) == TRANSACTION_KEYS
    assert charge["type"] == "charge"
    assert charge["status"] == "succeeded"
    assert charge["payment_id"] == payment["id"]
    assert (charge["amount"], charge["currency"]) == (1234, "EUR")
    assert charge["payment_method"] == "credit_card"
    uuid.UUID(charge["id"])
    datetime.fromisoformat(charge["created_at"])


async def test_history_lists_one_charge_per_processed_payment_and_one_per_refund_newest_first(
    api_factory: Any,
) -> None:
    api: Api = await api_factory(clock=ticking_clock())
    user = await register_user(api.client)
    expected = await _history(api, user)
    data = (await _list(api, user))["data"]
    assert [(t["type"], t["status"], t["amount"]) for t in data] == expected[::-1]
    stamps = [datetime.fromisoformat(t["created_at"]) for t in data]
    assert stamps == sorted(stamps, reverse=True)


async def test_charge_with_an_unknown_outcome_is_listed_as_pending(api_factory: Any) -> None:
    api: Api = await api_factory(processor=UnavailableProcessor())
    user = await register_user(api.client)
    payment = await create_payment(api.client, user, method="digital_wallet")
    await api.client.post(
        "/api/payments/process", json={"payment_id": payment["id"]}, headers=user.headers
    )
    [charge] = (await _list(api, user, status="pending"))["data"]
    assert (charge["type"], charge["payment_id"], charge["payment_method"]) == (
        "charge",
        payment["id"],
        "digital_wallet",
    )
    assert (await _list(api, user, status="succeeded"))["data"] == []


async def test_failed_charge_is_recorded_as_failed(api: Api) -> None:
    user = await register_user(api.client)
    payment = await create_payment(api.client, user, details=card_details("4000000000000069"))
    await api.client.post(
        "/api/payments/process", json={"payment_id": payment["id"]}, headers=user.headers
    )
    [charge] = (await _list(api, user))["data"]
    assert (charge["type"], charge["status"], charge["payment_id"]) == (
        "charge",
        "failed",
        payment["id"],
    )


@pytest.mark.parametrize("limit", [1, 2, 3])
async def test_pages_of_any_size_visit_every_transaction_exactly_once(
    api_factory: Any, limit: int
) -> None:
    api: Api = await api_factory(clock=ticking_clock())
    user = await register_user(api.client)
    await _history(api, user)
    everything = (await _list(api, user, limit=100))["data"]
    walked = await _walk(api, user, limit=limit)
    assert [t["id"] for t in walked] == [t["id"] for t in everything]
    assert len({t["id"] for t in walked}) == 5


@pytest.mark.parametrize("limit", [1, 2, 3])
async def test_pages_visit_every_transaction_once_even_when_timestamps_tie(
    api_factory: Any, limit: int
) -> None:
    api: Api = await api_factory(clock=frozen_clock())
    user = await register_user(api.client)
    await _history(api, user)
    everything = (await _list(api, user, limit=100))["data"]
    walked = await _walk(api, user, limit=limit)
    assert sorted(t["id"] for t in walked) == sorted(t["id"] for t in everything)
    assert len(walked) == len(everything) == 5
    assert [t["id"] for t in walked] == [t["id"] for t in everything]


async def test_default_page_holds_twenty(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user, amount=100)
    for _ in range(20):
        response = await api.client.post(
            f"/api/payments/{payment['id']}/refund", json={"amount": 1}, headers=user.headers
        )
        assert response.status_code == 201
    first = await _list(api, user)
    assert len(first["data"]) == 20
    assert first["has_more"] is True
    rest = await _list(api, user, cursor=first["next_cursor"])
    assert [t["type"] for t in rest["data"]] == ["charge"]
    assert rest["has_more"] is False


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {"type": "charge"},
            [("charge", "succeeded", 50), ("charge", "failed", 200), ("charge", "succeeded", 1000)],
        ),
        ({"type": "refund"}, [("refund", "succeeded", 250), ("refund", "succeeded", 100)]),
        ({"status": "failed"}, [("charge", "failed", 200)]),
        ({"status": "pending"}, []),
        ({"type": "refund", "status": "failed"}, []),
        (
            {"type": "charge", "status": "succeeded"},
            [("charge", "succeeded", 50), ("charge", "succeeded", 1000)],
        ),
    ],
)
async def test_filters_by_type_and_status(
    api_factory: Any, params: dict[str, str], expected: list[tuple[str, str, int]]
) -> None:
    api: Api = await api_factory(clock=ticking_clock())
    user = await register_user(api.client)
    await _history(api, user)
    data = (await _list(api, user, **params))["data"]
    assert [(t["type"], t["status"], t["amount"]) for t in data] == expected


async def test_filtered_pages_visit_every_match_once(api_factory: Any) -> None:
    api: Api = await api_factory(clock=ticking_clock())
    user = await register_user(api.client)
    await _history(api, user)
    walked = await _walk(api, user, limit=1, type="charge", status="succeeded")
    assert [t["amount"] for t in walked] == [50, 1000]


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": -1}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"cursor": "x"}, "cursor"),
        ({"cursor": "not a cursor!"}, "cursor"),
        ({"cursor": _cursor("yesterday|abc")}, "cursor"),
        ({"cursor": _cursor("2030-01-01T00:00:00|" + uuid.uuid4().hex)}, "cursor"),
        ({"cursor": _cursor("2030-01-01T00:00:00+00:00|nope")}, "cursor"),
        ({"cursor": _cursor("9999-12-31T23:59:59-14:00|" + uuid.uuid4().hex)}, "cursor"),
        ({"cursor": _cursor("0001-01-01T00:00:00+14:00|" + uuid.uuid4().hex)}, "cursor"),
        ({"cursor": base64.urlsafe_b64encode(b"\xff\xfe\x00").decode()}, "cursor"),
        ({"cursor": "a" * 201}, "cursor"),
        ({"type": "payment"}, "type"),
        ({"status": "completed"}, "status"),
        ({"page": "2"}, "page"),
        ({"user_id": str(uuid.uuid4())}, "user_id"),
    ],
)
async def test_bad_query_is_refused(api: Api, params: dict[str, Any], field: str) -> None:
    user = await register_user(api.client)
    await completed_payment(api.client, user)
    response = await api.client.get("/api/transactions", params=params, headers=user.headers)
    assert_invalid(response, field)


async def test_a_cursor_far_in_the_past_gives_an_empty_last_page(api: Api) -> None:
    user = await register_user(api.client)
    await completed_payment(api.client, user)
    cursor = _cursor("2000-01-01T00:00:00+00:00|" + uuid.uuid4().hex)
    assert await _list(api, user, cursor=cursor) == {
        "data": [],
        "has_more": False,
        "next_cursor": None,
    }


async def test_another_users_transactions_are_never_shown(api: Api) -> None:
    alice = await register_user(api.client)
    bob = await register_user(api.client)
    payment = await completed_payment(api.client, alice)
    await api.client.post(f"/api/payments/{payment['id']}/refund", json={}, headers=alice.headers)
    assert (await _list(api, bob))["data"] == []
    for params in ({"type": "charge"}, {"status": "succeeded"}, {"limit": 100}):
        assert (await _list(api, bob, **params))["data"] == []
    own = await completed_payment(api.client, bob)
    assert [t["payment_id"] for t in (await _list(api, bob))["data"]] == [own["id"]]


async def test_another_users_cursor_shows_only_the_callers_rows(api_factory: Any) -> None:
    api: Api = await api_factory(clock=ticking_clock())
    alice = await register_user(api.client)
    bob = await register_user(api.client)
    mine = await completed_payment(api.client, bob)
    for _ in range(2):
        await completed_payment(api.client, alice)
    alices_cursor = (await _list(api, alice, limit=1))["next_cursor"]
    assert alices_cursor
    listed = (await _list(api, bob, cursor=alices_cursor))["data"]
    assert [t["payment_id"] for t in listed] == [mine["id"]]


async def test_transactions_need_a_bearer_token(api: Api) -> None:
    response = await api.client.get("/api/transactions")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


def test_ticking_clock_is_strictly_increasing() -> None:
    clock = ticking_clock()
    readings = [clock() for _ in range(50)]
    assert all(a < b for a, b in itertools.pairwise(readings))
