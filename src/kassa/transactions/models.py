from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    CHAR,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Uuid,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from kassa.db import Base, UTCDateTime


class Transaction(Base):
    """One `charge` per processed payment and one `refund` per refund, as the user sees them.

    Written in the same database transaction as the state change it records."""

    __tablename__ = "payment_transaction"
    __table_args__ = (
        CheckConstraint("type IN ('charge', 'refund')", name="type_valid"),
        CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status_valid"),
        Index("ix_payment_transaction_user_id_created_at_id", "user_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("user_account.id", ondelete="RESTRICT")
    )
    type: Mapped[str] = mapped_column(String(16))
    payment_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("payment.id", ondelete="RESTRICT"), index=True
    )
    refund_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("refund.id", ondelete="RESTRICT"), nullable=True, unique=True
    )
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(CHAR(3))
    status: Mapped[str] = mapped_column(String(16))
    payment_method: Mapped[str] = mapped_column(String(24))
    # Test or live: an object of one mode is invisible to a caller acting in the other.
    livemode: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
