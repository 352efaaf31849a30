"""Test and live modes: every payment, refund, transaction, event and webhook endpoint is of the
mode of the caller that made it, says so (`livemode`), and is invisible (404, absent from lists)
and unchangeable to a caller acting in the other mode — both ways, with keys and with login
tokens (test unless `Kassa-Mode: live`)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from kassa.app import create_app
from kassa.container import build_container
from kassa.processors.faults import Fault, FaultInjectingProcessor
from kassa.processors.simulator import SimulatorProcessor
from kassa.processors.stripe import StripeProcessor
from kassa.webhooks.models import WebhookDelivery
from tests.apikeys.keys import Key, create_key
from tests.conftest import (
    Api,
    User,
    make_settings,
    migrated_postgres,
    migrated_sqlite,
    payment_body,
    register_user,
)

MODES = ["test", "live"]
OTHER = {"test": "live", "live": "test"}


async def _keys(api: Api) -> tuple[User, dict[str, Key]]:
    user = await register_user(api.client)
    keys = {mode: await create_key(api.client, user, mode=mode) for mode in MODES}
    return user, keys


def _token(user: User, mode: str | None) -> dict[str, str]:
    return {**user.headers, **({"Kassa-Mode": mode} if mode else {})}


def _ids(response: Any) -> set[str]:
    assert response.status_code == 200, response.text
    return {item["id"] for item in response.json()["data"]}


@pytest.mark.parametrize("mode", MODES)
async def test_a_payment_is_invisible_and_unchangeable_in_the_other_mode(
    api: Api, mode: str
) -> None:
    user, keys = await _keys(api)
    mine, theirs = keys[mode].headers, keys[OTHER[mode]].headers
    created = await api.client.post("/api/payments", json=payment_body(), headers=mine)
    assert created.status_code == 201, created.text
    payment = created.json()
    assert payment["livemode"] is (mode == "live")
    pid = payment["id"]

    def refused(response: Any) -> None:
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "payment_not_found"

    refused(await api.client.get(f"/api/payments/{pid}", headers=theirs))
    refused(await api.client.get(f"/api/payments/{pid}/status", headers=theirs))
    refused(await api.client.post(f"/api/payments/{pid}/cancel", headers=theirs))
    refused(
        await api.client.post("/api/payments/process", json={"payment_id": pid}, headers=theirs)
    )
    # A login token sees it only in its mode: test by default, live when it says so.
    token_mine = _token(user, "live") if mode == "live" else _token(user, None)
    token_theirs = _token(user, None) if mode == "live" else _token(user, "live")
    assert (await api.client.get(f"/api/payments/{pid}", headers=token_mine)).status_code == 200
    refused(await api.client.get(f"/api/payments/{pid}", headers=token_theirs))

    processed = await api.client.post(
        "/api/payments/process", json={"payment_id": pid}, headers=mine
    )
    assert processed.status_code == 200, processed.text
    assert processed.json()["status"] == "completed"
    refused(await api.client.post(f"/api/payments/{pid}/refund", headers=theirs))
    refund = await api.client.post(
        f"/api/payments/{pid}/refund", json={"amount": 300}, headers=mine
    )
    assert refund.status_code == 201, refund.text
    assert refund.json()["livemode"] is (mode == "live")

    # Lists: the payment's charge and refund, and its events, only in its own mode.
    transactions = (await api.client.get("/api/transactions", headers=mine)).json()["data"]
    assert {t["payment_id"] for t in transactions} == {pid}
    assert {t["livemode"] for t in transactions} == {mode == "live"}
    assert (await api.client.get("/api/transactions", headers=theirs)).json()["data"] == []
    events = (await api.client.get("/api/events", headers=mine)).json()["data"]
    assert {e["type"] for e in events} >= {"payment.created", "refund.created"}
    assert {e["livemode"] for e in events} == {mode == "live"}
    assert (await api.client.get("/api/events", headers=theirs)).json()["data"] == []
    event_id = events[0]["id"]
    for call in (
        api.client.get(f"/api/events/{event_id}", headers=theirs),
        api.client.post(f"/api/events/{event_id}/redeliver", headers=theirs),
    ):
        response = await call
        assert response.status_code == 404, response.text
    # Nothing of the other mode changed the payment.
    after = await api.client.get(f"/api/payments/{pid}", headers=mine)
    assert after.json()["amount_refunded"] == 300


async def test_an_idle_pending_payment_of_each_mode_is_canceled_only_in_its_own(api: Api) -> None:
    _user, keys = await _keys(api)
    made = {}
    for mode in MODES:
        response = await api.client.post(
            "/api/payments", json=payment_body(), headers=keys[mode].headers
        )
        made[mode] = response.json()["id"]
    for mode in MODES:
        other = OTHER[mode]
        wrong = await api.client.post(
            f"/api/payments/{made[other]}/cancel", headers=keys[mode].headers
        )
        assert wrong.status_code == 404
        right = await api.client.post(
            f"/api/payments/{made[mode]}/cancel", headers=keys[mode].headers
        )
        assert right.status_code == 200, right.text
        assert right.json()["status"] == "canceled"


async def test_webhook_endpoints_and_their_deliveries_belong_to_one_mode(
    api_factory: Any,
) -> None:
    api: Api = await api_factory(webhook_allow_private="true")
    _, keys = await _keys(api)
    endpoints = {}
    for mode in MODES:
        created = await api.client.post(
            "/api/webhooks",
            json={"url": f"http://127.0.0.1:9/{mode}", "events": ["*"]},
            headers=keys[mode].headers,
        )
        assert created.status_code == 201, created.text
        assert created.json()["livemode"] is (mode == "live")
        endpoints[mode] = created.json()["id"]
    try:
        for mode in MODES:
            mine, other_endpoint = keys[mode].headers, endpoints[OTHER[mode]]
            assert _ids(await api.client.get("/api/webhooks", headers=mine)) == {endpoints[mode]}
            for method, path in (
                ("GET", f"/api/webhooks/{other_endpoint}"),
                ("GET", f"/api/webhooks/{other_endpoint}/deliveries"),
                ("DELETE", f"/api/webhooks/{other_endpoint}"),
            ):
                response = await api.client.request(method, path, headers=mine)
                assert response.status_code == 404, (mode, path, response.text)

        # A live payment's events are queued for the live endpoint only, and the reverse.
        queued: dict[str, set[uuid.UUID]] = {}
        for mode in MODES:
            paid = await api.client.post(
                "/api/payments", json=payment_body(), headers=keys[mode].headers
            )
            assert paid.status_code == 201
            event = (await api.client.get("/api/events", headers=keys[mode].headers)).json()
            redelivered = await api.client.post(
                f"/api/events/{event['data'][0]['id']}/redeliver", headers=keys[mode].headers
            )
            assert redelivered.status_code == 202, redelivered.text
            assert redelivered.json()["queued"] == 1
            rows = await api.container.db.rows(
                select(WebhookDelivery.__table__.c.endpoint_id).where(  # type: ignore[attr-defined]
                    WebhookDelivery.__table__.c.event_id  # type: ignore[attr-defined]
                    == uuid.UUID(event["data"][0]["id"])
                )
            )
            queued[mode] = {row["endpoint_id"] for row in rows}
        assert queued == {mode: {uuid.UUID(endpoints[mode])} for mode in MODES}
    finally:
        for mode in MODES:
            await api.client.delete(f"/api/webhooks/{endpoints[mode]}", headers=keys[mode].headers)


async def test_a_login_token_with_kassa_mode_live_acts_on_live_objects(api: Api) -> None:
    user, keys = await _keys(api)
    created = await api.client.post(
        "/api/payments", json=payment_body(), headers=_token(user, "live")
    )
    assert created.status_code == 201, created.text
    assert created.json()["livemode"] is True
    pid = created.json()["id"]
    seen = await api.client.get(f"/api/payments/{pid}", headers=keys["live"].headers)
    assert seen.status_code == 200
    assert (await api.client.get(f"/api/payments/{pid}", headers=user.headers)).status_code == 404
    test_made = await api.client.post("/api/payments", json=payment_body(), headers=user.headers)
    assert test_made.json()["livemode"] is False


@pytest.fixture(params=["sqlite", "postgres"])
def own_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database of the test's own: reconciliation there sees only the test's payments."""
    if request.param == "sqlite":
        yield migrated_sqlite(tmp_path_factory, "modes")
        return
    with migrated_postgres() as url:
        yield url


