"""GET /api/payments: the caller's payments of its mode, newest first, filtered, in cursor
pages that visit every payment once even while payments are being created."""

from __future__ import annotations

import asyncio
import typing
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kassa.payments.lists import PaymentFilters
from kassa.payments.schemas import PaymentStatusName
from kassa.payments.states import PaymentStatus
from tests.conftest import Api, User, card_details, completed_payment, create_payment, register_user
from tests.lists import get_list, insert_payment, walk
from tests.payments import PAYMENT_KEYS, assert_problem
from tests.transactions.test_transactions import frozen_clock, ticking_clock

PATH = "/api/payments"


async def _ids(api: Api, user: User, **params: Any) -> list[str]:
    return [p["id"] for p in (await get_list(api, user, PATH, limit=100, **params))["data"]]


async def _mixed(api: Api, user: User) -> dict[str, dict[str, Any]]:
    """Four payments told apart by every filter, oldest first."""
    usd = await completed_payment(api.client, user, amount=1000, metadata={"order": "1"})
    eur = await completed_payment(
        api.client,
        user,
        amount=2000,
        currency="EUR",
        method="digital_wallet",
        metadata={"order": "2", "tier": "gold"},
    )
    declined = await create_payment(
        api.client, user, amount=300, method="debit_card", details=card_details("4000000000000002")
    )
    response = await api.client.post(
        "/api/payments/process", json={"payment_id": declined["id"]}, headers=user.headers
    )
    assert response.json()["status"] == "failed"
    jpy = await create_payment(
        api.client, user, amount=500, currency="JPY", metadata={"tier": "gold", "o": "1"}
    )
    return {"usd": usd, "eur": eur, "declined": declined, "jpy": jpy}


def test_the_status_filter_names_every_payment_status() -> None:
    assert set(typing.get_args(PaymentStatusName)) == {s.value for s in PaymentStatus}


async def test_a_new_user_has_no_payments(api: Api) -> None:
    user = await register_user(api.client)
    page = await get_list(api, user, PATH)
    assert page == {"data": [], "has_more": False, "next_cursor": None}


async def test_payments_are_listed_newest_first_as_the_api_shows_them(api_factory: Any) -> None:
    api: Api = await api_factory(clock=ticking_clock())
    user = await register_user(api.client)
    made = await _mixed(api, user)
    data = (await get_list(api, user, PATH))["data"]
    assert [p["id"] for p in data] == [made[k]["id"] for k in ("jpy", "declined", "eur", "usd")]
    assert all(set(p) == PAYMENT_KEYS for p in data)
    fetched = await api.client.get(f"{PATH}/{made['usd']['id']}", headers=user.headers)
    assert data[-1] == fetched.json()
    assert "number" not in str(data)
    assert "cvc" not in str(data)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "completed"}, {"usd", "eur"}),
        ({"status": "failed"}, {"declined"}),
        ({"status": "pending"}, {"jpy"}),
        ({"status": "refunded"}, set()),
        ({"currency": "USD"}, {"usd", "declined"}),
        ({"currency": "eur"}, {"eur"}),
        ({"payment_method": "digital_wallet"}, {"eur"}),
        ({"payment_method": "debit_card"}, {"declined"}),
        ({"payment_method": "credit_card"}, {"usd", "jpy"}),
        ({"amount_gte": 500}, {"usd", "eur", "jpy"}),
        ({"amount_lte": 500}, {"declined", "jpy"}),
        ({"amount_gte": 500, "amount_lte": 1000}, {"usd", "jpy"}),
        ({"amount_gte": 1000, "amount_lte": 500}, set()),
        ({"metadata[order]": "1"}, {"usd"}),
        ({"metadata[tier]": "gold"}, {"eur", "jpy"}),
        ({"metadata[tier]": "gold", "metadata[order]": "2"}, {"eur"}),
        ({"metadata[tier]": "gold", "metadata[order]": "1"}, set()),
        ({"metadata[tier]": "GOLD"}, set()),
        ({"metadata[nothing]": ""}, set()),
        ({"status": "completed", "currency": "USD", "amount_lte": 1000}, {"usd"}),
    ],
)
async def test_each_filter_lists_exactly_the_payments_it_describes(
    api_factory: Any, params: dict[str, Any], expected: set[str]
) -> None:
    api: Api = await api_factory(clock=ticking_clock())
    user = await register_user(api.client)
    made = await _mixed(api, user)
    names = {p["id"]: name for name, p in made.items()}
    assert {names[i] for i in await _ids(api, user, **params)} == expected


