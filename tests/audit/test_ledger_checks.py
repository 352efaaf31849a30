"""The ledger agrees with payments and refunds, and `verify` notices when it does not."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import delete, insert

from kassa.audit.service import BooksAuditor
from kassa.db import values_of
from kassa.ledger.models import LedgerEntry
from tests.conftest import Api, completed_payment, create_payment, register_user


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
