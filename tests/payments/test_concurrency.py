"""Requests that really race: on PostgreSQL they contend for row locks, on SQLite the writers
serialize. Either way a payment is charged once and never refunded past its amount."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from kassa.processors.simulator import SimulatorProcessor
from tests.conftest import Api, completed_payment, create_payment, register_user


class SlowSimulator(SimulatorProcessor):
    """The simulator, with the latency of a network call, so racing requests overlap."""

    async def charge(self, request: Any) -> Any:
        await asyncio.sleep(0.02)
        return await super().charge(request)

    async def refund(self, request: Any) -> Any:
        await asyncio.sleep(0.02)
        return await super().refund(request)


async def test_concurrent_process_calls_charge_exactly_once(api_factory: Any) -> None:
    processor = SlowSimulator()
    api: Api = await api_factory(processor=processor)
    user = await register_user(api.client)
    payment = await create_payment(api.client, user)
    responses = await asyncio.gather(
        *(
            api.client.post(
                "/api/payments/process", json={"payment_id": payment["id"]}, headers=user.headers
            )
            for _ in range(10)
        )
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 409: 9}, [r.text for r in responses]
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"invalid_state"}
    assert processor.charges_made == 1
    assert processor.charge_attempts == 1
    charges = await api.client.get(
        "/api/transactions", params={"type": "charge"}, headers=user.headers
    )
    assert [t["status"] for t in charges.json()["data"]] == ["succeeded"]


async def test_concurrent_full_refunds_refund_exactly_once(api_factory: Any) -> None:
    api: Api = await api_factory(processor=SlowSimulator())
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user, amount=1000)
    responses = await asyncio.gather(
        *(
            api.client.post(f"/api/payments/{payment['id']}/refund", json={}, headers=user.headers)
            for _ in range(16)
        )
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses[201] == 1, [r.text for r in responses]
    assert set(statuses) <= {201, 409, 422}
    for response in responses:
        if response.status_code != 201:
            assert response.json()["code"] in {"invalid_state", "amount_exceeds_refundable"}
    status = await api.client.get(f"/api/payments/{payment['id']}/status", headers=user.headers)
    assert (status.json()["status"], status.json()["amount_refunded"]) == ("refunded", 1000)
    refunds = await api.client.get(
        "/api/transactions", params={"type": "refund"}, headers=user.headers
    )
    assert [t["amount"] for t in refunds.json()["data"]] == [1000]


async def test_concurrent_partial_refunds_never_exceed_the_amount(api_factory: Any) -> None:
    api: Api = await api_factory(processor=SlowSimulator())
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user, amount=1000)
    responses = await asyncio.gather(
        *(
            api.client.post(
                f"/api/payments/{payment['id']}/refund", json={"amount": 300}, headers=user.headers
            )
            for _ in range(12)
        )
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 3, 422: 9}, [r.text for r in responses]
    assert all(r.json()["status"] == "succeeded" for r in responses if r.status_code == 201)
    status = await api.client.get(f"/api/payments/{payment['id']}/status", headers=user.headers)
    assert (status.json()["status"], status.json()["amount_refunded"]) == (
        "partially_refunded",
        900,
    )


async def test_process_racing_cancel_has_exactly_one_winner(api_factory: Any) -> None:
    processor = SlowSimulator()
    api: Api = await api_factory(processor=processor)
    user = await register_user(api.client)
    for _ in range(4):
        payment = await create_payment(api.client, user)
        process, cancel = await asyncio.gather(
            api.client.post(
                "/api/payments/process", json={"payment_id": payment["id"]}, headers=user.headers
            ),
            api.client.post(f"/api/payments/{payment['id']}/cancel", headers=user.headers),
        )
        assert sorted([process.status_code, cancel.status_code]) == [200, 409]
        final = await api.client.get(f"/api/payments/{payment['id']}", headers=user.headers)
        if process.status_code == 200:
            assert cancel.json()["code"] == "invalid_state"
            assert final.json()["status"] == "completed"
        else:
            assert process.json()["code"] == "invalid_state"
            assert final.json()["status"] == "canceled"
            assert cancel.json()["status"] == "canceled"


async def test_process_racing_cancel_charges_only_processed_payments(api_factory: Any) -> None:
    processor = SlowSimulator()
    api: Api = await api_factory(processor=processor)
    user = await register_user(api.client)
    payments = [await create_payment(api.client, user) for _ in range(6)]
    calls = []
    for payment in payments:
        calls.append(
            api.client.post(
                "/api/payments/process", json={"payment_id": payment["id"]}, headers=user.headers
            )
        )
        calls.append(api.client.post(f"/api/payments/{payment['id']}/cancel", headers=user.headers))
    responses = await asyncio.gather(*calls)
    assert Counter(r.status_code for r in responses) == {200: 6, 409: 6}
    finals = [
        (await api.client.get(f"/api/payments/{p['id']}/status", headers=user.headers)).json()
        for p in payments
    ]
    completed = sum(1 for f in finals if f["status"] == "completed")
    assert completed + sum(1 for f in finals if f["status"] == "canceled") == 6
    assert processor.charges_made == completed