async def test_created_range_includes_its_start_and_excludes_its_end(api_factory: Any) -> None:
    api: Api = await api_factory(clock=ticking_clock())
    user = await register_user(api.client)
    made = await _mixed(api, user)
    start, end = made["eur"]["created_at"], made["jpy"]["created_at"]
    listed = await _ids(api, user, created_gte=start, created_lt=end)
    assert listed == [made["declined"]["id"], made["eur"]["id"]]
    assert await _ids(api, user, created_gte=end) == [made["jpy"]["id"]]
    assert await _ids(api, user, created_lt=start) == [made["usd"]["id"]]
    # The same instant written with another offset is the same bound.
    shifted = datetime.fromisoformat(start).astimezone(timezone_plus_two()).isoformat()
    assert await _ids(api, user, created_gte=shifted, created_lt=end) == listed
    assert await _ids(api, user, created_gte=end, created_lt=start) == []


def timezone_plus_two() -> Any:
    from datetime import timezone

    return timezone(timedelta(hours=2))


@pytest.mark.parametrize("clock", [ticking_clock, frozen_clock])
async def test_a_cursor_walk_sees_every_payment_once_while_payments_are_created(
    api_factory: Any, clock: Any
) -> None:
    api: Api = await api_factory(clock=clock())
    user = await register_user(api.client)
    before = [(await create_payment(api.client, user, amount=100 + i))["id"] for i in range(7)]
    walked: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = await get_list(api, user, PATH, **params)
        walked += [p["id"] for p in page["data"]]
        await create_payment(api.client, user, amount=999)  # newer than any cursor
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    if clock is ticking_clock:
        assert walked == before[::-1]
    else:
        # Every timestamp ties, so the id decides the order and a new payment may sort
        # after the cursor: it can be listed, but nothing is seen twice or missed.
        assert len(walked) == len(set(walked))
        assert set(before) <= set(walked)


async def test_a_cursor_walk_racing_concurrent_inserts_has_no_gaps_or_duplicates(
    api_factory: Any,
) -> None:
    api: Api = await api_factory(clock=ticking_clock())
    user = await register_user(api.client)
    before = [(await create_payment(api.client, user, amount=100 + i))["id"] for i in range(12)]

    async def insert_many() -> list[str]:
        made = []
        for _ in range(12):
            made.append((await create_payment(api.client, user, amount=5))["id"])
            await asyncio.sleep(0)
        return made

    walked, added = await asyncio.gather(walk(api, user, PATH, limit=3), insert_many())
    ids = [p["id"] for p in walked]
    assert len(ids) == len(set(ids))  # no duplicates
    assert [i for i in ids if i in before] == before[::-1]  # no gaps among the listed
    assert set(ids) <= set(before) | set(added)
    after = await walk(api, user, PATH, limit=5)
    assert [p["id"] for p in after][-12:] == before[::-1]
    assert len(after) == 24


async def test_pages_of_a_filtered_list_hold_only_matches(api_factory: Any) -> None:
    api: Api = await api_factory(clock=ticking_clock())
    user = await register_user(api.client)
    wanted = []
    for i in range(9):
        payment = await create_payment(api.client, user, amount=100 + i)
        if i % 3 == 0:
            await api.client.post(f"{PATH}/{payment['id']}/cancel", headers=user.headers)
            wanted.append(payment["id"])
    walked = await walk(api, user, PATH, limit=1, status="canceled")
    assert [p["id"] for p in walked] == wanted[::-1]


async def test_the_default_page_holds_twenty_and_the_limit_is_kept(api: Api) -> None:
    user = await register_user(api.client)
    for _ in range(21):
        await insert_payment(api.container.db, user)
    first = await get_list(api, user, PATH)
    assert len(first["data"]) == 20
    assert first["has_more"] is True
    rest = await get_list(api, user, PATH, cursor=first["next_cursor"])
    assert len(rest["data"]) == 1
    assert rest["has_more"] is False
    assert len((await get_list(api, user, PATH, limit=100))["data"]) == 21


