"""Postings for money that moved, written in the same transaction as the state change.

Accounts:
- `processor_clearing` — what the processor collected for us and owes us (a debit balance);
- `merchant_payable:<user id>` — what kassa owes the merchant (a credit balance);
- `authorization_holds` — authorizations the processor granted and kassa has not captured or
  released (a debit balance: money promised, not collected);
- `merchant_held:<user id>` — the merchant's side of those holds (a credit balance): not
  revenue and not payable until captured.

An authorization (manual capture) of A posts holds +A / held −A ("hold"); its capture or
void releases it whole (the reverse, "release") — a capture of C ≤ A then posts the charge of
C like any other. So the holds accounts are zero for every payment that is not authorized
right now, and revenue (clearing and payable) only ever sees what was captured.

A completed charge of X posts clearing +X / payable −X; a succeeded refund of R posts
payable +R / clearing −R. So for every payment, the payable balance is −(amount −
amount_refunded), and every posting sums to zero per currency.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from kassa.db import Runner, new_id, table_of
from kassa.ledger.models import LedgerEntry

CLEARING = "processor_clearing"
HOLDS = "authorization_holds"
_INSERT_ENTRY = table_of(LedgerEntry).insert()


def payable_account(user_id: uuid.UUID) -> str:
    return f"merchant_payable:{user_id}"


def held_account(user_id: uuid.UUID) -> str:
    return f"merchant_held:{user_id}"


class LedgerService:
    @staticmethod
    async def post_charge(
        db: Runner,
        *,
        user_id: uuid.UUID,
        payment_id: uuid.UUID,
        amount: int,
        currency: str,
        now: datetime,
    ) -> None:
        await _post(
            db,
            "charge",
            [(CLEARING, amount), (payable_account(user_id), -amount)],
            currency=currency,
            payment_id=payment_id,
            refund_id=None,
            now=now,
        )

    @staticmethod
    async def post_hold(
        db: Runner,
        *,
        user_id: uuid.UUID,
        payment_id: uuid.UUID,
        amount: int,
        currency: str,
        now: datetime,
    ) -> None:
        """An authorization of `amount` granted: held, not revenue."""
        await _post(
            db,
            "hold",
            [(HOLDS, amount), (held_account(user_id), -amount)],
            currency=currency,
            payment_id=payment_id,
            refund_id=None,
            now=now,
        )

    @staticmethod
    async def release_hold(
        db: Runner,
        *,
        user_id: uuid.UUID,
        payment_id: uuid.UUID,
        amount: int,
        currency: str,
        now: datetime,
    ) -> None:
        """The authorization of `amount` captured or voided: the hold goes, whole."""
        await _post(
            db,
            "release",
            [(held_account(user_id), amount), (HOLDS, -amount)],
            currency=currency,
            payment_id=payment_id,
            refund_id=None,
            now=now,
        )

    @staticmethod
    async def post_refund(
        db: Runner,
        *,
        user_id: uuid.UUID,
        payment_id: uuid.UUID,
        refund_id: uuid.UUID,
        amount: int,
        currency: str,
        now: datetime,
    ) -> None:
        await _post(
            db,
            "refund",
            [(payable_account(user_id), amount), (CLEARING, -amount)],
            currency=currency,
            payment_id=payment_id,
            refund_id=refund_id,
            now=now,
        )


async def _post(
    db: Runner,
    kind: str,
    lines: list[tuple[str, int]],
    *,
    currency: str,
    payment_id: uuid.UUID,
    refund_id: uuid.UUID | None,
    now: datetime,
) -> None:
    if sum(amount for _, amount in lines) != 0:
        raise ValueError("a posting must sum to zero")
    posting_id = new_id()
    entries = [
        {
            "id": new_id(),
            "posting_id": posting_id,
            "kind": kind,
            "account": account,
            "amount": amount,
            "currency": currency,
            "payment_id": payment_id,
            # The refund id is unique: one posting per refund, recorded on its first line.
            "refund_id": refund_id if index == 0 else None,
            "created_at": now,
        }
        for index, (account, amount) in enumerate(lines)
    ]
    await db.execute(_INSERT_ENTRY, entries)
