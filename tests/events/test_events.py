"""Events: one row per state change, written in the business transaction (the outbox), with
the Payment or Refund exactly as the API returned it; GET /api/events pages them newest
first and only ever shows the caller's."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from kassa.events.models import Event
from kassa.events.service import EventService
from kassa.ledger.service import LedgerService
from kassa.webhooks.models import WebhookDelivery
from tests.conftest import Api, User, card_details, completed_payment, create_payment, register_user
from tests.payments import PAYMENT_KEYS, REFUND_KEYS, assert_invalid, assert_problem
from tests.webhooks import MovableClock, create_webhook, list_events

pytestmark = pytest.mark.usefixtures("clean_webhooks")
EVENT_KEYS = {"id", "type", "livemode", "created_at", "data"}


@pytest.fixture
async def api(api_factory: Any) -> Api:
    # Every reading of this clock is later than the one before: events sort as they happened.
    made: Api = await api_factory(clock=MovableClock(), webhook_allow_private=True)
    return made


async def _oldest_first(api: Api, user: User, **params: Any) -> list[dict[str, Any]]:
    return list(reversed(await list_events(api.client, user, limit=100, **params)))


async def _count(api: Api, model: Any, user: User) -> int:
    count = await api.container.db.scalar(
        select(func.count()).select_from(model).where(model.user_id == uuid.UUID(user.id))
    )
    return int(count)


async def test_every_state_change_of_a_refunded_payment_is_an_event(api: Api) -> None:
    user = await register_user(api.client)
    created = await create_payment(api.client, user, amount=1000)
    processed = await api.client.post(
        "/api/payments/process", json={"payment_id": created["id"]}, headers=user.headers
    )
    part = await api.client.post(
        f"/api/payments/{created['id']}/refund", json={"amount": 300}, headers=user.headers
    )
    rest = await api.client.post(f"/api/payments/{created['id']}/refund", headers=user.headers)
    assert part.status_code == rest.status_code == 201
    final = (await api.client.get(f"/api/payments/{created['id']}", headers=user.headers)).json()

    events = await _oldest_first(api, user)
    assert [e["type"] for e in events] == [
        "payment.created",
        "payment.processing",
        "payment.completed",
        "refund.created",
        "payment.partially_refunded",
        "refund.created",
        "payment.refunded",
    ]
    for event in events:
        assert set(event) == EVENT_KEYS
        assert set(event["data"]) == {"object"}
    objects = [e["data"]["object"] for e in events]
    # Exactly what the API answered when it happened.
    assert objects[0] == created
    assert objects[2] == processed.json()
    assert objects[6] == final
    assert set(objects[1]) == PAYMENT_KEYS
    assert objects[1]["status"] == "processing"
    assert objects[4]["status"] == "partially_refunded"
    assert objects[4]["amount_refunded"] == 300
    assert set(objects[3]) == set(objects[5]) == REFUND_KEYS
    assert [objects[3]["id"], objects[5]["id"]] == [part.json()["id"], rest.json()["id"]]
    assert [objects[3]["amount"], objects[5]["amount"]] == [300, 700]
    assert objects[3]["status"] == "pending"  # when it was created; the processor came after


async def test_declined_and_canceled_payments_are_events(api: Api) -> None:
    user = await register_user(api.client)
    declined = await create_payment(api.client, user, details=card_details("4000000000000002"))
    answer = await api.client.post(
        "/api/payments/process", json={"payment_id": declined["id"]}, headers=user.headers
    )
    canceled = await create_payment(api.client, user)
    cancel = await api.client.post(f"/api/payments/{canceled['id']}/cancel", headers=user.headers)
    events = await _oldest_first(api, user)
    assert [(e["type"], e["data"]["object"]["id"]) for e in events] == [
        ("payment.created", declined["id"]),
        ("payment.processing", declined["id"]),
        ("payment.failed", declined["id"]),
        ("payment.created", canceled["id"]),
        ("payment.canceled", canceled["id"]),
    ]
    assert events[2]["data"]["object"] == answer.json()
    assert events[2]["data"]["object"]["failure_code"] == "card_declined"
    assert events[4]["data"]["object"] == cancel.json()


async def test_refused_business_requests_write_no_event(api: Api) -> None:
    user = await register_user(api.client)
    await create_webhook(api.client, user, "http://127.0.0.1:9/hooks")
    payment = await completed_payment(api.client, user, amount=500)
    pending = await create_payment(api.client, user)
    before = (await _count(api, Event, user), await _count(api, WebhookDelivery, user))

    too_much = await api.client.post(
        f"/api/payments/{payment['id']}/refund", json={"amount": 501}, headers=user.headers
    )
    assert_problem(too_much, 422, "amount_exceeds_refundable")
    not_refundable = await api.client.post(
        f"/api/payments/{pending['id']}/refund", headers=user.headers
    )
    assert_problem(not_refundable, 409, "invalid_state")
    not_cancelable = await api.client.post(
        f"/api/payments/{payment['id']}/cancel", headers=user.headers
    )
    assert_problem(not_cancelable, 409, "invalid_state")
    reprocess = await api.client.post(
        "/api/payments/process", json={"payment_id": payment["id"]}, headers=user.headers
    )
    assert_problem(reprocess, 409, "invalid_state")

    after = (await _count(api, Event, user), await _count(api, WebhookDelivery, user))
    assert after == before
    assert "refund.created" not in {e["type"] for e in await list_events(api.client, user)}


async def test_the_outbox_rolls_back_with_the_business_transaction(api: Api) -> None:
    user = await register_user(api.client)
    await create_webhook(api.client, user, "http://127.0.0.1:9/hooks")
    user_id = uuid.UUID(user.id)
    obj = {"id": str(uuid.uuid4()), "status": "pending", "livemode": False}

    class Boom(Exception):
        pass

    async def business_transaction() -> None:
        async with api.container.db.transaction() as db:
            await EventService.record(db, user_id, "payment.created", obj, datetime.now(UTC))
            raise Boom  # anything failing later in the same business transaction

    with pytest.raises(Boom):
        await business_transaction()
    assert await _count(api, Event, user) == 0
    assert await _count(api, WebhookDelivery, user) == 0

    async with api.container.db.transaction() as db:
        await EventService.record(db, user_id, "payment.created", obj, datetime.now(UTC))
    assert await _count(api, Event, user) == 1
    assert await _count(api, WebhookDelivery, user) == 1


async def test_a_failure_after_the_event_leaves_neither_the_change_nor_its_event(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await register_user(api.client)
    await create_webhook(api.client, user, "http://127.0.0.1:9/hooks")
    payment = await create_payment(api.client, user)

    def failing_ledger(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the ledger is down")

    # Settling records `payment.completed` first, then fails in the ledger (SQLite: in the
    # settling transaction; PostgreSQL: as its one statement is made).
    monkeypatch.setattr(LedgerService, "post_charge", staticmethod(failing_ledger))
    monkeypatch.setattr(LedgerService, "charge_values", staticmethod(failing_ledger))
    response = await api.client.post(
        "/api/payments/process", json={"payment_id": payment["id"]}, headers=user.headers
    )
    assert response.status_code == 500
    status = await api.client.get(f"/api/payments/{payment['id']}", headers=user.headers)
    assert status.json()["status"] == "processing"
    assert [e["type"] for e in await _oldest_first(api, user)] == [
        "payment.created",
        "payment.processing",
    ]
    queued = await api.container.db.tuples(
        select(WebhookDelivery.event_type).where(WebhookDelivery.user_id == uuid.UUID(user.id))
    )
    assert sorted(kind for (kind,) in queued) == ["payment.created", "payment.processing"]


async def test_pages_visit_every_event_once_newest_first(api: Api) -> None:
    user = await register_user(api.client)
    for _ in range(4):
        payment = await create_payment(api.client, user)
        await api.client.post(f"/api/payments/{payment['id']}/cancel", headers=user.headers)
    everything = await list_events(api.client, user, limit=100)
    assert len(everything) == 8
    stamps = [(e["created_at"], e["id"]) for e in everything]
    assert stamps == sorted(stamps, reverse=True)

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await api.client.get("/api/events", params=params, headers=user.headers)).json()
        seen.extend(e["id"] for e in page["data"])
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        assert len(page["data"]) == 3
        cursor = page["next_cursor"]
    assert seen == [e["id"] for e in everything]

    canceled = await list_events(api.client, user, type="payment.canceled", limit=2)
    assert len(canceled) == 2
    assert {e["type"] for e in canceled} == {"payment.canceled"}
    page = (
        await api.client.get(
            "/api/events", params={"type": "payment.canceled", "limit": 2}, headers=user.headers
        )
    ).json()
    rest = await list_events(api.client, user, type="payment.canceled", cursor=page["next_cursor"])
    assert len(rest) == 2
    assert not {e["id"] for e in rest} & {e["id"] for e in canceled}


async def test_one_event_by_id(api: Api) -> None:
    user = await register_user(api.client)
    await create_payment(api.client, user)
    [event] = await list_events(api.client, user)
    response = await api.client.get(f"/api/events/{event['id']}", headers=user.headers)
    assert response.status_code == 200
    assert response.json() == event


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"type": "payment.exploded"}, "type"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"status": "pending"}, "status"),
        ({"page": 2}, "page"),
    ],
)
async def test_a_bad_query_is_422(api: Api, params: dict[str, Any], field: str) -> None:
    user = await register_user(api.client)
    response = await api.client.get("/api/events", params=params, headers=user.headers)
    assert_invalid(response, field)


async def test_events_need_a_token(api: Api) -> None:
    assert_problem(await api.client.get("/api/events"), 401, "unauthorized")
    assert_problem(
        await api.client.post(f"/api/events/{uuid.uuid4()}/redeliver"), 401, "unauthorized"
    )


async def test_another_users_events_are_invisible(api: Api) -> None:
    owner = await register_user(api.client)
    other = await register_user(api.client)
    await create_payment(api.client, owner)
    [event] = await list_events(api.client, owner)
    assert await list_events(api.client, other) == []
    for path in (f"/api/events/{event['id']}", f"/api/events/{event['id']}/redeliver"):
        method = api.client.post if path.endswith("redeliver") else api.client.get
        assert_problem(await method(path, headers=other.headers), 404, "event_not_found")
    for bad in (str(uuid.uuid4()), "nope", event["id"].replace("-", ""), "%20"):
        assert_problem(
            await api.client.get(f"/api/events/{bad}", headers=owner.headers),
            404,
            "event_not_found",
        )
        assert_problem(
            await api.client.post(f"/api/events/{bad}/redeliver", headers=owner.headers),
            404,
            "event_not_found",
        )


async def _deliveries(api: Api, user: User) -> list[tuple[Any, ...]]:
    rows = await api.container.db.tuples(
        select(
            WebhookDelivery.id,
            WebhookDelivery.status,
            WebhookDelivery.attempt_count,
            WebhookDelivery.window_started_at,
            WebhookDelivery.next_attempt_at,
            WebhookDelivery.updated_at,
        )
        .where(WebhookDelivery.user_id == uuid.UUID(user.id))
        .order_by(WebhookDelivery.id)
    )
    return [tuple(row) for row in rows]


async def test_a_refused_redelivery_queues_nothing(api: Api) -> None:
    owner = await register_user(api.client)
    other = await register_user(api.client)
    await create_webhook(api.client, owner, "http://127.0.0.1:9/hooks")
    await create_payment(api.client, owner)
    [event] = await list_events(api.client, owner)
    before = await _deliveries(api, owner)
    assert len(before) == 1

    unknown_query = await api.client.post(
        f"/api/events/{event['id']}/redeliver", params={"force": "1"}, headers=owner.headers
    )
    assert_invalid(unknown_query, "force")
    not_theirs = await api.client.post(
        f"/api/events/{event['id']}/redeliver", headers=other.headers
    )
    assert_problem(not_theirs, 404, "event_not_found")
    one = await api.client.get(
        f"/api/events/{event['id']}", params={"expand": "data"}, headers=owner.headers
    )
    assert_invalid(one, "expand")

    assert await _deliveries(api, owner) == before
