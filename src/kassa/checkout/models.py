"""The checkout_session table: a hosted payment page a merchant created for one amount."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CHAR,
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from kassa.db import Base, UTCDateTime


class CheckoutSession(Base):
    """One amount a merchant asks a customer to pay on kassa's own page.

    `status` is `open` until one of its payments completes (`complete`, with `payment_id`),
    and moves once: the completing update is conditional on `open`. `expired` is never
    stored; an open session past `expires_at` reads as expired. `attempt` counts the
    payments that failed: the next one is keyed by it, so a double submit or a second tab
    makes one payment per attempt, never two."""

    __tablename__ = "checkout_session"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'complete')", name="status"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("attempt >= 0", name="attempt_not_negative"),
        Index("ix_checkout_session_user_id_created_at_id", "user_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("user_account.id", ondelete="RESTRICT")
    )
    livemode: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    status: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(CHAR(3))
    description: Mapped[str | None] = mapped_column(String(500), nullable=True)
    capture: Mapped[str] = mapped_column(String(16), default="automatic")
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    # kassa's page for the session, fixed when it is created.
    url: Mapped[str] = mapped_column(Text)
    success_url: Mapped[str] = mapped_column(Text)
    cancel_url: Mapped[str] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The payment of the current attempt (none until one is made), and the one that completed.
    last_payment_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    payment_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("payment.id", ondelete="RESTRICT"), nullable=True
    )
    # Why the previous attempt failed, shown on the page until the next attempt is made.
    last_failure_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
