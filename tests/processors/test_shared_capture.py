"""Manual capture, void and 3-D Secure, the same for every processor (the simulator, and
Stripe via localstripe), through the Protocol.

localstripe lacks some behaviours of real Stripe. Its 3-D Secure is a `use_stripe_sdk` next
action only, refusing a `return_url` on confirm: the project's wrapper
(deploy/localstripe/kassa_localstripe.py) adds Stripe's `redirect_to_url` and a page with
"Complete" and "Fail", so every 3-D Secure card's path runs on both. It has no store shared
across processes for racing captures (`simulator_only`: the simulator carries that test), and
its PaymentIntents carry no `amount_received`, so a capture's amount is known from the
capture's own answer only (`captured_later`: a later lookup says None, and kassa keeps the
amount it asked to capture)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from kassa.db import Database
from kassa.processors.base import (
    CaptureRequest,
    CardData,
    ChargeDeclined,
    ChargeRequest,
    ChargeResult,
    FailureCode,
    NextAction,
    Outcome,
    Processor,
)
from kassa.processors.simulator import AUTHENTICATING_CARDS, SimulatorProcessor
from kassa.processors.simulator_store import DatabaseSimulatorStore
from tests.conftest import card_details, create_payment, register_user
from tests.processors.conftest import Backend

THREE_DS_APPROVED = ["4000002760003184", "4000002500003155", "4000000000003220"]
THREE_DS_DECLINED = "4000008400001629"


def simulator_only(backend: Backend, why: str) -> None:
    if backend.name != "simulator":
        pytest.skip(f"localstripe lacks it: {why}; the simulator carries this test")


def captured_later(backend: Backend, amount: int) -> int | None:
    """The captured amount a later lookup reports."""
    return None if backend.name == "stripe" else amount


def _request(number: str, *, amount: int = 1000, capture: bool = False) -> ChargeRequest:
    return ChargeRequest(
        reference=f"kassa_charge_{uuid.uuid4().hex}",
        amount=amount,
        currency="EUR",
        customer_id=str(uuid.uuid4()),
        card=CardData(number=number, exp_month=12, exp_year=2030, cvc="123"),
        capture=capture,
    )


async def _charge(
    processor: Processor, request: ChargeRequest
) -> tuple[ChargeRequest, ChargeResult]:
    try:
        reference = await processor.prepare_charge(request)
    except ChargeDeclined as declined:
        return request, declined.result
    request = dataclasses.replace(request, processor_reference=reference)
    return request, await processor.charge(request)


def _capture(request: ChargeRequest, amount: int) -> CaptureRequest:
    return CaptureRequest(request.reference, request.processor_reference, amount, request.currency)


def _key(request: ChargeRequest) -> str:
    return request.processor_reference or request.reference


async def test_a_manual_charge_authorizes_and_moves_no_money(backend: Backend) -> None:
    processor = backend.processor()
    request, result = await _charge(processor, _request(backend.approved_card))
    assert result.outcome is Outcome.AUTHORIZED
    looked_up = await processor.lookup_charge(_key(request))
    assert looked_up is not None
    assert looked_up.outcome is Outcome.AUTHORIZED


async def test_authorize_then_capture_part_takes_that_part(backend: Backend) -> None:
    processor = backend.processor()
    request, _ = await _charge(processor, _request(backend.approved_card, amount=1000))
    captured = await processor.capture(_capture(request, 600))
    assert captured.outcome is Outcome.SUCCEEDED
    assert captured.amount_captured == 600
    looked_up = await processor.lookup_charge(_key(request))
    assert looked_up is not None
    assert (looked_up.outcome, looked_up.amount_captured) == (
        Outcome.SUCCEEDED,
        captured_later(backend, 600),
    )


async def test_capturing_again_answers_the_first_capture(backend: Backend) -> None:
    processor = backend.processor()
    request, _ = await _charge(processor, _request(backend.approved_card, amount=1000))
    first = await processor.capture(_capture(request, 400))
    again = await processor.capture(_capture(request, 1000))
    assert (again.outcome, again.amount_captured) == (
        Outcome.SUCCEEDED,
        captured_later(backend, 400),
    )
    assert first.amount_captured == 400


async def test_a_void_releases_the_authorization_and_nothing_can_be_captured_after(
    backend: Backend,
) -> None:
    processor = backend.processor()
    request, _ = await _charge(processor, _request(backend.approved_card))
    voided = await processor.void(_key(request))
    assert voided.outcome is Outcome.VOIDED
    captured = await processor.capture(_capture(request, 1000))
    assert captured.outcome is not Outcome.SUCCEEDED
    looked_up = await processor.lookup_charge(_key(request))
    assert looked_up is not None
    assert looked_up.outcome is Outcome.VOIDED


async def test_a_void_after_the_capture_answers_the_capture(backend: Backend) -> None:
    processor = backend.processor()
    request, _ = await _charge(processor, _request(backend.approved_card))
    await processor.capture(_capture(request, 1000))
    answer = await processor.void(_key(request))
    assert answer.outcome is Outcome.SUCCEEDED


async def test_a_capture_above_the_authorization_takes_nothing(backend: Backend) -> None:
    processor = backend.processor()
    request, _ = await _charge(processor, _request(backend.approved_card, amount=500))
    answer = await processor.capture(_capture(request, 501))
    assert answer.outcome is not Outcome.SUCCEEDED
    looked_up = await processor.lookup_charge(_key(request))
    assert looked_up is not None
    assert looked_up.outcome is Outcome.AUTHORIZED


async def test_twenty_racing_captures_and_voids_of_one_authorization_have_one_winner(
    backend: Backend, store_db: Database
) -> None:
    simulator_only(backend, "a shared store that races across connections")
    processors = [backend.processor(store_db) for _ in range(4)]
    request, _ = await _charge(processors[0], _request(backend.approved_card, amount=1000))
    calls = [
        processors[i % 4].capture(_capture(request, 100 + i))
        if i % 2
        else processors[i % 4].void(request.reference)
        for i in range(20)
    ]
    answers = await asyncio.gather(*calls)
    final = await processors[0].lookup_charge(request.reference)
    assert final is not None
    assert final.outcome in {Outcome.SUCCEEDED, Outcome.VOIDED}
    if final.outcome is Outcome.SUCCEEDED:
        assert {a.amount_captured for a in answers if a.outcome is Outcome.SUCCEEDED} == {
            final.amount_captured
        }
    else:
        assert all(a.outcome is Outcome.VOIDED for a in answers)


# 3-D Secure ----------------------------------------------------------------------------------


async def _authenticate(
    backend: Backend, processor: Processor, asked: ChargeResult, *, ok: bool
) -> None:
    """The customer at the page `asked.next_action` names presses "Complete" (or "Fail")."""
    assert asked.next_action is not None
    if isinstance(processor, SimulatorProcessor):
        await processor.finish_challenge(_token(asked), authenticated=ok)
        return
    async with httpx.AsyncClient() as client:  # the wrapper's page of localstripe
        answer = await client.post(f"{asked.next_action.url}/{'complete' if ok else 'fail'}")
    assert answer.status_code == 303


@pytest.mark.parametrize("number", [*THREE_DS_APPROVED, THREE_DS_DECLINED])
async def test_a_3ds_card_asks_for_authentication(backend: Backend, number: str) -> None:
    processor = backend.processor()
    request, result = await _charge(
        processor,
        dataclasses.replace(_request(number, capture=True), return_url="https://shop.example/back"),
    )
    assert result.outcome is Outcome.REQUIRES_ACTION
    assert result.next_action is not None
    assert result.next_action.type == "redirect_to_url"
    assert result.next_action.url.startswith("http")
    again = await processor.charge(dataclasses.replace(request, attempt=2))
    assert again == result  # a retried charge points to the same page
    looked_up = await processor.lookup_charge(_key(request))
    assert looked_up == result  # waiting for the customer


@pytest.mark.parametrize(
    ("number", "ok", "outcome", "failure"),
    [
        *[(n, True, Outcome.SUCCEEDED, None) for n in THREE_DS_APPROVED],
        (THREE_DS_DECLINED, True, Outcome.FAILED, FailureCode.CARD_DECLINED),
        (THREE_DS_APPROVED[0], False, Outcome.FAILED, FailureCode.AUTHENTICATION_FAILED),
    ],
)
async def test_each_3ds_cards_path_once_the_customer_is_back(
    backend: Backend, number: str, ok: bool, outcome: Outcome, failure: FailureCode | None
) -> None:
    processor = backend.processor()
    request, asked = await _charge(
        processor,
        dataclasses.replace(_request(number, capture=True), return_url="https://shop.example/b"),
    )
    await _authenticate(backend, processor, asked, ok=ok)
    looked_up = await processor.lookup_charge(_key(request))
    assert looked_up is not None
    assert (looked_up.outcome, looked_up.failure_code) == (outcome, failure)


async def test_a_3ds_card_without_a_page_to_send_the_customer_to_fails_authentication(
    backend: Backend,
) -> None:
    if backend.name == "simulator":
        pytest.skip("the simulator always has its challenge page")
    processor = backend.processor()
    _, result = await _charge(processor, _request(THREE_DS_APPROVED[0], capture=True))
    assert (result.outcome, result.failure_code) == (
        Outcome.FAILED,
        FailureCode.AUTHENTICATION_FAILED,
    )


def _token(result: ChargeResult) -> str:
    assert result.next_action is not None
    return result.next_action.url.rsplit("/", 1)[1]


@pytest.mark.parametrize(
    ("number", "capture", "authenticated", "outcome", "failure"),
    [
        *[(n, True, True, Outcome.SUCCEEDED, None) for n in THREE_DS_APPROVED],
        (THREE_DS_APPROVED[0], False, True, Outcome.AUTHORIZED, None),
        (THREE_DS_DECLINED, True, True, Outcome.FAILED, FailureCode.CARD_DECLINED),
        (THREE_DS_APPROVED[0], True, False, Outcome.FAILED, FailureCode.AUTHENTICATION_FAILED),
    ],
)
async def test_each_3ds_cards_path_through_the_simulators_challenge(
    number: str,
    capture: bool,
    authenticated: bool,
    outcome: Outcome,
    failure: FailureCode | None,
) -> None:
    assert number in AUTHENTICATING_CARDS
    simulator = SimulatorProcessor()
    request, asked = await _charge(simulator, _request(number, capture=capture))
    answer = await simulator.finish_challenge(_token(asked), authenticated=authenticated)
    assert answer is not None
    assert (answer.result.outcome, answer.result.failure_code) == (outcome, failure)
    looked_up = await simulator.lookup_charge(request.reference)
    assert looked_up is not None
    assert (looked_up.outcome, looked_up.failure_code) == (outcome, failure)
    assert simulator.charges_made == (1 if outcome is Outcome.SUCCEEDED else 0)


async def test_a_challenge_finished_twice_at_once_charges_once(
    store_db: Database,
) -> None:
    simulators = [SimulatorProcessor(DatabaseSimulatorStore(store_db)) for _ in range(4)]
    _, asked = await _charge(simulators[0], _request(THREE_DS_APPROVED[0], capture=True))
    token = _token(asked)
    answers = await asyncio.gather(
        *(simulators[i % 4].finish_challenge(token, authenticated=i % 3 != 0) for i in range(12))
    )
    winners = [a for a in answers if a is not None]
    assert len(winners) == 1
    assert await simulators[0].finish_challenge(token, authenticated=True) is None


async def test_a_challenge_left_open_past_its_expiry_fails_authentication() -> None:
    now = [datetime(2030, 1, 1, tzinfo=UTC)]
    simulator = SimulatorProcessor(clock=lambda: now[0], challenge_ttl=timedelta(minutes=15))
    request, asked = await _charge(simulator, _request(THREE_DS_APPROVED[0], capture=True))
    now[0] += timedelta(minutes=16)
    assert await simulator.finish_challenge(_token(asked), authenticated=True) is None
    looked_up = await simulator.lookup_charge(request.reference)
    assert looked_up is not None
    assert (looked_up.outcome, looked_up.failure_code) == (
        Outcome.FAILED,
        FailureCode.AUTHENTICATION_FAILED,
    )


async def test_a_void_of_a_charge_waiting_for_its_customer_closes_the_challenge() -> None:
    simulator = SimulatorProcessor()
    request, asked = await _charge(simulator, _request(THREE_DS_APPROVED[0], capture=True))
    assert (await simulator.void(request.reference)).outcome is Outcome.VOIDED
    assert await simulator.finish_challenge(_token(asked), authenticated=True) is None
    assert simulator.charges_made == 0


# Through kassa -------------------------------------------------------------------------------


async def _kassa(backend: Backend, api_factory: Any, store_db: Database) -> tuple[Any, Any]:
    api = await api_factory(processor=backend.processor(store_db))
    return api, await register_user(api.client)


async def _authorized_payment(api: Any, user: Any, backend: Backend, amount: int) -> str:
    payment = await create_payment(
        api.client,
        user,
        amount=amount,
        details=card_details(backend.approved_card),
        capture="manual",
    )
    response = await api.client.post(
        "/api/payments/process", json={"payment_id": payment["id"]}, headers=user.headers
    )
    assert response.json()["status"] == "requires_capture", response.text
    payment_id: str = payment["id"]
    return payment_id


async def test_authorize_partial_capture_and_refund_through_kassa(
    backend: Backend, api_factory: Any, store_db: Database
) -> None:
    api, user = await _kassa(backend, api_factory, store_db)
    payment_id = await _authorized_payment(api, user, backend, 1000)
    base = f"/api/payments/{payment_id}"
    captured = await api.client.post(f"{base}/capture", json={"amount": 600}, headers=user.headers)
    assert (captured.json()["status"], captured.json()["amount_captured"]) == ("completed", 600)
    refund = await api.client.post(f"{base}/refund", json={}, headers=user.headers)
    assert (refund.status_code, refund.json()["amount"], refund.json()["status"]) == (
        201,
        600,
        "succeeded",
    )
    after = (await api.client.get(base, headers=user.headers)).json()
    assert (after["status"], after["amount_refunded"]) == ("refunded", 600)


async def test_authorize_then_void_through_kassa(
    backend: Backend, api_factory: Any, store_db: Database
) -> None:
    api, user = await _kassa(backend, api_factory, store_db)
    payment_id = await _authorized_payment(api, user, backend, 800)
    canceled = await api.client.post(f"/api/payments/{payment_id}/cancel", headers=user.headers)
    assert (canceled.status_code, canceled.json()["status"]) == (200, "canceled")
    if backend.localstripe is None:
        assert await backend.money_moved(user.id, [payment_id], store_db) == 0
    else:  # an authorization is a charge Stripe holds uncaptured; after the void, none is
        charges = await backend.localstripe.get(
            "/v1/charges", customer=await backend.customer_of(user.id), limit=100
        )
        assert not any(charge["captured"] for charge in charges["data"])


async def test_the_worker_voids_an_expired_authorization_through_kassa(
    backend: Backend, api_factory: Any, store_db: Database
) -> None:
    now = [datetime.now(UTC)]
    api = await api_factory(
        processor=backend.processor(store_db),
        clock=lambda: now[0],
        authorization_expiry_hours=1,
    )
    user = await register_user(api.client)
    payment_id = await _authorized_payment(api, user, backend, 500)
    now[0] += timedelta(hours=2)
    assert await api.container.payments.expire_authorizations() == 1
    after = await api.container.payments.get(
        uuid.UUID(user.id), uuid.UUID(payment_id), livemode=False
    )
    assert after.status == "canceled"


async def test_a_3ds_payment_through_kassa_settles_when_the_customer_is_back(
    backend: Backend, api_factory: Any, store_db: Database
) -> None:
    api, user = await _kassa(backend, api_factory, store_db)
    payment = await create_payment(
        api.client, user, amount=1200, details=card_details(THREE_DS_APPROVED[0])
    )
    asked = await api.client.post(
        "/api/payments/process",
        json={"payment_id": payment["id"], "return_url": "https://shop.example/back"},
        headers=user.headers,
    )
    assert asked.json()["status"] == "requires_action", asked.text
    url = asked.json()["next_action"]["url"]
    if backend.name == "simulator":  # kassa's own page, which resumes the payment itself
        answer = await api.client.post(f"{url.split('127.0.0.1:8000', 1)[1]}/complete")
    else:  # Stripe's page (the wrapper's) sends the customer back to kassa's return page
        async with httpx.AsyncClient() as client:
            at_stripe = await client.post(f"{url}/complete")
        assert at_stripe.status_code == 303
        back = urlsplit(at_stripe.headers["location"])
        assert back.path == f"/payments/{payment['id']}/return"
        forged = await api.client.get(f"{back.path}?sig=forged")
        assert forged.status_code == 404
        answer = await api.client.get(f"{back.path}?{back.query}")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("https://shop.example/back?")
    assert "redirect_status=succeeded" in answer.headers["location"]
    after = (await api.client.get(f"/api/payments/{payment['id']}", headers=user.headers)).json()
    assert (after["status"], after["amount_captured"]) == ("completed", 1200)
    assert await backend.money_moved(user.id, [payment["id"]], store_db) == 1


async def test_a_3ds_payment_whose_customer_never_came_back_to_kassa_settles_by_lookup(
    backend: Backend, api_factory: Any, store_db: Database
) -> None:
    api, user = await _kassa(backend, api_factory, store_db)
    payment = await create_payment(
        api.client, user, amount=1300, details=card_details(THREE_DS_APPROVED[1])
    )
    asked = await api.client.post(
        "/api/payments/process",
        json={"payment_id": payment["id"], "return_url": "https://shop.example/back"},
        headers=user.headers,
    )
    processor = api.container.processor
    result = ChargeResult(
        Outcome.REQUIRES_ACTION,
        "",
        next_action=NextAction(url=asked.json()["next_action"]["url"]),
    )
    await _authenticate(backend, processor, result, ok=True)  # the return is lost
    report = await api.container.payments.reconcile(older_than=timedelta(0))
    assert report.resumed == 1
    after = (await api.client.get(f"/api/payments/{payment['id']}", headers=user.headers)).json()
    assert after["status"] == "completed"
