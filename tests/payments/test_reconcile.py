"""Reconciliation settles what a lost answer or a crash left behind, without charging twice.

The processor here is the simulator behind a network that loses one request or one answer
per reference. Reconciliation examines every stale payment of the (shared) test database,
so the assertions are about this test's own payments and references only.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text

from kassa.idempotency.models import IdempotencyRecord
from kassa.ledger.models import LedgerEntry
from kassa.payments.service import charge_reference
from kassa.processors.base import (
    ChargeRequest,
    ChargeResult,
    Outcome,
    ProcessorUnavailable,
    RefundRequest,
    RefundResult,
)
from kassa.processors.simulator import SimulatorProcessor
from kassa.refunds.service import refund_reference
from kassa.worker import Worker
from tests.conftest import (
    Api,
    User,
    card_details,
    completed_payment,
    create_payment,
    fetch_payment,
    payment_body,
    register_user,
)

NOW = timedelta(0)


class LossyNetwork(SimulatorProcessor):
    """The simulator behind a network that, once per reference, loses the request before it
    arrives (`lose="request"`: nothing happens) or the answer on its way back
    (`lose="answer"`: the operation happened, kassa does not know)."""

    def __init__(
        self,
        *,
        lose_charge: str | None = None,
        lose_refund: str | None = None,
        delay_seconds: float = 0.0,
    ) -> None:
        super().__init__(delay_seconds=delay_seconds)
        self.lose_charge = lose_charge
        self.lose_refund = lose_refund
        self.charge_requests: list[ChargeRequest] = []
        self.refund_requests: list[RefundRequest] = []
        self._lost: set[str] = set()

    def _lose_once(self, reference: str) -> bool:
        if reference in self._lost:
            return False
        self._lost.add(reference)
        return True

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        self.charge_requests.append(request)
        if self.lose_charge == "request" and self._lose_once(request.reference):
            raise ProcessorUnavailable("connection reset before the request arrived")
        result = await super().charge(request)
        if self.lose_charge == "answer" and self._lose_once(request.reference):
            raise ProcessorUnavailable("connection reset after the charge")
        return result

    async def refund(self, request: RefundRequest) -> RefundResult:
        self.refund_requests.append(request)
        if self.lose_refund == "request" and self._lose_once(request.reference):
            raise ProcessorUnavailable("connection reset before the request arrived")
        result = await super().refund(request)
        if self.lose_refund == "answer" and self._lose_once(request.reference):
            raise ProcessorUnavailable("connection reset after the refund")
        return result

    def charges_for(self, user: User) -> list[ChargeRequest]:
        """The charge requests for `user`'s payments (reconciliation also settles what other
        tests left behind in the shared database)."""
        return [r for r in self.charge_requests if r.customer_id == user.id]

    async def money_moved(self, user: User) -> dict[str, int]:
        """Succeeded charges the simulator holds for `user`, by reference: every reference
        kassa ever used for that user's payments, so a retry under a new one would show."""
        moved: dict[str, int] = {}
        for reference in {r.reference for r in self.charges_for(user)}:
            kept = await self.lookup_charge(reference)
            if kept is not None and kept.outcome is Outcome.SUCCEEDED:
                moved[reference] = moved.get(reference, 0) + 1
        return moved


async def _process(api: Api, user: User, payment_id: str) -> Any:
    return await api.client.post(
        "/api/payments/process", json={"payment_id": payment_id}, headers=user.headers
    )


