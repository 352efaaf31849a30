"""Authorize now, capture later; void; 3-D Secure — through the HTTP API, on SQLite and
PostgreSQL: each step's status, answer, event and transaction, and the races that must have
one winner."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from kassa.processors.simulator import SimulatorProcessor
from kassa.worker import Worker
from tests.conftest import Api, User, card_details, create_payment, register_user

THREE_DS = "4000002760003184"
THREE_DS_DECLINES = "4000008400001629"
RETURN_URL = "https://shop.example/orders/1001/return"


async def _post(
    api: Api, user: User, path: str, body: Any = None, **headers: str
) -> httpx.Response:
    return await api.client.post(path, json=body, headers={**user.headers, **headers})


async def _process(api: Api, user: User, payment_id: str, **body: Any) -> httpx.Response:
    return await _post(api, user, "/api/payments/process", {"payment_id": payment_id, **body})


async def _authorized(api: Api, user: User, amount: int = 1000) -> dict[str, Any]:
    payment = await create_payment(api.client, user, amount=amount, capture="manual")
    assert payment["capture"] == "manual"
    response = await _process(api, user, payment["id"])
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "requires_capture"
    return body


async def _get(api: Api, user: User, payment_id: str) -> dict[str, Any]:
    response = await api.client.get(f"/api/payments/{payment_id}", headers=user.headers)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def _events(api: Api, user: User, payment_id: str) -> list[str]:
    response = await api.client.get("/api/events?limit=100", headers=user.headers)
    return [
        e["type"]
        for e in reversed(response.json()["data"])
        if e["data"]["object"].get("id") == payment_id
    ]


async def _transactions(api: Api, user: User) -> list[tuple[str, int, str]]:
    response = await api.client.get("/api/transactions", headers=user.headers)
    return [(t["type"], t["amount"], t["status"]) for t in response.json()["data"]]


# Capture later ---------------------------------------------------------------------------


async def test_a_manual_payment_is_authorized_and_nothing_is_captured(api: Api) -> None:
    user = await register_user(api.client)
    body = await _authorized(api, user)
    assert (body["amount"], body["amount_captured"], body["next_action"]) == (1000, 0, None)
    assert await _transactions(api, user) == [("charge", 1000, "pending")]
    assert isinstance(api.processor, SimulatorProcessor)
    assert api.processor.charges_made == 0


async def test_authorize_partial_capture_then_refunds_apply_to_what_was_captured(
    api: Api,
) -> None:
    user = await register_user(api.client)
    payment = await _authorized(api, user, amount=1000)
    base = f"/api/payments/{payment['id']}"
    captured = await _post(api, user, f"{base}/capture", {"amount": 600})
    assert captured.status_code == 200, captured.text
    assert (captured.json()["status"], captured.json()["amount_captured"]) == ("completed", 600)
    assert await _transactions(api, user) == [("charge", 600, "succeeded")]
    too_much = await _post(api, user, f"{base}/refund", {"amount": 601})
    assert (too_much.status_code, too_much.json()["code"]) == (422, "amount_exceeds_refundable")
    rest = await _post(api, user, f"{base}/refund", {})
    assert (rest.status_code, rest.json()["amount"]) == (201, 600)
    after = await _get(api, user, payment["id"])
    assert (after["status"], after["amount_refunded"]) == ("refunded", 600)
    events = await _events(api, user, payment["id"])
    assert events[:4] == [
        "payment.created",
        "payment.processing",
        "payment.requires_capture",
        "payment.processing",
    ]
    # Written in one transaction, at one instant: either order.
    assert sorted(events[4:6]) == ["payment.captured", "payment.completed"]
    assert events[6:] == ["payment.refunded"]


async def test_a_capture_without_an_amount_takes_the_whole_authorization(api: Api) -> None:
    user = await register_user(api.client)
    payment = await _authorized(api, user, amount=750)
    response = await api.client.post(f"/api/payments/{payment['id']}/capture", headers=user.headers)
    assert response.status_code == 200, response.text
    assert response.json()["amount_captured"] == 750


async def test_capture_refuses_more_than_was_authorized(api: Api) -> None:
    user = await register_user(api.client)
    payment = await _authorized(api, user, amount=500)
    response = await _post(api, user, f"/api/payments/{payment['id']}/capture", {"amount": 501})
    assert (response.status_code, response.json()["code"]) == (422, "amount_exceeds_capturable")
    assert (await _get(api, user, payment["id"]))["status"] == "requires_capture"


@pytest.mark.parametrize("body", [{"amount": 0}, {"amount": "5"}, {"amount": 1.5}, {"x": 1}])
async def test_capture_refuses_a_malformed_body(api: Api, body: dict[str, Any]) -> None:
    user = await register_user(api.client)
    payment = await _authorized(api, user)
    response = await _post(api, user, f"/api/payments/{payment['id']}/capture", body)
    assert response.status_code == 422


async def test_only_an_authorized_payment_can_be_captured(api: Api) -> None:
    user = await register_user(api.client)
    pending = await create_payment(api.client, user, capture="manual")
    response = await _post(api, user, f"/api/payments/{pending['id']}/capture", {})
    assert (response.status_code, response.json()["code"]) == (409, "invalid_state")
    automatic = await create_payment(api.client, user)
    await _process(api, user, automatic["id"])
    response = await _post(api, user, f"/api/payments/{automatic['id']}/capture", {})
    assert (response.status_code, response.json()["code"]) == (409, "invalid_state")
    unknown = await _post(api, user, f"/api/payments/{uuid.uuid4()}/capture", {})
    assert unknown.status_code == 404


async def test_another_users_authorization_is_not_found(api: Api) -> None:
    owner = await register_user(api.client)
    other = await register_user(api.client)
    payment = await _authorized(api, owner)
    for action in ("capture", "cancel"):
        response = await _post(api, other, f"/api/payments/{payment['id']}/{action}", {})
        assert response.status_code == 404
    assert (await _get(api, owner, payment["id"]))["status"] == "requires_capture"


async def test_cancel_voids_an_authorization(api: Api) -> None:
    user = await register_user(api.client)
    payment = await _authorized(api, user)
    response = await _post(api, user, f"/api/payments/{payment['id']}/cancel")
    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["amount_captured"]) == ("canceled", 0)
    assert await _transactions(api, user) == [("charge", 1000, "failed")]
    again = await _post(api, user, f"/api/payments/{payment['id']}/capture", {})
    assert again.status_code == 409
    assert (await _events(api, user, payment["id"]))[-1] == "payment.canceled"


async def test_twenty_parallel_captures_capture_once(api: Api) -> None:
    user = await register_user(api.client)
    payment = await _authorized(api, user, amount=2000)
    path = f"/api/payments/{payment['id']}/capture"
    answers = await asyncio.gather(
        *(_post(api, user, path, {"amount": 100 + i}) for i in range(20))
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [409] * 19, codes
    winner = next(a.json() for a in answers if a.status_code == 200)
    assert (await _get(api, user, payment["id"]))["amount_captured"] == winner["amount_captured"]
    assert await _transactions(api, user) == [("charge", winner["amount_captured"], "succeeded")]
    assert isinstance(api.processor, SimulatorProcessor)
    assert api.processor.charges_made == 1


async def test_a_capture_racing_a_cancel_has_one_winner(api: Api) -> None:
    user = await register_user(api.client)
    for _ in range(5):
        payment = await _authorized(api, user)
        base = f"/api/payments/{payment['id']}"
        capture, cancel = await asyncio.gather(
            _post(api, user, f"{base}/capture", {}), _post(api, user, f"{base}/cancel")
        )
        assert sorted([capture.status_code, cancel.status_code]) == [200, 409]
        final = await _get(api, user, payment["id"])
        assert final["status"] == ("completed" if capture.status_code == 200 else "canceled")


async def test_a_capture_with_an_idempotency_key_is_answered_again_not_repeated(
    api: Api,
) -> None:
    user = await register_user(api.client)
    payment = await _authorized(api, user)
    path = f"/api/payments/{payment['id']}/capture"
    first = await _post(api, user, path, {"amount": 300}, **{"Idempotency-Key": "cap-1"})
    again = await _post(api, user, path, {"amount": 300}, **{"Idempotency-Key": "cap-1"})
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    other = await _post(api, user, path, {"amount": 400}, **{"Idempotency-Key": "cap-1"})
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")


async def test_a_worker_round_voids_an_authorization_older_than_the_expiry(
    api_factory: Any,
) -> None:
    now = [datetime.now(UTC)]
    api: Api = await api_factory(
        clock=lambda: now[0], authorization_expiry_hours=24, access_token_ttl_seconds=86_400
    )
    user = await register_user(api.client)
    old = await _authorized(api, user)
    now[0] += timedelta(hours=23)
    young = await _authorized(api, user)
    now[0] += timedelta(hours=2)
    await Worker(api.container, interval=1, older_than=timedelta(minutes=1)).run_round()
    payments = api.container.payments
    owner = uuid.UUID(user.id)
    assert (await payments.get(owner, uuid.UUID(old["id"]), livemode=False)).status == "canceled"
    young_now = await payments.get(owner, uuid.UUID(young["id"]), livemode=False)
    assert young_now.status == "requires_capture"


# 3-D Secure --------------------------------------------------------------------------------


async def _asks(api: Api, user: User, number: str = THREE_DS, **create: Any) -> dict[str, Any]:
    payment = await create_payment(api.client, user, details=card_details(number), **create)
    response = await _process(api, user, payment["id"], return_url=RETURN_URL)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "requires_action"
    return body


def _page_path(payment: dict[str, Any]) -> str:
    url: str = payment["next_action"]["url"]
    match = re.search(r"/simulator/3ds/[A-Za-z0-9_-]+$", url)
    assert match, url
    return match.group(0)


@pytest.mark.parametrize("number", ["4000002760003184", "4000002500003155", "4000000000003220"])
async def test_a_3ds_card_asks_and_completing_the_challenge_charges_it(
    api: Api, number: str
) -> None:
    user = await register_user(api.client)
    payment = await _asks(api, user, number)
    assert payment["next_action"]["type"] == "redirect_to_url"
    assert payment["next_action"]["return_url"] == RETURN_URL
    page = await api.client.get(_page_path(payment))
    assert page.status_code == 200
    assert "Complete" in page.text
    assert "Fail" in page.text
    assert "<script" not in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    done = await api.client.post(f"{_page_path(payment)}/complete")
    assert done.status_code == 303
    location = done.headers["location"]
    assert location.startswith(RETURN_URL + "?")
    assert f"payment_id={payment['id']}" in location
    assert "redirect_status=succeeded" in location
    after = await _get(api, user, payment["id"])
    assert (after["status"], after["amount_captured"], after["next_action"]) == (
        "completed",
        payment["amount"],
        None,
    )
    events = await _events(api, user, payment["id"])
    assert events[2:] == ["payment.requires_action", "payment.processing", "payment.completed"]


async def test_failing_the_challenge_fails_the_payment_with_authentication_failed(
    api: Api,
) -> None:
    user = await register_user(api.client)
    payment = await _asks(api, user)
    done = await api.client.post(f"{_page_path(payment)}/fail")
    assert done.status_code == 303
    assert "redirect_status=failed" in done.headers["location"]
    after = await _get(api, user, payment["id"])
    assert (after["status"], after["failure_code"]) == ("failed", "authentication_failed")


async def test_the_card_that_declines_after_authentication_fails_with_card_declined(
    api: Api,
) -> None:
    user = await register_user(api.client)
    payment = await _asks(api, user, THREE_DS_DECLINES)
    await api.client.post(f"{_page_path(payment)}/complete")
    after = await _get(api, user, payment["id"])
    assert (after["status"], after["failure_code"]) == ("failed", "card_declined")


async def test_a_manual_3ds_payment_is_authorized_after_the_challenge(api: Api) -> None:
    user = await register_user(api.client)
    payment = await _asks(api, user, capture="manual")
    await api.client.post(f"{_page_path(payment)}/complete")
    assert (await _get(api, user, payment["id"]))["status"] == "requires_capture"
    captured = await _post(api, user, f"/api/payments/{payment['id']}/capture", {"amount": 10})
    assert captured.json()["amount_captured"] == 10


async def test_a_challenge_completed_twice_at_once_charges_once(api: Api) -> None:
    user = await register_user(api.client)
    payment = await _asks(api, user)
    path = f"{_page_path(payment)}/complete"
    answers = await asyncio.gather(*(api.client.post(path) for _ in range(8)))
    assert {a.status_code for a in answers} == {303}
    assert (await _get(api, user, payment["id"]))["status"] == "completed"
    assert isinstance(api.processor, SimulatorProcessor)
    assert api.processor.charges_made == 1
    assert (await _events(api, user, payment["id"])).count("payment.completed") == 1
    # A later "Fail" changes nothing.
    await api.client.post(f"{_page_path(payment)}/fail")
    assert (await _get(api, user, payment["id"]))["status"] == "completed"


async def test_a_payment_waiting_for_its_customer_can_be_canceled_and_its_page_is_spent(
    api: Api,
) -> None:
    user = await register_user(api.client)
    payment = await _asks(api, user)
    canceled = await _post(api, user, f"/api/payments/{payment['id']}/cancel")
    assert (canceled.status_code, canceled.json()["status"]) == (200, "canceled")
    await api.client.post(f"{_page_path(payment)}/complete")
    assert (await _get(api, user, payment["id"]))["status"] == "canceled"
    assert isinstance(api.processor, SimulatorProcessor)
    assert api.processor.charges_made == 0


async def test_an_abandoned_challenge_fails_authentication_once_it_expires(
    api_factory: Any,
) -> None:
    now = [datetime.now(UTC)]
    simulator = SimulatorProcessor(clock=lambda: now[0])
    api: Api = await api_factory(
        processor=simulator, clock=lambda: now[0], access_token_ttl_seconds=86_400
    )
    user = await register_user(api.client)
    payment = await _asks(api, user)
    report = await api.container.payments.reconcile(older_than=timedelta(minutes=5))
    assert report.resumed == 0  # not waited long enough
    now[0] += timedelta(minutes=20)
    report = await api.container.payments.reconcile(older_than=timedelta(minutes=5))
    assert report.resumed == 1
    after = await _get(api, user, payment["id"])
    assert (after["status"], after["failure_code"]) == ("failed", "authentication_failed")
    page = await api.client.get(_page_path(payment))
    assert "expired" in page.text


async def test_an_expired_challenge_page_offers_no_buttons_and_changes_nothing(
    api_factory: Any,
) -> None:
    now = [datetime.now(UTC)]
    simulator = SimulatorProcessor(clock=lambda: now[0])
    api: Api = await api_factory(processor=simulator, clock=lambda: now[0])
    user = await register_user(api.client)
    payment = await _asks(api, user)
    now[0] += timedelta(minutes=16)
    page = await api.client.get(_page_path(payment))
    assert "expired" in page.text
    assert "<button" not in page.text
    await api.client.post(f"{_page_path(payment)}/complete")
    assert simulator.charges_made == 0


async def test_an_unknown_challenge_page_is_404(api: Api) -> None:
    assert (await api.client.get("/simulator/3ds/" + "x" * 43)).status_code == 404
    assert (await api.client.post("/simulator/3ds/" + "x" * 43 + "/complete")).status_code == 404
    assert (await api.client.get("/simulator/3ds/short")).status_code == 404


async def test_a_return_url_must_be_an_absolute_http_url(api: Api) -> None:
    user = await register_user(api.client)
    payment = await create_payment(api.client, user, details=card_details(THREE_DS))
    for bad in [
        "/relative",
        "javascript:alert(1)",
        "ftp://x.example/",
        "https://u:p@x.example/",
        "https://shop.example/back?card=4242424242424242",
    ]:
        response = await _process(api, user, payment["id"], return_url=bad)
        assert response.status_code == 422, bad


async def test_outside_development_a_return_url_must_be_https(api_factory: Any) -> None:
    api: Api = await api_factory(env="test")
    user = await register_user(api.client)
    payment = await create_payment(api.client, user, details=card_details(THREE_DS))
    response = await _process(api, user, payment["id"], return_url="http://shop.example/back")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "return_url"
