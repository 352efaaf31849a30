"""Idempotency-Key as the contract states it: replay, reuse, in-flight, what is kept."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from kassa.idempotency.middleware import should_keep
from kassa.idempotency.service import canonical_request
from kassa.processors.base import ChargeRequest, ChargeResult, RefundRequest, RefundResult
from kassa.processors.simulator import SimulatorProcessor
from tests.conftest import Api, completed_payment, create_payment, payment_body, register_user


def key() -> str:
    return f"idem-{uuid.uuid4()}"


async def test_same_key_and_body_replays_first_response_without_creating_twice(api: Api) -> None:
    user = await register_user(api.client)
    headers = {**user.headers, "Idempotency-Key": key()}
    first = await api.client.post("/api/payments", json=payment_body(), headers=headers)
    second = await api.client.post("/api/payments", json=payment_body(), headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    async with api.container.db.engine.connect() as conn:
        count = await conn.scalar(
            text("SELECT count(*) FROM payment WHERE user_id = :u"),
            {"u": uuid.UUID(user.id).hex if api.container.settings.is_sqlite else user.id},
        )
    assert count == 1


async def test_body_comparison_ignores_key_order_and_spacing(api: Api) -> None:
    user = await register_user(api.client)
    headers = {**user.headers, "Idempotency-Key": key(), "Content-Type": "application/json"}
    body = payment_body()
    first = await api.client.post("/api/payments", content=json.dumps(body), headers=headers)
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=4)
    second = await api.client.post("/api/payments", content=reordered, headers=headers)
    assert second.status_code == 201
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"


async def test_same_key_with_different_body_is_422_reused(api: Api) -> None:
    user = await register_user(api.client)
    headers = {**user.headers, "Idempotency-Key": key()}
    await api.client.post("/api/payments", json=payment_body(amount=100), headers=headers)
    other = await api.client.post("/api/payments", json=payment_body(amount=101), headers=headers)
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    assert other.headers["content-type"].startswith("application/problem+json")


async def test_same_key_on_another_path_is_422_reused(api: Api) -> None:
    user = await register_user(api.client)
    payment = await create_payment(api.client, user)
    k = key()
    headers = {**user.headers, "Idempotency-Key": k}
    first = await api.client.post(
        "/api/payments/process", json={"payment_id": payment["id"]}, headers=headers
    )
    assert first.status_code == 200
    other = await api.client.post(
        f"/api/payments/{payment['id']}/refund", json={"payment_id": payment["id"]}, headers=headers
    )
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"


async def test_keys_are_scoped_to_the_user(api: Api) -> None:
    alice = await register_user(api.client)
    bob = await register_user(api.client)
    k = key()
    a = await api.client.post(
        "/api/payments", json=payment_body(), headers={**alice.headers, "Idempotency-Key": k}
    )
    b = await api.client.post(
        "/api/payments", json=payment_body(), headers={**bob.headers, "Idempotency-Key": k}
    )
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]
    assert b.json()["user_id"] == bob.id
    assert "Idempotent-Replayed" not in b.headers


@pytest.mark.parametrize("bad", ["", "x" * 256, "naïve", "tab\there"])
async def test_invalid_key_is_422_and_creates_nothing(api: Api, bad: str) -> None:
    user = await register_user(api.client)
    response = await api.client.post(
        "/api/payments",
        json=payment_body(),
        headers={**user.headers, "Idempotency-Key": bad.encode("utf-8")},  # type: ignore[dict-item]
    )
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_idempotency_key"
    listing = await api.client.get("/api/transactions", headers=user.headers)
    assert listing.json()["data"] == []


async def test_refund_replay_refunds_once(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user, amount=1000)
    headers = {**user.headers, "Idempotency-Key": key()}
    url = f"/api/payments/{payment['id']}/refund"
    first = await api.client.post(url, json={"amount": 400}, headers=headers)
    second = await api.client.post(url, json={"amount": 400}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    status = await api.client.get(f"/api/payments/{payment['id']}/status", headers=user.headers)
    assert status.json()["amount_refunded"] == 400


async def test_business_conflicts_are_kept_and_replayed(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user, amount=1000)
    headers = {**user.headers, "Idempotency-Key": key()}
    url = f"/api/payments/{payment['id']}/refund"
    first = await api.client.post(url, json={"amount": 5000}, headers=headers)
    assert first.status_code == 422
    assert first.json()["code"] == "amount_exceeds_refundable"
    second = await api.client.post(url, json={"amount": 5000}, headers=headers)
    assert second.status_code == 422
    assert second.headers["Idempotent-Replayed"] == "true"


async def test_body_validation_errors_are_not_kept(api: Api) -> None:
    user = await register_user(api.client)
    headers = {**user.headers, "Idempotency-Key": key()}
    bad = payment_body(amount=10.5)
    first = await api.client.post("/api/payments", json=bad, headers=headers)
    assert first.status_code == 422
    assert first.json()["code"] == "validation_error"
    # The same key may now be used for a corrected request.
    fixed = await api.client.post("/api/payments", json=payment_body(), headers=headers)
    assert fixed.status_code == 201
    assert "Idempotent-Replayed" not in fixed.headers


async def test_unauthenticated_requests_are_not_kept(api: Api) -> None:
    user = await register_user(api.client)
    k = key()
    anonymous = await api.client.post(
        "/api/payments", json=payment_body(), headers={"Idempotency-Key": k}
    )
    assert anonymous.status_code == 401
    real = await api.client.post(
        "/api/payments", json=payment_body(), headers={**user.headers, "Idempotency-Key": k}
    )
    assert real.status_code == 201


async def test_server_errors_are_not_kept(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    user = await register_user(api.client)
    service = api.container.payments
    real_create = service.create
    calls = 0

    async def fail_once(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database went away")
        return await real_create(*args, **kwargs)

    monkeypatch.setattr(service, "create", fail_once)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api.client._transport.app, raise_app_exceptions=False),  # type: ignore[attr-defined]
        base_url="http://kassa.test",
    )
    headers = {**user.headers, "Idempotency-Key": key()}
    async with client:
        first = await client.post("/api/payments", json=payment_body(), headers=headers)
        assert first.status_code == 500
        assert first.json()["code"] == "internal_error"
        retry = await client.post("/api/payments", json=payment_body(), headers=headers)
    assert retry.status_code == 201
    assert "Idempotent-Replayed" not in retry.headers


class _SlowProcessor(SimulatorProcessor):
    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        self.entered.set()
        await self.release.wait()
        return await super().charge(request)

    async def refund(self, request: RefundRequest) -> RefundResult:
        return await super().refund(request)


async def test_same_key_while_first_request_runs_is_409_in_use(api_factory: Any) -> None:
    processor = _SlowProcessor()
    api = await api_factory(processor=processor)
    user = await register_user(api.client)
    payment = await create_payment(api.client, user)
    headers = {**user.headers, "Idempotency-Key": key()}
    body = {"payment_id": payment["id"]}
    first = asyncio.create_task(
        api.client.post("/api/payments/process", json=body, headers=headers)
    )
    await asyncio.wait_for(processor.entered.wait(), 10)
    second = await api.client.post("/api/payments/process", json=body, headers=headers)
    assert second.status_code == 409
    assert second.json()["code"] == "idempotency_key_in_use"
    processor.release.set()
    assert (await first).status_code == 200
    third = await api.client.post("/api/payments/process", json=body, headers=headers)
    assert third.status_code == 200
    assert third.headers["Idempotent-Replayed"] == "true"
    assert processor.charges_made == 1


async def test_concurrent_same_key_creates_exactly_one_payment(api: Api) -> None:
    user = await register_user(api.client)
    headers = {**user.headers, "Idempotency-Key": key()}
    responses = await asyncio.gather(
        *[api.client.post("/api/payments", json=payment_body(), headers=headers) for _ in range(8)]
    )
    created = {r.json()["id"] for r in responses if r.status_code == 201}
    assert len(created) == 1
    assert all(r.status_code in {201, 409} for r in responses)


async def test_record_keeps_a_hash_never_the_request_body(api: Api) -> None:
    user = await register_user(api.client)
    k = key()
    details = {"number": "4111 1111 1111 1111", "exp_month": 1, "exp_year": 2099, "cvc": "987"}
    response = await api.client.post(
        "/api/payments",
        json=payment_body(details=details),
        headers={**user.headers, "Idempotency-Key": k},
    )
    assert response.status_code == 201
    async with api.container.db.engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT fingerprint, response_body FROM idempotency_record WHERE key = :k"),
                {"k": k},
            )
        ).one()
    fingerprint, stored = row
    assert len(fingerprint) == 64
    assert "4111" not in fingerprint
    stored_text = bytes(stored).decode()
    assert "4111111111111111" not in stored_text
    assert "4111 1111 1111 1111" not in stored_text
    assert "cvc" not in stored_text
    assert stored_text == response.text


def test_canonical_request_ignores_order_and_whitespace() -> None:
    a = canonical_request("post", "/api/payments", b'{"a": 1, "b": [1, 2]}')
    b = canonical_request("POST", "/api/payments", b'{ "b":[1,2],\n"a":1 }')
    assert a == b
    assert a != canonical_request("POST", "/api/payments/x", b'{"a": 1, "b": [1, 2]}')


@pytest.mark.parametrize(
    ("status", "body", "kept"),
    [
        (201, b"{}", True),
        (202, b"{}", True),
        (409, b'{"code": "invalid_state"}', True),
        (409, b'{"code": "idempotency_key_in_use"}', False),  # a holder fenced out
        (404, b'{"code": "payment_not_found"}', True),
        (422, b'{"code": "amount_exceeds_refundable"}', True),
        (422, b'{"code": "validation_error"}', False),
        (400, b'{"code": "malformed_json"}', False),
        (401, b'{"code": "unauthorized"}', False),
        (429, b'{"code": "rate_limited"}', False),
        (500, b'{"code": "internal_error"}', False),
        (503, b"{}", False),
    ],
)
def test_which_responses_are_kept(status: int, body: bytes, kept: bool) -> None:
    assert should_keep(status, body) is kept


async def test_a_replay_is_counted_under_its_route_template(api: Api) -> None:
    user = await register_user(api.client)
    headers = {**user.headers, "Idempotency-Key": key()}
    for _ in range(2):
        await api.client.post("/api/payments", json=payment_body(), headers=headers)
    metrics = (await api.client.get("/metrics")).text
    assert 'route="unmatched",status="201"' not in metrics
    assert 'method="POST",route="/api/payments",status="201"' in metrics