async def test_each_mode_charges_refunds_and_reconciles_with_its_own_processor(
    own_database_url: str,
) -> None:
    """Test mode's processor (the simulator) and live mode's (the configured one) are told
    apart: a payment's charge, refund and reconciliation go to its mode's processor only."""
    database_url = own_database_url
    test_processor = FaultInjectingProcessor(SimulatorProcessor())
    live_processor = FaultInjectingProcessor(SimulatorProcessor())
    container = build_container(
        make_settings(database_url), processor=test_processor, live_processor=live_processor
    )
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(container=container)),
        base_url="http://kassa.test",
    )
    try:
        api = Api(client=client, container=container, processor=test_processor)
        _, keys = await _keys(api)
        for mode, mine, other in (
            ("test", test_processor, live_processor),
            ("live", live_processor, test_processor),
        ):
            before_other = dict(other.calls)
            headers = keys[mode].headers
            paid = (await client.post("/api/payments", json=payment_body(), headers=headers)).json()
            processed = await client.post(
                "/api/payments/process", json={"payment_id": paid["id"]}, headers=headers
            )
            assert processed.json()["status"] == "completed"
            refunded = await client.post(f"/api/payments/{paid['id']}/refund", headers=headers)
            assert refunded.json()["status"] == "succeeded"
            # An unknown outcome, settled by reconciliation through the same processor.
            lost = (await client.post("/api/payments", json=payment_body(), headers=headers)).json()
            mine.plan("charge", Fault.LOSE_ANSWER)
            unknown = await client.post(
                "/api/payments/process", json={"payment_id": lost["id"]}, headers=headers
            )
            assert unknown.status_code == 202
            report = await container.payments.reconcile(older_than=timedelta(0))
            assert report.settled == 1
            settled = await client.get(f"/api/payments/{lost['id']}", headers=headers)
            assert settled.json()["status"] == "completed"
            assert mine.calls["charge"] >= 2
            assert mine.calls["refund"] >= 1
            assert mine.calls["lookup_charge"] >= 1
            assert dict(other.calls) == before_other, f"{mode} used the other processor"
    finally:
        await client.aclose()
        await container.aclose()


def test_test_mode_gets_the_simulator_whatever_processor_is_configured(tmp_path: Any) -> None:
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'kassa.db'}",
        processor="stripe",
        stripe_api_key="sk_test_123",
        stripe_api_base="http://127.0.0.1:9",
    )
    container = build_container(settings)
    try:
        assert isinstance(container.test_processor, SimulatorProcessor)
        assert isinstance(container.processor, StripeProcessor)
    finally:
        asyncio.run(container.aclose())
