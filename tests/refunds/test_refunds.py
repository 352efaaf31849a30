"""POST /api/payments/{id}/refund: never more than what is left, only from a completed or
partially refunded payment."""

from __future__ import annotations

from typing import Any

import pytest

from kassa.processors.base import Outcome, ProcessorUnavailable, RefundRequest, RefundResult
from kassa.processors.simulator import SimulatorProcessor
from tests.conftest import (
    Api,
    User,
    card_details,
    completed_payment,
    create_payment,
    register_user,
)
from tests.payments import REFUND_KEYS, assert_invalid, assert_problem


class RefundsUnanswered(SimulatorProcessor):
    """Charges like the simulator; a refund's answer never arrives."""

    async def refund(self, request: RefundRequest) -> RefundResult:
        raise ProcessorUnavailable("timed out")


class RefundsDeclined(SimulatorProcessor):
    """Charges like the simulator; every refund is declined."""

    async def refund(self, request: RefundRequest) -> RefundResult:
        return RefundResult(outcome=Outcome.FAILED, processor_reference="sim_re_declined")


async def _refund(api: Api, user: User, payment_id: str, body: Any = None) -> Any:
    return await api.client.post(
        f"/api/payments/{payment_id}/refund",
        json=body if body is not None else {},
        headers=user.headers,
    )


async def _status(api: Api, user: User, payment_id: str) -> dict[str, Any]:
    response = await api.client.get(f"/api/payments/{payment_id}/status", headers=user.headers)
    body: dict[str, Any] = response.json()
    return body


async def _refund_transactions(api: Api, user: User) -> list[dict[str, Any]]:
    response = await api.client.get(
        "/api/transactions", params={"type": "refund"}, headers=user.headers
    )
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def test_full_refund_without_an_amount_refunds_everything(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user, amount=1050)
    response = await _refund(api, user, payment["id"])
    assert response.status_code == 201, response.text
    refund = response.json()
    assert set(refund) == REFUND_KEYS
    assert refund["status"] == "succeeded"
    assert refund["amount"] == 1050
    assert refund["currency"] == "USD"
    assert refund["payment_id"] == payment["id"]
    assert refund["reason"] is None
    status = await _status(api, user, payment["id"])
    assert (status["status"], status["amount_refunded"]) == ("refunded", 1050)


async def test_refund_with_no_body_at_all_refunds_everything(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user, amount=800)
    response = await api.client.post(f"/api/payments/{payment['id']}/refund", headers=user.headers)
    assert response.status_code == 201, response.text
    assert response.json()["amount"] == 800


async def test_refund_keeps_its_reason(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user)
    response = await _refund(api, user, payment["id"], {"amount": 50, "reason": "damaged"})
    assert response.status_code == 201
    assert response.json()["reason"] == "damaged"


async def test_partial_refunds_sum_up_to_the_amount(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user, amount=1000)
    first = await _refund(api, user, payment["id"], {"amount": 300})
    assert first.status_code == 201
    assert await _status(api, user, payment["id"]) | {"updated_at": None} == {
        "id": payment["id"],
        "status": "partially_refunded",
        "amount": 1000,
        "amount_captured": 1000,
        "amount_refunded": 300,
        "currency": "USD",
        "updated_at": None,
    }
    second = await _refund(api, user, payment["id"], {"amount": 600})
    assert second.status_code == 201
    status = await _status(api, user, payment["id"])
    assert (status["status"], status["amount_refunded"]) == ("partially_refunded", 900)
    rest = await _refund(api, user, payment["id"])
    assert rest.status_code == 201
    assert rest.json()["amount"] == 100
    status = await _status(api, user, payment["id"])
    assert (status["status"], status["amount_refunded"]) == ("refunded", 1000)


async def test_partial_refund_of_exactly_what_is_left_completes_the_refund(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user, amount=1000)
    await _refund(api, user, payment["id"], {"amount": 999})
    last = await _refund(api, user, payment["id"], {"amount": 1})
    assert last.status_code == 201
    assert (await _status(api, user, payment["id"]))["status"] == "refunded"


async def test_refund_exceeding_what_is_left_is_refused_and_changes_nothing(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user, amount=1000)
    await _refund(api, user, payment["id"], {"amount": 400})
    before = await _status(api, user, payment["id"])
    response = await _refund(api, user, payment["id"], {"amount": 601})
    body = assert_problem(response, 422, "amount_exceeds_refundable")
    assert [e["field"] for e in body["errors"]] == ["amount"]
    assert await _status(api, user, payment["id"]) == before
    assert len(await _refund_transactions(api, user)) == 1


async def test_refund_of_more_than_the_payment_is_refused(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user, amount=1000)
    assert_problem(
        await _refund(api, user, payment["id"], {"amount": 1001}), 422, "amount_exceeds_refundable"
    )
    assert (await _status(api, user, payment["id"]))["status"] == "completed"


async def test_refund_of_a_pending_payment_is_an_invalid_state(api: Api) -> None:
    user = await register_user(api.client)
    payment = await create_payment(api.client, user)
    assert_problem(await _refund(api, user, payment["id"]), 409, "invalid_state")


