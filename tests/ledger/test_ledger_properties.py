"""Property: whatever sequence of payments, charges, declines and refunds clients ask for, the
ledger balances, agrees with the payments, and owes each merchant exactly what was kept.

The database is shared by every test of this xdist worker, so the per-payment assertions are
about this example's payments only; "no mismatch" holds for the whole ledger.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from kassa.audit.service import BooksAuditor
from kassa.ledger.models import LedgerEntry
from kassa.ledger.service import CLEARING, payable_account
from tests.conftest import Api, User, card_details, create_payment, register_user

DECLINED_CARD = "4000000000000002"
APPROVED_CARD = "4242424242424242"


@dataclass
class Model:
    """What kassa should have done with one payment."""

    amount: int
    declines: bool
    status: str = "pending"
    refunded: int = 0
    payment_id: str = ""
    refunds: list[int] = field(default_factory=list)


payment_specs = st.tuples(
    st.integers(min_value=1, max_value=1_000_000),
    st.sampled_from(["USD", "EUR", "JPY"]),
    st.booleans(),  # the card declines
)
# ("process", i) | ("refund", i, amount or None for "the rest")
actions = st.one_of(
    st.tuples(st.just("process"), st.integers(0, 3)),
    st.tuples(
        st.just("refund"),
        st.integers(0, 3),
        st.one_of(st.none(), st.integers(min_value=1, max_value=1_000_000)),
    ),
    st.tuples(
        st.just("refund"),
        st.integers(0, 3),
        st.floats(min_value=0.01, max_value=1.0),  # a share of the amount, so refunds fit
    ),
)


async def _act(api: Api, user: User, model: Model, action: tuple[Any, ...]) -> None:
    headers = user.headers
    if action[0] == "process":
        response = await api.client.post(
            "/api/payments/process", json={"payment_id": model.payment_id}, headers=headers
        )
        if model.status != "pending":
            assert response.status_code == 409, response.text
            return
        assert response.status_code == 200, response.text
        model.status = "failed" if model.declines else "completed"
        assert response.json()["status"] == model.status
        return
    wanted = action[2]
    if isinstance(wanted, float):
        wanted = max(1, int(model.amount * wanted))
    body = {} if wanted is None else {"amount": wanted}
    response = await api.client.post(
        f"/api/payments/{model.payment_id}/refund", json=body, headers=headers
    )
    left = model.amount - model.refunded
    if model.status not in {"completed", "partially_refunded"}:
        assert response.status_code == 409, response.text
        return
    take = left if wanted is None else wanted
    if take > left:
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "amount_exceeds_refundable"
        return
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "succeeded"
    model.refunded += take
    model.refunds.append(take)
    model.status = "refunded" if model.refunded == model.amount else "partially_refunded"


async def _balances(api: Api, payment_id: str) -> dict[str, int]:
    rows = await api.container.db.tuples(
        select(LedgerEntry.account, func.sum(LedgerEntry.amount))
        .where(LedgerEntry.payment_id == uuid.UUID(payment_id))
        .group_by(LedgerEntry.account)
    )
    return {account: int(total) for account, total in rows}


async def _postings_balance(api: Api, payment_id: str) -> list[int]:
    rows = await api.container.db.tuples(
        select(func.sum(LedgerEntry.amount))
        .where(LedgerEntry.payment_id == uuid.UUID(payment_id))
        .group_by(LedgerEntry.posting_id, LedgerEntry.currency)
    )
    return [int(total) for (total,) in rows]


@pytest.fixture
async def merchant(api: Api) -> User:
    """One merchant for all examples of a run (registering hashes a password: slow)."""
    return await register_user(api.client)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    specs=st.lists(payment_specs, min_size=1, max_size=4),
    script=st.lists(actions, min_size=1, max_size=14),
)
async def test_any_sequence_of_charges_and_refunds_keeps_the_ledger_balanced(
    api: Api, merchant: User, specs: list[tuple[int, str, bool]], script: list[tuple[Any, ...]]
) -> None:
    user = merchant
    models: list[Model] = []
    for amount, currency, declines in specs:
        number = DECLINED_CARD if declines else APPROVED_CARD
        created = await create_payment(
            api.client, user, amount=amount, currency=currency, details=card_details(number)
        )
        models.append(Model(amount=amount, declines=declines, payment_id=created["id"]))
    for action in script:
        await _act(api, user, models[action[1] % len(models)], action)

    for model in models:
        status = await api.client.get(
            f"/api/payments/{model.payment_id}/status", headers=user.headers
        )
        assert (status.json()["status"], status.json()["amount_refunded"]) == (
            model.status,
            model.refunded,
        )
        kept = model.amount - model.refunded if model.status not in {"pending", "failed"} else 0
        balances = await _balances(api, model.payment_id)
        assert balances.get(payable_account(uuid.UUID(user.id)), 0) == -kept
        assert balances.get(CLEARING, 0) == kept
        assert set(balances) <= {CLEARING, payable_account(uuid.UUID(user.id))}
        assert all(total == 0 for total in await _postings_balance(api, model.payment_id))
    report = await BooksAuditor(api.container.db, processor_records=False).verify()
    assert [str(m) for m in report.mismatches] == []
