"""Postings for money that moved, written in the same transaction as the state change.

Accounts:
- `processor_clearing` — what the processor collected for us and owes us (a debit balance);
- `merchant_payable:<user id>` — what kassa owes the merchant (a credit balance).

A completed charge of X posts clearing +X / payable −X; a succeeded refund of R posts
payable +R / clearing −R. So for every payment, the payable balance is −(amount −
amount_refunded), and every posting sums to zero per currency.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kassa.db import Executor, new_id, table_of
from kassa.ledger.models import LedgerEntry

CLEARING = "processor_clearing"
_INSERT_ENTRY = table_of(LedgerEntry).insert()


def payable_account(user_id: uuid.UUID) -> str:
    return f"merchant_payable:{user_id}"


class LedgerService:
    @staticmethod
    async def post_charge(
        db: Executor,
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
    async def post_refund(
        db: Executor,
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
    db: Executor,
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


@dataclass(frozen=True, slots=True)
class Mismatch:
    what: str

    def __str__(self) -> str:
        return self.what


@dataclass(frozen=True, slots=True)
class VerifyReport:
    postings: int
    payments: int
    mismatches: list[Mismatch]

    @property
    def ok(self) -> bool:
        return not self.mismatches


class LedgerVerifier:
    """Checks the ledger against itself and against payments and refunds."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], progress: Callable[[int], None]
    ) -> None:
        self._sessions = sessions
        self._progress = progress

    async def verify(self, *, limit_mismatches: int = 20) -> VerifyReport:
        # Imported here: those services post to the ledger, so they import this module.
        from kassa.payments.service import PaymentService
        from kassa.refunds.service import RefundService

        mismatches: list[Mismatch] = []

        def note(what: str) -> None:
            if len(mismatches) < limit_mismatches:
                mismatches.append(Mismatch(what))

        async with self._sessions() as session:
            unbalanced = await session.execute(
                select(LedgerEntry.posting_id, LedgerEntry.currency, func.sum(LedgerEntry.amount))
                .group_by(LedgerEntry.posting_id, LedgerEntry.currency)
                .having(func.sum(LedgerEntry.amount) != 0)
                .limit(limit_mismatches)
            )
            for posting_id, currency, total in unbalanced:
                note(f"posting {posting_id} sums to {total} {currency}, not 0")
            postings = int(
                await session.scalar(select(func.count(func.distinct(LedgerEntry.posting_id)))) or 0
            )
            charged = await _clearing_totals(session, "charge")
            refunded = {
                pid: -total for pid, total in (await _clearing_totals(session, "refund")).items()
            }
            refund_totals = await RefundService.succeeded_totals(session)
            seen = 0
            async for row in PaymentService.iter_totals(session):
                seen += 1
                if seen % 1000 == 0:
                    self._progress(seen)
                expected_charge = row.amount if row.settled else 0
                if charged.pop(row.id, 0) != expected_charge:
                    note(f"payment {row.id}: charged in ledger != {expected_charge}")
                ledger_refunded = refunded.pop(row.id, 0)
                if ledger_refunded != row.amount_refunded:
                    note(
                        f"payment {row.id}: refunded in ledger {ledger_refunded} != "
                        f"amount_refunded {row.amount_refunded}"
                    )
                if refund_totals.get(row.id, 0) != row.amount_refunded:
                    note(f"payment {row.id}: succeeded refunds do not add up to amount_refunded")
                if row.amount_refunded > row.amount:
                    note(f"payment {row.id}: refunded more than the amount")
            self._progress(seen)
            for orphan in list(charged) + list(refunded):
                note(f"ledger lines for unknown payment {orphan}")
        return VerifyReport(postings=postings, payments=seen, mismatches=mismatches)


async def _clearing_totals(session: AsyncSession, kind: str) -> dict[uuid.UUID, int]:
    """Per payment, the sum of the clearing account's lines of one kind."""
    result = await session.execute(
        select(LedgerEntry.payment_id, func.sum(LedgerEntry.amount))
        .where(LedgerEntry.account == CLEARING, LedgerEntry.kind == kind)
        .group_by(LedgerEntry.payment_id)
    )
    return {pid: int(total) for pid, total in result}