async def test_refund_of_a_failed_payment_is_an_invalid_state(api: Api) -> None:
    user = await register_user(api.client)
    payment = await create_payment(api.client, user, details=card_details("4000000000000002"))
    await api.client.post(
        "/api/payments/process", json={"payment_id": payment["id"]}, headers=user.headers
    )
    assert_problem(await _refund(api, user, payment["id"], {"amount": 1}), 409, "invalid_state")


async def test_refund_of_a_canceled_payment_is_an_invalid_state(api: Api) -> None:
    user = await register_user(api.client)
    payment = await create_payment(api.client, user)
    await api.client.post(f"/api/payments/{payment['id']}/cancel", headers=user.headers)
    assert_problem(await _refund(api, user, payment["id"]), 409, "invalid_state")


async def test_refund_of_a_refunded_payment_is_an_invalid_state(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user)
    await _refund(api, user, payment["id"])
    assert_problem(await _refund(api, user, payment["id"]), 409, "invalid_state")
    assert_problem(await _refund(api, user, payment["id"], {"amount": 1}), 409, "invalid_state")
    assert len(await _refund_transactions(api, user)) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": 100, "status": "succeeded"}, "status"),
        ({"payment_id": "x"}, "payment_id"),
        ({"amount": 10.5}, "amount"),
        ({"amount": 10.0}, "amount"),
        ({"amount": "100"}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": 0}, "amount"),
        ({"amount": -100}, "amount"),
        ({"reason": 5}, "reason"),
        ({"reason": "r" * 501}, "reason"),
    ],
)
async def test_invalid_refund_body_is_refused_and_changes_nothing(
    api: Api, body: dict[str, Any], field: str
) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user)
    assert_invalid(await _refund(api, user, payment["id"], body), field)
    status = await _status(api, user, payment["id"])
    assert (status["status"], status["amount_refunded"]) == ("completed", 0)
    assert await _refund_transactions(api, user) == []


@pytest.mark.parametrize("body", [[], "x", 5])
async def test_refund_body_that_is_not_an_object_is_refused(api: Api, body: Any) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user)
    response = await _refund(api, user, payment["id"], body)
    assert response.status_code == 422, response.text
    assert (await _status(api, user, payment["id"]))["amount_refunded"] == 0


async def test_jpy_payment_is_refunded_in_whole_yen(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user, amount=500, currency="jpy")
    partial = await _refund(api, user, payment["id"], {"amount": 1})
    assert partial.status_code == 201
    assert (partial.json()["amount"], partial.json()["currency"]) == (1, "JPY")
    rest = await _refund(api, user, payment["id"])
    assert (rest.json()["amount"], rest.json()["currency"]) == (499, "JPY")
    status = await _status(api, user, payment["id"])
    assert (status["status"], status["amount_refunded"], status["currency"]) == (
        "refunded",
        500,
        "JPY",
    )


async def test_each_refund_records_a_refund_transaction(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user, amount=1000, method="digital_wallet")
    first = (await _refund(api, user, payment["id"], {"amount": 100})).json()
    second = (await _refund(api, user, payment["id"], {"amount": 200})).json()
    transactions = await _refund_transactions(api, user)
    assert [(t["amount"], t["status"]) for t in transactions] == [
        (200, "succeeded"),
        (100, "succeeded"),
    ]
    assert {t["payment_id"] for t in transactions} == {payment["id"]}
    assert {t["payment_method"] for t in transactions} == {"digital_wallet"}
    assert first["id"] != second["id"]


async def test_refund_with_an_unknown_outcome_is_pending_and_holds_its_amount(
    api_factory: Any,
) -> None:
    api: Api = await api_factory(processor=RefundsUnanswered())
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user, amount=1000)
    response = await _refund(api, user, payment["id"], {"amount": 700})
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "pending"
    status = await _status(api, user, payment["id"])
    assert (status["status"], status["amount_refunded"]) == ("completed", 0)
    [transaction] = await _refund_transactions(api, user)
    assert transaction["status"] == "pending"
    # What is held by the pending refund cannot be refunded again.
    assert_problem(
        await _refund(api, user, payment["id"], {"amount": 301}), 422, "amount_exceeds_refundable"
    )
    left = await _refund(api, user, payment["id"])
    assert left.status_code == 201
    assert left.json()["amount"] == 300


async def test_declined_refund_fails_and_releases_its_amount(api_factory: Any) -> None:
    api: Api = await api_factory(processor=RefundsDeclined())
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user, amount=1000)
    response = await _refund(api, user, payment["id"], {"amount": 1000})
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "failed"
    status = await _status(api, user, payment["id"])
    assert (status["status"], status["amount_refunded"]) == ("completed", 0)
    [transaction] = await _refund_transactions(api, user)
    assert transaction["status"] == "failed"
    again = await _refund(api, user, payment["id"], {"amount": 1000})
    assert again.status_code == 201
