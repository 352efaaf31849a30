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

from sqlalchemy import CTE

from kassa.db import Runner, bound_row, gated_insert, new_id, table_of
from kassa.ledger.models import LedgerEntry

CLEARING = "processor_clearing"
HOLDS = "authorization_holds"
_ENTRY = table_of(LedgerEntry)
_INSERT_ENTRY = _ENTRY.insert()


def payable_account(user_id: uuid.UUID) -> str:
    return f"merchant_payable:{user_id}"


def held_account(user_id: uuid.UUID) -> str:
    return f"merchant_held:{user_id}"


def _lines(
    kind: str,
    lines: list[tuple[str, int]],
    *,
    currency: str,
    payment_id: uuid.UUID,
    refund_id: uuid.UUID | None,
    livemode: bool,
    now: datetime,
) -> list[dict[str, object]]:
    if sum(amount for _, amount in lines) != 0:
        raise ValueError("a posting must sum to zero")
    posting_id = new_id()
    return [
        {
            "id": new_id(),
            "posting_id": posting_id,
            "kind": kind,
            "account": account,
            "amount": amount,
            "currency": currency,
            "livemode": livemode,
            "payment_id": payment_id,
            # The refund id is unique: one posting per refund, recorded on its first line.
            "refund_id": refund_id if index == 0 else None,
            "created_at": now,
        }
        for index, (account, amount) in enumerate(lines)
    ]


def _bound(lines: list[dict[str, object]]) -> dict[str, object]:
    return {
        name: value
        for index, line in enumerate(lines, start=1)
        for name, value in bound_row(_ENTRY, f"l{index}_", line).items()
    }


class LedgerService:
    @staticmethod
    def post_part(gate: CTE) -> list[CTE]:
        """PostgreSQL: a posting's two lines (`charge_values` / `refund_values`) inside a
        statement of several writes, written when `gate` returned a row."""
        return [
            gated_insert(_ENTRY, f"l{index}_", gate, f"ledger_line_{index}") for index in (1, 2)
        ]

    @staticmethod
    def charge_values(
        *,
        user_id: uuid.UUID,
        payment_id: uuid.UUID,
        amount: int,
        currency: str,
        livemode: bool,
        now: datetime,
    ) -> dict[str, object]:
        return _bound(
            _lines(
                "charge",
                [(CLEARING, amount), (payable_account(user_id), -amount)],
                currency=currency,
                payment_id=payment_id,
                refund_id=None,
                livemode=livemode,
                now=now,
            )
        )

    @staticmethod
    def refund_values(
        *,
        user_id: uuid.UUID,
        payment_id: uuid.UUID,
        refund_id: uuid.UUID,
        amount: int,
        currency: str,
        livemode: bool,
        now: datetime,
    ) -> dict[str, object]:
        return _bound(
            _lines(
                "refund",
                [(payable_account(user_id), amount), (CLEARING, -amount)],
                currency=currency,
                payment_id=payment_id,
                refund_id=refund_id,
                livemode=livemode,
                now=now,
            )
        )

    @staticmethod
    async def post_charge(
        db: Runner,
        *,
        user_id: uuid.UUID,
        payment_id: uuid.UUID,
        amount: int,
        currency: str,
        livemode: bool,
        now: datetime,
    ) -> None:
        await _post(
            db,
            "charge",
            [(CLEARING, amount), (payable_account(user_id), -amount)],
            currency=currency,
            payment_id=payment_id,
            refund_id=None,
            livemode=livemode,
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
        livemode: bool,
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
            livemode=livemode,
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
        livemode: bool,
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
            livemode=livemode,
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
        livemode: bool,
        now: datetime,
    ) -> None:
        await _post(
            db,
            "refund",
            [(payable_account(user_id), amount), (CLEARING, -amount)],
            currency=currency,
            payment_id=payment_id,
            refund_id=refund_id,
            livemode=livemode,
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
    livemode: bool,
    now: datetime,
) -> None:
    entries = _lines(
        kind,
        lines,
        currency=currency,
        payment_id=payment_id,
        refund_id=refund_id,
        livemode=livemode,
        now=now,
    )
    await db.execute(_INSERT_ENTRY, entries)
