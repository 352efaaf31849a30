"""Card data at rest: the number and CVC are never stored in clear; the CVC is destroyed when
the payment is processed or canceled, the sealed number once the charge is settled."""

from __future__ import annotations

import uuid
from typing import Any

from kassa.payments.models import PaymentSecret
from tests.conftest import Api, User, card_details, create_payment, register_user, stored
from tests.payments import dump_database, random_visa, rows_about, without_ids
from tests.payments.test_process import UnavailableProcessor

CVC = "9173"


async def _secret(api: Api, payment_id: str) -> PaymentSecret | None:
    return await stored(api.container.db, PaymentSecret, uuid.UUID(payment_id))


async def _card_payment(api: Api, number: str) -> tuple[User, dict[str, Any]]:
    user = await register_user(api.client)
    details = card_details(number, cvc=CVC, holder_name="Grace Hopper")
    return user, await create_payment(api.client, user, details=details)


def _assert_nowhere_in_clear(dump: dict[str, list[str]], number: str, payment_id: str) -> None:
    everything = "\n".join(row for rows in dump.values() for row in rows)
    assert number not in everything
    assert number[:12] not in everything
    assert " ".join(number[i : i + 4] for i in range(0, 16, 4)) not in everything
    about = "\n".join(rows_about(dump, payment_id))
    assert about, "the payment's own rows were not found in the dump"
    assert CVC not in about
    assert '"cvc"' not in about


async def test_created_payment_stores_neither_number_nor_cvc_in_clear(api: Api) -> None:
    number = random_visa()
    _, payment = await _card_payment(api, number)
    dump = await dump_database(api.container.db.engine)
    _assert_nowhere_in_clear(dump, number, payment["id"])


async def test_created_payment_keeps_the_number_and_cvc_sealed(api: Api) -> None:
    _, payment = await _card_payment(api, random_visa())
    secret = await _secret(api, payment["id"])
    assert secret is not None
    assert secret.sealed
    assert secret.cvc_sealed


async def test_processing_destroys_the_vaulted_card_data(api: Api) -> None:
    number = random_visa()
    user, payment = await _card_payment(api, number)
    response = await api.client.post(
        "/api/payments/process", json={"payment_id": payment["id"]}, headers=user.headers
    )
    assert response.json()["status"] == "completed"
    assert await _secret(api, payment["id"]) is None
    _assert_nowhere_in_clear(await dump_database(api.container.db.engine), number, payment["id"])


async def test_a_failed_charge_destroys_the_vaulted_card_data(api: Api) -> None:
    user, payment = await _card_payment(api, "4000000000000127")
    response = await api.client.post(
        "/api/payments/process", json={"payment_id": payment["id"]}, headers=user.headers
    )
    assert response.json()["status"] == "failed"
    assert await _secret(api, payment["id"]) is None


async def test_canceling_destroys_the_vaulted_card_data(api: Api) -> None:
    number = random_visa()
    user, payment = await _card_payment(api, number)
    response = await api.client.post(f"/api/payments/{payment['id']}/cancel", headers=user.headers)
    assert response.status_code == 200
    assert await _secret(api, payment["id"]) is None
    _assert_nowhere_in_clear(await dump_database(api.container.db.engine), number, payment["id"])


async def test_wallet_token_is_never_stored_in_clear(api: Api) -> None:
    user = await register_user(api.client)
    token = f"tok_{uuid.uuid4().hex}"
    details = {"wallet": "apple_pay", "token": token}
    payment = await create_payment(api.client, user, method="digital_wallet", details=details)
    dump = await dump_database(api.container.db.engine)
    assert token not in "\n".join(row for rows in dump.values() for row in rows)
    await api.client.post(
        "/api/payments/process", json={"payment_id": payment["id"]}, headers=user.headers
    )
    assert await _secret(api, payment["id"]) is None


async def test_unknown_outcome_destroys_the_cvc_but_keeps_the_sealed_number(
    api_factory: Any,
) -> None:
    api: Api = await api_factory(processor=UnavailableProcessor())
    number = random_visa()
    user, payment = await _card_payment(api, number)
    response = await api.client.post(
        "/api/payments/process", json={"payment_id": payment["id"]}, headers=user.headers
    )
    assert response.status_code == 202
    secret = await _secret(api, payment["id"])
    assert secret is not None
    assert secret.sealed
    assert secret.cvc_sealed is None
    assert secret.cvc_key_id is None
    _assert_nowhere_in_clear(await dump_database(api.container.db.engine), number, payment["id"])


async def test_api_responses_never_carry_the_number_or_cvc(api: Api) -> None:
    number = random_visa()
    user, payment = await _card_payment(api, number)
    base = f"/api/payments/{payment['id']}"
    responses = [
        await api.client.get(base, headers=user.headers),
        await api.client.get(f"{base}/status", headers=user.headers),
        await api.client.post(
            "/api/payments/process", json={"payment_id": payment["id"]}, headers=user.headers
        ),
        await api.client.post(f"{base}/refund", json={"amount": 1}, headers=user.headers),
        await api.client.get("/api/transactions", headers=user.headers),
    ]
    for response in responses:
        assert response.status_code < 300, response.text
        assert number not in response.text
        assert CVC not in without_ids(response.text)