async def _transactions(api: Api, user: User, kind: str) -> list[dict[str, Any]]:
    response = await api.client.get(
        "/api/transactions", params={"type": kind}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def _charge_postings(api: Api, payment_id: str) -> int:
    count = await api.container.db.scalar(
        select(func.count(func.distinct(LedgerEntry.posting_id))).where(
            LedgerEntry.payment_id == uuid.UUID(payment_id), LedgerEntry.kind == "charge"
        )
    )
    return int(count or 0)


def _reference(payment: dict[str, Any]) -> str:
    return charge_reference(uuid.UUID(payment["id"]))


async def test_charge_whose_answer_was_lost_is_recorded_by_reconcile_without_a_second_charge(
    api_factory: Any,
) -> None:
    processor = LossyNetwork(lose_charge="answer")
    api: Api = await api_factory(processor=processor)
    user = await register_user(api.client)
    payment = await create_payment(api.client, user, amount=4321)
    response = await _process(api, user, payment["id"])
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "processing"
    assert await processor.money_moved(user) == {_reference(payment): 1}

    await api.container.payments.reconcile(older_than=NOW)

    settled = await fetch_payment(api.client, user, payment["id"])
    assert (settled["status"], settled["failure_code"]) == ("completed", None)
    assert len(processor.charges_for(user)) == 1  # reconcile looked the charge up, never re-sent it
    assert await processor.money_moved(user) == {_reference(payment): 1}
    assert [t["status"] for t in await _transactions(api, user, "charge")] == ["succeeded"]
    assert await _charge_postings(api, payment["id"]) == 1


async def test_charge_whose_request_was_lost_is_charged_exactly_once_by_reconcile(
    api_factory: Any,
) -> None:
    processor = LossyNetwork(lose_charge="request")
    api: Api = await api_factory(processor=processor)
    user = await register_user(api.client)
    payment = await create_payment(api.client, user)
    assert (await _process(api, user, payment["id"])).status_code == 202
    assert await processor.money_moved(user) == {}

    await api.container.payments.reconcile(older_than=NOW)

    assert (await fetch_payment(api.client, user, payment["id"]))["status"] == "completed"
    ours = processor.charges_for(user)
    assert [r.reference for r in ours] == [_reference(payment)] * 2  # the same reference again
    assert await processor.money_moved(user) == {_reference(payment): 1}
    assert await _charge_postings(api, payment["id"]) == 1

    # Reconciling again finds nothing of ours left to do.
    await api.container.payments.reconcile(older_than=NOW)
    assert len(processor.charges_for(user)) == 2
    assert await _charge_postings(api, payment["id"]) == 1


async def test_declined_charge_whose_answer_was_lost_fails_with_its_failure_code(
    api_factory: Any,
) -> None:
    processor = LossyNetwork(lose_charge="answer")
    api: Api = await api_factory(processor=processor)
    user = await register_user(api.client)
    payment = await create_payment(api.client, user, details=card_details("4000000000009995"))
    assert (await _process(api, user, payment["id"])).status_code == 202

    await api.container.payments.reconcile(older_than=NOW)

    failed = await fetch_payment(api.client, user, payment["id"])
    assert (failed["status"], failed["failure_code"]) == ("failed", "insufficient_funds")
    assert failed["failure_message"]
    assert len(processor.charges_for(user)) == 1
    assert await processor.money_moved(user) == {}
    assert [t["status"] for t in await _transactions(api, user, "charge")] == ["failed"]
    assert await _charge_postings(api, payment["id"]) == 0


async def test_refund_whose_answer_was_lost_stays_pending_until_reconcile_settles_it(
    api_factory: Any,
) -> None:
    processor = LossyNetwork(lose_refund="answer")
    api: Api = await api_factory(processor=processor)
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user, amount=1000)
    response = await api.client.post(
        f"/api/payments/{payment['id']}/refund", json={"amount": 400}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    refund = response.json()
    assert refund["status"] == "pending"
    status = await api.client.get(f"/api/payments/{payment['id']}/status", headers=user.headers)
    assert (status.json()["status"], status.json()["amount_refunded"]) == ("completed", 0)

    await api.container.refunds.reconcile(older_than=NOW)

    status = await api.client.get(f"/api/payments/{payment['id']}/status", headers=user.headers)
    assert (status.json()["status"], status.json()["amount_refunded"]) == (
        "partially_refunded",
        400,
    )
    assert [t["status"] for t in await _transactions(api, user, "refund")] == ["succeeded"]
    reference = refund_reference(uuid.UUID(refund["id"]))
    assert [r.reference for r in processor.refund_requests].count(reference) == 2
    # What the pending refund held is released into amount_refunded, no more.
    rest = await api.client.post(
        f"/api/payments/{payment['id']}/refund", json={}, headers=user.headers
    )
    assert rest.status_code == 201, rest.text
    assert rest.json()["amount"] == 600


async def test_two_reconcilers_racing_settle_each_payment_once(api_factory: Any) -> None:
    # Both reconcilers find the payments uncharged and ask the processor at the same time.
    processor = LossyNetwork(lose_charge="request", delay_seconds=0.02)
    api: Api = await api_factory(processor=processor)
    other: Api = await api_factory(processor=processor)  # a second process on the same database
    user = await register_user(api.client)
    payments = [await create_payment(api.client, user, amount=100 + i) for i in range(6)]
    for payment in payments:
        assert (await _process(api, user, payment["id"])).status_code == 202

    await asyncio.gather(
        api.container.payments.reconcile(older_than=NOW),
        other.container.payments.reconcile(older_than=NOW),
    )

    for payment in payments:
        assert (await fetch_payment(api.client, user, payment["id"]))["status"] == "completed"
        assert await _charge_postings(api, payment["id"]) == 1
    assert await processor.money_moved(user) == {_reference(p): 1 for p in payments}
    charges = await _transactions(api, user, "charge")
    assert sorted(t["payment_id"] for t in charges) == sorted(p["id"] for p in payments)
    assert {t["status"] for t in charges} == {"succeeded"}


async def test_a_processor_is_never_called_while_a_transaction_is_open(api_factory: Any) -> None:
    """Every processor call (prepare, charge, refund, lookup) happens with no connection of kassa's
    checked out of its pool, and on PostgreSQL with no kassa session inside a transaction."""
    seen: list[tuple[str, int, int]] = []

    class Watching(LossyNetwork):
        container: Any = None

        async def _watch(self, operation: str) -> None:
            checked_out = self.container.db.engine.pool.checkedout()
            in_transaction = 0
            if self.container.db.engine.dialect.name == "postgresql":
                async with self.container.db.engine.connect() as conn:
                    in_transaction = int(
                        await conn.scalar(
                            text(
                                "SELECT count(*) FROM pg_stat_activity"
                                " WHERE datname = current_database()"
                                " AND pid <> pg_backend_pid()"
                                " AND state LIKE 'idle in transaction%'"
                            )
                        )
                        or 0
                    )
            seen.append((operation, checked_out, in_transaction))

        async def prepare_charge(self, request: ChargeRequest) -> str | None:
            await self._watch("prepare_charge")
            return await super().prepare_charge(request)

        async def charge(self, request: ChargeRequest) -> ChargeResult:
            await self._watch("charge")
            return await super().charge(request)

        async def refund(self, request: RefundRequest) -> RefundResult:
            await self._watch("refund")
            return await super().refund(request)

        async def lookup_charge(self, reference: str) -> ChargeResult | None:
            await self._watch("lookup_charge")
            return await super().lookup_charge(reference)

    processor = Watching(lose_charge="request", lose_refund="answer")
    api: Api = await api_factory(processor=processor)
    processor.container = api.container
    user = await register_user(api.client)
    payment = await create_payment(api.client, user)
    assert (await _process(api, user, payment["id"])).status_code == 202
    await api.container.payments.reconcile(older_than=NOW)
    refund = await api.client.post(
        f"/api/payments/{payment['id']}/refund", json={}, headers=user.headers
    )
    assert refund.status_code == 201
    await api.container.refunds.reconcile(older_than=NOW)

    operations = Counter(operation for operation, _, _ in seen)
    assert {"charge", "refund", "lookup_charge"} <= set(operations)
    assert [s for s in seen if s[1:] != (0, 0)] == []


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC))


