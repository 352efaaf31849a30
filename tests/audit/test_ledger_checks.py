"""The ledger agrees with payments and refunds, and `verify` notices when it does not."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import delete, insert, select

from kassa.audit.service import BooksAuditor
from kassa.db import values_of
from kassa.ledger.models import LedgerEntry
from tests.conftest import Api, completed_payment, create_payment, payment_body, register_user


async def _verify(api: Api) -> list[str]:
    # The in-memory simulator keeps its records outside the database: ledger checks only.
    report = await BooksAuditor(api.container.db, processor_records=False).verify()
    return [str(m) for m in report.mismatches]


async def test_a_lifecycle_leaves_a_ledger_that_verifies(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user, amount=1000)
    for amount in (300, 700):
        response = await api.client.post(
            f"/api/payments/{payment['id']}/refund", json={"amount": amount}, headers=user.headers
        )
        assert response.status_code == 201
    declined = await create_payment(api.client, user, details=None, amount=500)
    await api.client.post(
        "/api/payments/process", json={"payment_id": declined["id"]}, headers=user.headers
    )
    assert await _verify(api) == []


async def test_an_unbalanced_posting_is_reported(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user, amount=1000)
    bad_line = uuid.uuid4()
    await api.container.db.execute(
        insert(LedgerEntry).values(
            values_of(
                LedgerEntry(
                    id=bad_line,
                    posting_id=uuid.uuid4(),
                    kind="charge",
                    account="processor_clearing",
                    amount=5,
                    currency="USD",
                    payment_id=uuid.UUID(payment["id"]),
                    created_at=datetime.now(UTC),
                )
            )
        )
    )
    try:
        mismatches = await _verify(api)
    finally:
        # The database is shared by this worker's tests; leave it balanced again.
        await api.container.db.execute(delete(LedgerEntry).where(LedgerEntry.id == bad_line))
    assert any("sums to 5 USD" in m for m in mismatches)
    assert any(payment["id"] in m for m in mismatches)


async def _lines_of(api: Api, payment_id: str) -> list[Any]:
    statement = select(LedgerEntry.kind, LedgerEntry.livemode).where(
        LedgerEntry.payment_id == uuid.UUID(payment_id)
    )
    return list(await api.container.db.tuples(statement))


@pytest.mark.parametrize("mode", ["test", "live"])
async def test_every_line_is_in_its_payments_books(api: Api, mode: str) -> None:
    """Charges, refunds, authorization holds and their releases: every line is in the
    payment's mode's books, so test money never sums with live money."""
    user = await register_user(api.client)
    headers = {**user.headers, **({"Kassa-Mode": "live"} if mode == "live" else {})}

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await api.client.post(path, json=body, headers=headers)
        assert response.status_code in (200, 201), response.text
        answer: dict[str, Any] = response.json()
        return answer

    automatic = await post("/api/payments", payment_body(amount=1000))
    await post("/api/payments/process", {"payment_id": automatic["id"]})
    await post(f"/api/payments/{automatic['id']}/refund", {"amount": 300})
    manual = await post("/api/payments", payment_body(amount=800, capture="manual"))
    await post("/api/payments/process", {"payment_id": manual["id"]})
    captured = await post(f"/api/payments/{manual['id']}/capture", {"amount": 500})
    assert captured["status"] == "completed"
    automatic_lines = await _lines_of(api, automatic["id"])
    manual_lines = await _lines_of(api, manual["id"])
    assert sorted(kind for kind, _ in automatic_lines) == ["charge"] * 2 + ["refund"] * 2
    assert (
        sorted(kind for kind, _ in manual_lines) == ["charge"] * 2 + ["hold"] * 2 + ["release"] * 2
    )
    modes = {livemode for _, livemode in automatic_lines + manual_lines}
    assert modes == {mode == "live"}
    assert await _verify(api) == []


async def test_a_posting_in_the_other_modes_books_is_reported(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user, amount=1000)  # a test-mode payment
    posting = uuid.uuid4()
    lines = [
        LedgerEntry(
            id=uuid.uuid4(),
            posting_id=posting,
            kind="charge",
            account=account,
            amount=amount,
            currency="USD",
            livemode=True,
            payment_id=uuid.UUID(payment["id"]),
            created_at=datetime.now(UTC),
        )
        for account, amount in (("misfiled_a", 1), ("misfiled_b", -1))  # balanced
    ]
    for line in lines:
        await api.container.db.execute(insert(LedgerEntry).values(values_of(line)))
    try:
        mismatches = await _verify(api)
    finally:
        await api.container.db.execute(delete(LedgerEntry).where(LedgerEntry.posting_id == posting))
    assert f"posting {posting} is in the live books; payment {payment['id']} is test" in mismatches
