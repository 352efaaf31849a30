"""`kassa ledger verify` on a live system: one snapshot (no false mismatch however writers
interleave with its reads), and the books checked against the processor's own records."""

from __future__ import annotations

import ast
import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, event, insert, select
from sqlalchemy.util import await_only

from kassa.audit.service import BooksAuditor
from kassa.payments.models import Payment
from kassa.processors.simulator_store import SimulatorCharge, SimulatorRefund
from tests.conftest import (
    Api,
    User,
    completed_payment,
    create_payment,
    register_user,
)

SRC = Path(__file__).resolve().parents[2] / "src" / "kassa"


async def _verify(api: Api, **kwargs: Any) -> list[str]:
    auditor = BooksAuditor(api.container.db, processor_records=True, **kwargs)
    report = await auditor.verify()
    return [str(m) for m in report.mismatches]


async def _refund(api: Api, user: User, payment: dict[str, Any], amount: int) -> dict[str, Any]:
    response = await api.client.post(
        f"/api/payments/{payment['id']}/refund", json={"amount": amount}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_full_lifecycle_verifies_against_the_processors_records(books: Api) -> None:
    user = await register_user(books.client)
    payment = await completed_payment(books.client, user, amount=1000)
    await _refund(books, user, payment, 300)
    await _refund(books, user, payment, 700)
    await completed_payment(books.client, user, amount=500)
    declined = await create_payment(
        books.client,
        user,
        details={"number": "4000000000000002", "exp_month": 12, "exp_year": 2099, "cvc": "123"},
    )
    await books.client.post(
        "/api/payments/process", json={"payment_id": declined["id"]}, headers=user.headers
    )
    canceled = await create_payment(books.client, user)
    await books.client.post(f"/api/payments/{canceled['id']}/cancel", headers=user.headers)

    report = await BooksAuditor(books.container.db, processor_records=True).verify()
    assert report.mismatches == []
    assert (report.payments, report.processor_charges, report.processor_refunds) == (4, 2, 2)


async def test_refunds_committed_between_the_verifiers_reads_are_no_mismatch(
    books: Api,
) -> None:
    """The window the old verifier had: it read ledger totals, refund totals and payments in
    separate statements, so a refund settling between two of them was a false mismatch.
    Here a refund commits (on another connection) before every statement but the first."""
    user = await register_user(books.client)
    payments = [await completed_payment(books.client, user, amount=1000) for _ in range(12)]
    waiting = list(payments)
    made: list[str] = []
    statements = 0
    refunding = False

    def between_reads(*_args: Any) -> None:
        nonlocal statements, refunding
        if refunding:  # the refund's own statements
            return
        statements += 1
        if statements > 1 and waiting:
            refunding = True
            try:
                made.append(await_only(_refund(books, user, waiting.pop(), 100))["id"])
            finally:
                refunding = False

    engine = books.container.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", between_reads)
    try:
        mismatches = await _verify(books, batch_size=5)  # several batches: more reads
    finally:
        event.remove(engine, "before_cursor_execute", between_reads)
    assert len(made) >= 8  # refunds really landed between reads
    assert mismatches == []
    assert await _verify(books) == []  # and afterwards, with every refund seen


async def test_verify_beside_concurrent_writers_never_reports_a_mismatch(books: Api) -> None:
    user = await register_user(books.client)
    stop = asyncio.Event()

    async def writer() -> int:
        lifecycles = 0
        while not stop.is_set():
            payment = await completed_payment(books.client, user, amount=900)
            await _refund(books, user, payment, 300)
            await books.client.post(
                f"/api/payments/{payment['id']}/refund", json={}, headers=user.headers
            )
            await create_payment(books.client, user)
            lifecycles += 1
        return lifecycles

    writers = [asyncio.create_task(writer()) for _ in range(3)]
    reports: list[list[str]] = []
    try:
        for _ in range(6):
            reports.append(await _verify(books, batch_size=3))
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        done = await asyncio.gather(*writers)
    assert sum(done) >= 3
    assert all(report == [] for report in reports), reports
    assert await _verify(books) == []


async def test_a_refund_the_processor_made_twice_is_reported(books: Api) -> None:
    user = await register_user(books.client)
    payment = await completed_payment(books.client, user, amount=10_000)
    await _refund(books, user, payment, 3000)
    assert await _verify(books) == []
    # A second refund at the processor against the same charge that kassa's books do not
    # hold (what a retried request that re-ran the refund under a new reference leaves).
    async with books.container.db.engine.begin() as db:
        charge = await db.scalar(
            select(Payment.processor_reference).where(Payment.id == uuid.UUID(payment["id"]))
        )
        await db.execute(
            insert(SimulatorRefund).values(
                reference=f"kassa_refund_{uuid.uuid4().hex}",
                processor_reference=f"sim_re_{uuid.uuid4().hex}",
                charge_reference=charge,
                outcome="succeeded",
                amount=3000,
                currency="USD",
                created_at=datetime.now(UTC),
            )
        )
    [mismatch] = await _verify(books)
    assert "matches no refund in kassa" in mismatch
    assert payment["id"] in mismatch


async def test_a_charged_payment_without_its_processor_charge_is_reported(books: Api) -> None:
    user = await register_user(books.client)
    payment = await completed_payment(books.client, user, amount=2500)
    async with books.container.db.engine.begin() as db:
        await db.execute(
            delete(SimulatorCharge).where(
                SimulatorCharge.reference == f"kassa_charge_{uuid.UUID(payment['id']).hex}"
            )
        )
    assert await _verify(books) == [
        f"payment {payment['id']} is completed with no successful processor charge"
    ]


async def test_a_processor_charge_of_no_payment_is_reported(books: Api) -> None:
    async with books.container.db.engine.begin() as db:
        await db.execute(
            insert(SimulatorCharge).values(
                reference=f"kassa_charge_{uuid.uuid4().hex}",
                processor_reference="sim_ch_orphan",
                outcome="succeeded",
                amount=700,
                currency="EUR",
                created_at=datetime.now(UTC),
            )
        )
    [mismatch] = await _verify(books)
    assert "processor charge sim_ch_orphan (700 EUR" in mismatch


def test_the_ledger_imports_no_other_domain() -> None:
    """The ledger is a leaf: payments and refunds post to it, and checking the books across
    domains lives in kassa.audit."""
    shared = {"kassa.db", "kassa.errors", "kassa.money", "kassa.settings"}
    for path in (SRC / "ledger").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.startswith("kassa"):
                    assert name in shared or name.startswith("kassa.ledger"), (path.name, name)