async def test_worker_round_reconciles_and_purges_expired_idempotency_keys(
    api_factory: Any, clock: Clock
) -> None:
    processor = LossyNetwork(lose_refund="request")
    api: Api = await api_factory(processor=processor, clock=clock, access_token_ttl_seconds=3600)
    user = await register_user(api.client)
    refunded = await completed_payment(api.client, user, amount=800)
    pending_refund = await api.client.post(
        f"/api/payments/{refunded['id']}/refund", json={"amount": 300}, headers=user.headers
    )
    assert pending_refund.json()["status"] == "pending"
    processor.lose_charge = "answer"
    key = f"worker-{uuid.uuid4()}"
    created = await api.client.post(
        "/api/payments",
        json=payment_body(amount=900),
        headers={**user.headers, "Idempotency-Key": key},
    )
    assert created.status_code == 201, created.text
    payment = created.json()
    assert (await _process(api, user, payment["id"])).status_code == 202
    uncharged = await create_payment(api.client, user, amount=500)

    worker = Worker(api.container, interval=1.0, older_than=timedelta(minutes=5))
    await worker.run_round()  # nothing is old enough yet
    assert (await fetch_payment(api.client, user, payment["id"]))["status"] == "processing"

    clock.now += timedelta(minutes=10)
    await worker.run_round()
    assert (await fetch_payment(api.client, user, payment["id"]))["status"] == "completed"
    assert (await fetch_payment(api.client, user, uncharged["id"]))[
        "status"
    ] == "pending"  # not touched
    status = await api.client.get(f"/api/payments/{refunded['id']}/status", headers=user.headers)
    assert (status.json()["status"], status.json()["amount_refunded"]) == (
        "partially_refunded",
        300,
    )
    assert await processor.money_moved(user) == {_reference(payment): 1, _reference(refunded): 1}
    assert await _charge_postings(api, payment["id"]) == 1

    async def record_exists() -> bool:
        found = await api.container.db.scalar(
            select(func.count())
            .select_from(IdempotencyRecord)
            .where(IdempotencyRecord.user_id == uuid.UUID(user.id), IdempotencyRecord.key == key)
        )
        return bool(found)

    assert await record_exists()  # kept for 24 hours
    clock.now += timedelta(hours=24)
    await worker.run_round()
    assert not await record_exists()
    await worker.run_round()  # a round with nothing to do is harmless
    assert await _charge_postings(api, payment["id"]) == 1


