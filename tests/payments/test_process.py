"""POST /api/payments/process: the processor decides, never the client; a payment is charged
at most once; an unknown outcome leaves it `processing`."""

from __future__ import annotations

from typing import Any

import pytest

from kassa.processors.base import (
    ChargeRequest,
    ChargeResult,
    ProcessorUnavailable,
    RefundRequest,
    RefundResult,
)
from tests.conftest import Api, User, card_details, create_payment, register_user
from tests.payments import DECLINING_CARDS, PAYMENT_KEYS, assert_invalid, assert_problem


class UnavailableProcessor:
    """A processor whose answer never arrives."""

    name = "unavailable"

    def __init__(self) -> None:
        self.charges: list[ChargeRequest] = []

    async def prepare_charge(self, request: ChargeRequest) -> str | None:
        return None  # charges under kassa's reference, like the simulator

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        self.charges.append(request)
        raise ProcessorUnavailable("connection reset")

    async def refund(self, request: RefundRequest) -> RefundResult:
        raise ProcessorUnavailable("connection reset")

    async def lookup_charge(self, reference: str) -> ChargeResult | None:
        return None


async def _process(api: Api, user: User, payment_id: Any, key: str = "payment_id") -> Any:
    return await api.client.post(
        "/api/payments/process", json={key: payment_id}, headers=user.headers
    )


async def _charges(api: Api, user: User) -> list[dict[str, Any]]:
    response = await api.client.get(
        "/api/transactions", params={"type": "charge"}, headers=user.headers
    )
    assert response.status_code == 200
    data: list[dict[str, Any]] = response.json()["data"]
    return data