async def test_another_users_payments_are_never_listed(api: Api) -> None:
    user, other = await register_user(api.client), await register_user(api.client)
    mine = await create_payment(api.client, user, metadata={"order": "1"})
    await create_payment(api.client, other, metadata={"order": "1"})
    await insert_payment(api.container.db, other, status="failed")
    assert await _ids(api, user) == [mine["id"]]
    assert await _ids(api, user, **{"metadata[order]": "1"}) == [mine["id"]]
    assert await _ids(api, user, status="failed") == []


async def test_a_live_payment_never_appears_to_a_test_mode_caller(api: Api) -> None:
    user = await register_user(api.client)
    test_payment = await create_payment(api.client, user, metadata={"order": "1"})
    live = await insert_payment(
        api.container.db, user, livemode=True, status="pending", metadata={"order": "1"}
    )
    assert await _ids(api, user) == [test_payment["id"]]
    assert await _ids(api, user, status="pending") == [test_payment["id"]]
    assert await _ids(api, user, **{"metadata[order]": "1"}) == [test_payment["id"]]
    # And the other way round: a live-mode list holds the live payment only.
    lists = api.container.payment_lists
    live_page = await lists.list(
        uuid.UUID(user.id), True, PaymentFilters(status="pending"), limit=10, cursor=None
    )
    assert [p.id for p in live_page.data] == [live]
    test_page = await lists.list(uuid.UUID(user.id), False, PaymentFilters(), limit=10, cursor=None)
    assert [str(p.id) for p in test_page.data] == [test_payment["id"]]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("nope=1", "nope"),
        ("status=pending&status=failed", "status"),
        ("metadata[a]=1&metadata[a]=2", "metadata[a]"),
        ("metadata[a=1", "metadata[a"),
        ("metadata=1", "metadata"),
        ("status=paid", "status"),
        ("status=PENDING", "status"),
        ("currency=XXX", "currency"),
        ("currency=US", "currency"),
        ("currency=usd%20", "currency"),
        ("currency=ZZZ", "currency"),
        ("payment_method=cash", "payment_method"),
        ("created_gte=yesterday", "created_gte"),
        ("created_gte=2026-01-01T00:00:00", "created_gte"),  # no offset: ambiguous
        ("created_lt=0001-01-01T00:00:00%2B01:00", "created_lt"),  # before year 1 in UTC
        ("amount_gte=0", "amount_gte"),
        ("amount_gte=-5", "amount_gte"),
        ("amount_lte=1.5", "amount_lte"),
        ("amount_lte=true", "amount_lte"),
        ("amount_lte=9223372036854775808", "amount_lte"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("metadata[]=1", "metadata"),
        (f"metadata[{'k' * 41}]=1", "metadata"),
        (f"metadata[k]={'v' * 501}", "metadata"),
        ("&".join(f"metadata[k{i}]=v" for i in range(21)), "metadata"),
        ("metadata[a%00]=1", "query"),
        ("metadata[a]=1%00", "metadata[a]"),
    ],
)
async def test_a_bad_query_is_refused_with_422(api: Api, query: str, field: str) -> None:
    user = await register_user(api.client)
    response = await api.client.get(f"{PATH}?{query}", headers=user.headers)
    body = assert_problem(response, 422, "validation_error")
    assert field in {e["field"] for e in body["errors"]}, body


async def test_listing_needs_a_login(api: Api) -> None:
    response = await api.client.get(PATH)
    assert_problem(response, 401, "unauthorized")


async def test_a_cursor_from_before_any_payment_lists_nothing_after_it(api: Api) -> None:
    from kassa.pagination import Cursor

    user = await register_user(api.client)
    await create_payment(api.client, user)
    oldest = Cursor(datetime(2000, 1, 1, tzinfo=UTC), uuid.UUID(int=0)).encode()
    assert (await get_list(api, user, PATH, cursor=oldest))["data"] == []