async def test_a_payment_reconcile_cannot_settle_does_not_stop_the_others(
    api_factory: Any,
) -> None:
    class LookupBroken(LossyNetwork):
        broken: str = ""

        async def lookup_charge(self, reference: str) -> ChargeResult | None:
            if reference == self.broken:
                raise RuntimeError("the connector choked on this charge")
            return await super().lookup_charge(reference)

    processor = LookupBroken(lose_charge="answer")
    api: Api = await api_factory(processor=processor)
    user = await register_user(api.client)
    stuck, fine = [await create_payment(api.client, user) for _ in range(2)]
    for payment in (stuck, fine):
        assert (await _process(api, user, payment["id"])).status_code == 202
    processor.broken = _reference(stuck)

    report = await api.container.payments.reconcile(older_than=NOW)

    assert report.unresolved >= 1
    assert (await fetch_payment(api.client, user, stuck["id"]))["status"] == "processing"
    assert (await fetch_payment(api.client, user, fine["id"]))["status"] == "completed"
    processor.broken = ""
    await api.container.payments.reconcile(older_than=NOW)
    assert (await fetch_payment(api.client, user, stuck["id"]))["status"] == "completed"
    assert await processor.money_moved(user) == {_reference(stuck): 1, _reference(fine): 1}


async def test_process_answers_the_outcome_reconcile_recorded_while_it_waited(
    api_factory: Any,
) -> None:
    """A reconciler that settles the payment while the original request still waits for the
    processor: the request's own answer is the same charge, so it answers 200 completed."""

    class ReconcileMeanwhile(LossyNetwork):
        container: Any = None

        async def charge(self, request: ChargeRequest) -> ChargeResult:
            if not self.charge_requests:
                self.charge_requests.append(request)
                await self.container.payments.reconcile(older_than=NOW)
                return await SimulatorProcessor.charge(self, request)
            return await super().charge(request)

    processor = ReconcileMeanwhile()
    api: Api = await api_factory(processor=processor)
    processor.container = api.container
    user = await register_user(api.client)
    payment = await create_payment(api.client, user)

    response = await _process(api, user, payment["id"])

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "completed"
    assert len(processor.charges_for(user)) == 2
    assert await processor.money_moved(user) == {_reference(payment): 1}
    assert await _charge_postings(api, payment["id"]) == 1


async def test_reconcile_times_and_counts_its_lookups_like_every_processor_call(
    api_factory: Any,
) -> None:
    from prometheus_client import REGISTRY

    def lookups() -> float:
        labels = {"processor": "simulator", "operation": "lookup", "outcome": "succeeded"}
        return REGISTRY.get_sample_value("kassa_processor_call_duration_seconds_count", labels) or 0

    processor = LossyNetwork(lose_charge="answer")
    api: Api = await api_factory(processor=processor)
    user = await register_user(api.client)
    payment = await create_payment(api.client, user)
    assert (await _process(api, user, payment["id"])).status_code == 202
    before = lookups()
    await api.container.payments.reconcile(older_than=NOW)
    assert (await fetch_payment(api.client, user, payment["id"]))["status"] == "completed"
    assert lookups() >= before + 1
