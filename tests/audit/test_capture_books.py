"""`kassa ledger verify` with manual capture, voids, expiry and 3-D Secure in the books: an
authorization is held (not revenue) until captured or voided, a capture charges what it
took, and the simulator's records agree — also after a capture whose answer was lost and
that reconciliation settled."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import delete

from kassa.app import create_app
from kassa.audit.service import BooksAuditor
from kassa.container import build_container
from kassa.db import Database, create_engine
from kassa.ledger.models import LedgerEntry
from kassa.processors.faults import Fault, FaultInjectingProcessor
from kassa.processors.simulator import SimulatorProcessor
from kassa.processors.simulator_store import DatabaseSimulatorStore
from tests.conftest import Api, User, card_details, create_payment, make_settings, register_user


async def _verify(api: Api) -> list[str]:
    report = await BooksAuditor(api.container.db, processor_records=True).verify()
    return [str(m) for m in report.mismatches]


async def _post(api: Api, user: User, path: str, body: Any = None) -> Any:
    response = await api.client.post(path, json=body, headers=user.headers)
    return response


async def _manual(api: Api, user: User, amount: int) -> dict[str, Any]:
    payment = await create_payment(api.client, user, amount=amount, capture="manual")
    response = await _post(api, user, "/api/payments/process", {"payment_id": payment["id"]})
    assert response.json()["status"] == "requires_capture", response.text
    body: dict[str, Any] = response.json()
    return body


async def _three_ds(api: Api, user: User, *, manual: bool, complete: bool) -> dict[str, Any]:
    payment = await create_payment(
        api.client,
        user,
        details=card_details("4000002760003184"),
        capture="manual" if manual else "automatic",
    )
    response = await _post(
        api,
        user,
        "/api/payments/process",
        {"payment_id": payment["id"], "return_url": "https://shop.example/back"},
    )
    body: dict[str, Any] = response.json()
    match = re.search(r"/simulator/3ds/[^/]+$", body["next_action"]["url"])
    assert match
    await api.client.post(f"{match.group(0)}/{'complete' if complete else 'fail'}")
    return body


async def test_a_mix_of_captures_voids_3ds_and_refunds_verifies(books: Api) -> None:
    user = await register_user(books.client)
    captured = await _manual(books, user, 1000)
    await _post(books, user, f"/api/payments/{captured['id']}/capture", {"amount": 700})
    refund = await _post(books, user, f"/api/payments/{captured['id']}/refund", {"amount": 200})
    assert refund.status_code == 201
    voided = await _manual(books, user, 400)
    await _post(books, user, f"/api/payments/{voided['id']}/cancel")
    await _manual(books, user, 300)  # still authorized: held, not revenue
    three_ds = await _three_ds(books, user, manual=False, complete=True)
    await _post(books, user, f"/api/payments/{three_ds['id']}/refund", {})
    await _three_ds(books, user, manual=True, complete=True)
    await _three_ds(books, user, manual=False, complete=False)
    assert await _verify(books) == []


async def test_an_authorization_whose_hold_was_never_posted_is_reported(books: Api) -> None:
    user = await register_user(books.client)
    payment = await _manual(books, user, 500)
    await books.container.db.execute(
        delete(LedgerEntry).where(
            LedgerEntry.payment_id == uuid.UUID(payment["id"]), LedgerEntry.kind == "hold"
        )
    )
    [mismatch] = await _verify(books)
    assert "authorization holds in ledger 0 != 500" in mismatch


@pytest.fixture
async def faulty_books(books_url: str) -> AsyncIterator[tuple[Api, FaultInjectingProcessor]]:
    """The books' app with faults injected between kassa and the simulator (whose records
    are in the same database, as with `kassa serve`)."""
    engine = create_engine(books_url)
    faulty = FaultInjectingProcessor(SimulatorProcessor(DatabaseSimulatorStore(Database(engine))))
    container = build_container(make_settings(books_url), processor=faulty)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(container=container)),
        base_url="http://kassa.test",
    )
    try:
        yield Api(client=client, container=container, processor=faulty), faulty
    finally:
        await client.aclose()
        await container.aclose()
        await engine.dispose()


async def test_a_capture_whose_answer_was_lost_is_settled_by_reconcile_once(
    faulty_books: tuple[Api, FaultInjectingProcessor],
) -> None:
    books, faulty = faulty_books
    faulty.plan("capture", Fault.LOSE_ANSWER)
    user = await register_user(books.client)
    payment = await _manual(books, user, 900)
    response = await _post(books, user, f"/api/payments/{payment['id']}/capture", {"amount": 650})
    assert (response.status_code, response.json()["status"]) == (202, "processing")
    assert await _verify(books) == []  # mid-capture: still held, nothing charged in the books
    report = await books.container.payments.reconcile(older_than=timedelta(0))
    assert report.settled >= 1
    settled = await books.client.get(f"/api/payments/{payment['id']}", headers=user.headers)
    assert (settled.json()["status"], settled.json()["amount_captured"]) == ("completed", 650)
    assert faulty.calls["capture"] == 2  # asked again under the same reference: captured once
    assert await _verify(books) == []


async def test_a_void_whose_answer_was_lost_is_settled_by_reconcile(
    faulty_books: tuple[Api, FaultInjectingProcessor],
) -> None:
    books, faulty = faulty_books
    faulty.plan("void", Fault.LOSE_REQUEST)
    user = await register_user(books.client)
    payment = await _manual(books, user, 900)
    response = await _post(books, user, f"/api/payments/{payment['id']}/cancel")
    assert (response.status_code, response.json()["status"]) == (202, "processing")
    await books.container.payments.reconcile(older_than=timedelta(0))
    settled = await books.client.get(f"/api/payments/{payment['id']}", headers=user.headers)
    assert settled.json()["status"] == "canceled"
    assert await _verify(books) == []
