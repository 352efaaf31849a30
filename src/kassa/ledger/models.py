from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CHAR, BigInteger, Boolean, CheckConstraint, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from kassa.db import Base, UTCDateTime


class LedgerEntry(Base):
    """One line of a posting. Positive amounts are debits, negative are credits (minor
    units); the lines of one posting sum to zero per currency. Rows are only ever added.
    Each line is in its payment's mode's books (`livemode`): test and live never mix."""

    __tablename__ = "ledger_entry"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_nonzero"),
        Index("ix_ledger_entry_posting_id", "posting_id"),
        Index("ix_ledger_entry_payment_id", "payment_id"),
        Index("ix_ledger_entry_account_currency", "account", "currency"),
        # A book's balance is per mode: test money never sums with live money.
        Index("ix_ledger_entry_livemode_account_currency", "livemode", "account", "currency"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    posting_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    kind: Mapped[str] = mapped_column(String(16))  # charge | refund
    account: Mapped[str] = mapped_column(String(80))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(CHAR(3))
    # The payment's mode. None only on a line written by the release before this column,
    # during an upgrade (its mode is its payment's).
    livemode: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    payment_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    refund_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
