"""One Idempotency-Key, one effect: the windows between a key's claim, its effect and its
recorded response, forced in-process with two apps ("servers") on one database.

A crash is played by a server that commits its effect and then never records its response
(its `complete` and `release` do nothing, as a killed process does nothing); the retry goes
to the other server once the dead one's lease lapsed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import text

from kassa.processors.base import RefundRequest, RefundResult
from kassa.processors.simulator import SimulatorProcessor
from tests.conftest import Api, completed_payment, create_payment, payment_body, register_user

LEASE_SECONDS = 1


class RecordingSimulator(SimulatorProcessor):
    """The simulator, remembering every refund reference it was asked for (it refunds once
    per reference)."""

    def __init__(self) -> None:
        super().__init__()
        self.refund_references: set[str] = set()

    async def refund(self, request: RefundRequest) -> RefundResult:
        self.refund_references.add(request.reference)
        return await super().refund(request)


def key() -> str:
    return f"once-{uuid.uuid4()}"


def crashes_after_its_effect(api: Api) -> None:
    """`api` commits effects but never records a response, like a server killed -9 there."""

    async def nothing(*_args: Any) -> None:
        return None

    api.container.idempotency.complete = nothing  # type: ignore[method-assign]
    api.container.idempotency.release = nothing  # type: ignore[method-assign]


async def two_servers(api_factory: Callable[..., Any], **settings: Any) -> tuple[Api, Api]:
    processor = RecordingSimulator()  # one processor, as both servers would share
    a = await api_factory(processor=processor, **settings)
    b = await api_factory(processor=processor, **settings)
    return a, b


async def _transactions(api: Api, headers: dict[str, str], kind: str) -> list[dict[str, Any]]:
    listed = await api.client.get("/api/transactions", params={"type": kind}, headers=headers)
    assert listed.status_code == 200, listed.text
    data: list[dict[str, Any]] = listed.json()["data"]
    return data


async def test_a_create_retried_after_a_crash_answers_with_the_one_payment_it_made(
    api_factory: Callable[..., Any],
) -> None:
    a, b = await two_servers(api_factory, idempotency_lease_seconds=LEASE_SECONDS)
    user = await register_user(a.client)
    headers = {**user.headers, "Idempotency-Key": key()}
    crashes_after_its_effect(a)
    lost = await a.client.post("/api/payments", json=payment_body(amount=1234), headers=headers)
    assert lost.status_code == 201
    await asyncio.sleep(LEASE_SECONDS + 0.2)
    retried = await b.client.post("/api/payments", json=payment_body(amount=1234), headers=headers)
    assert retried.status_code == 201, retried.text
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert retried.json()["id"] == lost.json()["id"]
    assert retried.json()["status"] == "pending"
    again = await b.client.post("/api/payments", json=payment_body(amount=1234), headers=headers)
    assert again.json() == retried.json()
    processed = await b.client.post(
        "/api/payments/process", json={"payment_id": lost.json()["id"]}, headers=user.headers
    )
    assert processed.status_code == 200
    assert len(await _transactions(b, user.headers, "charge")) == 1


async def test_a_process_retried_after_a_crash_answers_with_the_charge_not_invalid_state(
    api_factory: Callable[..., Any],
) -> None:
    a, b = await two_servers(api_factory, idempotency_lease_seconds=LEASE_SECONDS)
    user = await register_user(a.client)
    payment = await create_payment(a.client, user)
    headers = {**user.headers, "Idempotency-Key": key()}
    body = {"payment_id": payment["id"]}
    crashes_after_its_effect(a)
    lost = await a.client.post("/api/payments/process", json=body, headers=headers)
    assert lost.status_code == 200
    await asyncio.sleep(LEASE_SECONDS + 0.2)
    retried = await b.client.post("/api/payments/process", json=body, headers=headers)
    assert retried.status_code == 200, retried.text
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert (retried.json()["id"], retried.json()["status"]) == (payment["id"], "completed")
    assert a.processor.charge_attempts == 1  # type: ignore[attr-defined]
    assert len(await _transactions(b, user.headers, "charge")) == 1


async def test_a_cancel_retried_after_a_crash_answers_with_the_canceled_payment(
    api_factory: Callable[..., Any],
) -> None:
    a, b = await two_servers(api_factory, idempotency_lease_seconds=LEASE_SECONDS)
    user = await register_user(a.client)
    payment = await create_payment(a.client, user)
    headers = {**user.headers, "Idempotency-Key": key()}
    url = f"/api/payments/{payment['id']}/cancel"
    crashes_after_its_effect(a)
    assert (await a.client.post(url, headers=headers)).status_code == 200
    await asyncio.sleep(LEASE_SECONDS + 0.2)
    retried = await b.client.post(url, headers=headers)
    assert retried.status_code == 200, retried.text
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert (retried.json()["id"], retried.json()["status"]) == (payment["id"], "canceled")


async def test_a_refund_whose_settle_failed_is_not_made_again_by_its_retry(
    api_factory: Callable[..., Any],
) -> None:
    a, b = await two_servers(api_factory)
    processor = a.processor
    assert isinstance(processor, RecordingSimulator)
    user = await register_user(a.client)
    payment = await completed_payment(a.client, user, amount=10_000)
    refunds = a.container.refunds
    real_settle = refunds.settle

    async def settle_fails(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("the database failed as the refund was settled")

    refunds.settle = settle_fails  # type: ignore[method-assign]
    headers = {**user.headers, "Idempotency-Key": key()}
    url = f"/api/payments/{payment['id']}/refund"
    transport = httpx.ASGITransport(app=a.client._transport.app, raise_app_exceptions=False)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=transport, base_url="http://kassa.test") as client_a:
        failed = await client_a.post(url, json={"amount": 3_000}, headers=headers)
    assert failed.status_code == 500
    [refunded] = processor.refund_references  # the processor refunded
    refunds.settle = real_settle  # type: ignore[method-assign]

    retried = await b.client.post(url, json={"amount": 3_000}, headers=headers)
    assert retried.status_code == 201, retried.text
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert (retried.json()["amount"], retried.json()["status"]) == (3_000, "pending")
    [made] = await _transactions(b, user.headers, "refund")
    assert made["status"] == "pending"

    # The session's database holds other tests' pending refunds too (reconcile settles them
    # through this processor as well): this one is among those settled, and refunded once.
    report = await b.container.refunds.reconcile(older_than=timedelta(0))
    assert report.settled >= 1
    settled = await b.client.post(url, json={"amount": 3_000}, headers=headers)
    assert settled.status_code == 201
    assert (settled.json()["id"], settled.json()["status"]) == (retried.json()["id"], "succeeded")
    # The refund the processor made is the one kassa kept, and its only one for this payment.
    assert refunded == f"kassa_refund_{uuid.UUID(retried.json()['id']).hex}"
    assert len(await _transactions(b, user.headers, "refund")) == 1
    status = await b.client.get(f"/api/payments/{payment['id']}/status", headers=user.headers)
    assert (status.json()["status"], status.json()["amount_refunded"]) == (
        "partially_refunded",
        3_000,
    )


async def test_a_stalled_holder_whose_claim_was_taken_over_cannot_commit_a_second_effect(
    api_factory: Callable[..., Any],
) -> None:
    a, b = await two_servers(api_factory, idempotency_lease_seconds=LEASE_SECONDS)
    user = await register_user(a.client)
    headers = {**user.headers, "Idempotency-Key": key()}
    fingerprints = a.container.payments._fingerprints
    assert fingerprints is not None
    real = fingerprints.fingerprint
    stalled, resume = asyncio.Event(), asyncio.Event()

    async def stall(number: str) -> str:
        stalled.set()
        await resume.wait()  # A has made no effect yet (its claim goes with it)
        return await real(number)

    fingerprints.fingerprint = stall  # type: ignore[method-assign]
    first = asyncio.ensure_future(
        a.client.post("/api/payments", json=payment_body(), headers=headers)
    )
    await asyncio.wait_for(stalled.wait(), 10)
    await asyncio.sleep(LEASE_SECONDS + 0.2)
    taken_over = await b.client.post("/api/payments", json=payment_body(), headers=headers)
    assert taken_over.status_code == 201, taken_over.text
    resume.set()
    late = await first
    # Its claim, made with its effect, met the key taken: nothing of it was written, and it
    # is answered as a retry (the payment the other request made).
    assert late.status_code == 201, late.text
    assert late.headers["Idempotent-Replayed"] == "true"
    assert late.json()["id"] == taken_over.json()["id"]
    replay = await a.client.post("/api/payments", json=payment_body(), headers=headers)
    assert replay.json()["id"] == taken_over.json()["id"]
    assert replay.headers["Idempotent-Replayed"] == "true"
    async with b.container.db.engine.connect() as conn:
        made = await conn.scalars(
            text("SELECT id FROM payment WHERE user_id = :u"),
            {"u": uuid.UUID(user.id).hex if b.container.settings.is_sqlite else user.id},
        )
        assert [str(uuid.UUID(str(i))) for i in made] == [taken_over.json()["id"]]