@pytest.mark.parametrize("number", ["4242424242424242", "5555555555554444", "4000056655665556"])
async def test_approved_card_completes(api: Api, number: str) -> None:
    user = await register_user(api.client)
    payment = await create_payment(api.client, user, details=card_details(number))
    response = await _process(api, user, payment["id"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == PAYMENT_KEYS
    assert body["status"] == "completed"
    assert body["failure_code"] is None
    assert body["failure_message"] is None
    assert body["amount_refunded"] == 0


@pytest.mark.parametrize(("number", "code"), sorted(DECLINING_CARDS.items()))
async def test_declining_card_fails_with_its_failure_code(api: Api, number: str, code: str) -> None:
    user = await register_user(api.client)
    payment = await create_payment(api.client, user, details=card_details(number))
    response = await _process(api, user, payment["id"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "failed"
    assert body["failure_code"] == code
    assert isinstance(body["failure_message"], str)
    assert body["failure_message"]


async def test_processed_outcome_is_what_get_returns_afterwards(api: Api) -> None:
    user = await register_user(api.client)
    payment = await create_payment(api.client, user, details=card_details("4000000000009995"))
    processed = (await _process(api, user, payment["id"])).json()
    fetched = await api.client.get(f"/api/payments/{payment['id']}", headers=user.headers)
    assert fetched.json() == processed
    assert processed["updated_at"] >= payment["updated_at"]
    assert processed["created_at"] == payment["created_at"]


async def test_wallet_token_starting_with_declined_fails_as_card_declined(api: Api) -> None:
    user = await register_user(api.client)
    details = {"wallet": "google_pay", "token": "declined_by_issuer"}
    payment = await create_payment(api.client, user, method="digital_wallet", details=details)
    response = await _process(api, user, payment["id"])
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "failed"
    assert response.json()["failure_code"] == "card_declined"


@pytest.mark.parametrize("wallet", ["apple_pay", "google_pay", "paypal"])
async def test_wallet_with_any_other_token_completes(api: Api, wallet: str) -> None:
    user = await register_user(api.client)
    details = {"wallet": wallet, "token": "tok_declined_later"}
    payment = await create_payment(api.client, user, method="digital_wallet", details=details)
    response = await _process(api, user, payment["id"])
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "completed"
    assert response.json()["details"] == {"wallet": wallet}


async def test_payment_id_is_accepted_in_camel_case(api: Api) -> None:
    user = await register_user(api.client)
    payment = await create_payment(api.client, user)
    response = await _process(api, user, payment["id"], key="paymentId")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "completed"


async def test_both_payment_id_spellings_at_once_are_refused(api: Api) -> None:
    user = await register_user(api.client)
    payment = await create_payment(api.client, user)
    response = await api.client.post(
        "/api/payments/process",
        json={"payment_id": payment["id"], "paymentId": payment["id"]},
        headers=user.headers,
    )
    assert_invalid(response)
    status = await api.client.get(f"/api/payments/{payment['id']}/status", headers=user.headers)
    assert status.json()["status"] == "pending"


@pytest.mark.parametrize("body", [{}, {"payment_id": None}, {"paymentId": None}])
async def test_process_without_a_payment_id_is_refused(api: Api, body: dict[str, Any]) -> None:
    user = await register_user(api.client)
    response = await api.client.post("/api/payments/process", json=body, headers=user.headers)
    assert_invalid(response)


@pytest.mark.parametrize("value", [123, True, ["x"], {"id": "x"}])
async def test_process_with_a_non_string_payment_id_is_refused(api: Api, value: Any) -> None:
    user = await register_user(api.client)
    assert_invalid(await _process(api, user, value), "payment_id")


async def test_process_with_an_unknown_field_is_refused(api: Api) -> None:
    user = await register_user(api.client)
    payment = await create_payment(api.client, user)
    response = await api.client.post(
        "/api/payments/process",
        json={"payment_id": payment["id"], "status": "completed"},
        headers=user.headers,
    )
    assert_invalid(response, "status")


@pytest.mark.parametrize(
    "payment_id",
    ["abc", "", " ", "00000000-0000-0000-0000-000000000000", "5e0f4c1e-0000-4000-8000-00000000000"],
)
async def test_process_of_an_unknown_or_malformed_id_is_not_found(
    api: Api, payment_id: str
) -> None:
    user = await register_user(api.client)
    assert_problem(await _process(api, user, payment_id), 404, "payment_not_found")


async def test_process_of_another_users_payment_is_not_found_like_an_unknown_id(api: Api) -> None:
    owner = await register_user(api.client)
    intruder = await register_user(api.client)
    payment = await create_payment(api.client, owner)
    theirs = await _process(api, intruder, payment["id"])
    unknown = await _process(api, intruder, "7d4f5b8e-2c1a-4e6b-9f3d-0a1b2c3d4e5f")
    assert_problem(theirs, 404, "payment_not_found")
    assert theirs.json() == unknown.json()
    status = await api.client.get(f"/api/payments/{payment['id']}/status", headers=owner.headers)
    assert status.json()["status"] == "pending"


async def test_processing_twice_is_an_invalid_state_and_charges_once(api: Api) -> None:
    user = await register_user(api.client)
    payment = await create_payment(api.client, user)
    assert (await _process(api, user, payment["id"])).status_code == 200
    again = await _process(api, user, payment["id"], key="paymentId")
    assert_problem(again, 409, "invalid_state")
    assert api.container.processor.charges_made == 1  # type: ignore[attr-defined]
    assert len(await _charges(api, user)) == 1


async def test_processing_a_failed_payment_again_is_an_invalid_state(api: Api) -> None:
    user = await register_user(api.client)
    payment = await create_payment(api.client, user, details=card_details("4000000000000002"))
    assert (await _process(api, user, payment["id"])).json()["status"] == "failed"
    assert_problem(await _process(api, user, payment["id"]), 409, "invalid_state")


async def test_processing_a_canceled_payment_is_an_invalid_state(api: Api) -> None:
    user = await register_user(api.client)
    payment = await create_payment(api.client, user)
    cancel = await api.client.post(f"/api/payments/{payment['id']}/cancel", headers=user.headers)
    assert cancel.status_code == 200
    assert_problem(await _process(api, user, payment["id"]), 409, "invalid_state")
    assert await _charges(api, user) == []


async def test_unknown_processor_outcome_answers_202_processing(api_factory: Any) -> None:
    processor = UnavailableProcessor()
    api: Api = await api_factory(processor=processor)
    user = await register_user(api.client)
    payment = await create_payment(api.client, user)
    response = await _process(api, user, payment["id"])
    assert response.status_code == 202, response.text
    assert set(response.json()) == PAYMENT_KEYS
    assert response.json()["status"] == "processing"
    assert response.json()["failure_code"] is None
    assert len(processor.charges) == 1
    status = await api.client.get(f"/api/payments/{payment['id']}/status", headers=user.headers)
    assert status.json()["status"] == "processing"


async def test_unknown_processor_outcome_leaves_a_pending_charge(api_factory: Any) -> None:
    api: Api = await api_factory(processor=UnavailableProcessor())
    user = await register_user(api.client)
    payment = await create_payment(api.client, user, amount=777, currency="eur")
    await _process(api, user, payment["id"])
    [charge] = await _charges(api, user)
    assert charge["status"] == "pending"
    assert (charge["payment_id"], charge["amount"], charge["currency"]) == (
        payment["id"],
        777,
        "EUR",
    )


async def test_processing_again_while_the_outcome_is_unknown_is_an_invalid_state(
    api_factory: Any,
) -> None:
    processor = UnavailableProcessor()
    api: Api = await api_factory(processor=processor)
    user = await register_user(api.client)
    payment = await create_payment(api.client, user)
    assert (await _process(api, user, payment["id"])).status_code == 202
    assert_problem(await _process(api, user, payment["id"]), 409, "invalid_state")
    assert len(processor.charges) == 1


async def test_a_processing_payment_cannot_be_canceled_or_refunded(api_factory: Any) -> None:
    api: Api = await api_factory(processor=UnavailableProcessor())
    user = await register_user(api.client)
    payment = await create_payment(api.client, user)
    await _process(api, user, payment["id"])
    base = f"/api/payments/{payment['id']}"
    assert_problem(
        await api.client.post(f"{base}/cancel", headers=user.headers), 409, "invalid_state"
    )
    refund = await api.client.post(f"{base}/refund", json={}, headers=user.headers)
    assert_problem(refund, 409, "invalid_state")


async def test_charge_is_asked_with_a_reference_stable_for_the_payment(api_factory: Any) -> None:
    processor = UnavailableProcessor()
    api: Api = await api_factory(processor=processor)
    user = await register_user(api.client)
    payment = await create_payment(api.client, user, amount=1234, currency="jpy")
    await _process(api, user, payment["id"])
    [request] = processor.charges
    assert payment["id"].replace("-", "") in request.reference
    assert (request.amount, request.currency) == (1234, "JPY")
    assert request.card is not None
    assert request.card.number == "4242424242424242"
    assert request.card.cvc == "123"
    assert request.wallet is None


async def test_processor_error_message_never_reaches_the_client(api_factory: Any) -> None:
    api: Api = await api_factory(processor=UnavailableProcessor())
    user = await register_user(api.client)
    payment = await create_payment(api.client, user)
    response = await _process(api, user, payment["id"])
    assert "connection reset" not in response.text
