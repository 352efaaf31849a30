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
    LargeBinary,
    String,
    Text,
    Uuid,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from kassa.db import Base, UTCDateTime
from kassa.payments.states import PaymentStatus

_STATUSES = ", ".join(f"'{s.value}'" for s in PaymentStatus)


class Payment(Base):
    """A payment. `amount`, `amount_captured`, `amount_refunded` and `amount_refund_pending`
    are minor units of `currency`; the database enforces 0 <= refunded + pending <= amount.

    `amount` is what was asked for (and, with manual capture, authorized); `amount_captured`
    what moved: NULL means the whole amount (every automatic charge, and rows older than
    manual capture), so `captured_amount()` is the one way to read it."""

    __tablename__ = "payment"
    __table_args__ = (
        CheckConstraint(f"status IN ({_STATUSES})", name="status_valid"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "amount_refunded >= 0 AND amount_refund_pending >= 0 "
            "AND amount_refunded + amount_refund_pending <= amount",
            name="refunds_within_amount",
        ),
        Index("ix_payment_user_id_created_at", "user_id", "created_at"),
        Index("ix_payment_status_updated_at", "status", "updated_at"),
        # The worker's expiry sweep: authorizations by age.
        Index("ix_payment_status_authorized_at", "status", "authorized_at"),
        # The lists (newest first, keyset cursor) and their status filter; on PostgreSQL also
        # a GIN index on CAST(metadata AS JSONB) for metadata lookups (migration list_indexes).
        Index("ix_payment_list", "user_id", "livemode", text("created_at DESC"), text("id DESC")),
        Index(
            "ix_payment_list_status",
            "user_id",
            "livemode",
            "status",
            text("created_at DESC"),
            text("id DESC"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("user_account.id", ondelete="RESTRICT")
    )
    status: Mapped[str] = mapped_column(String(24))
    amount: Mapped[int] = mapped_column(BigInteger)
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_refund_pending: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(CHAR(3))
    payment_method: Mapped[str] = mapped_column(String(24))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSON)
    failure_code: Mapped[str | None] = mapped_column(String(48), nullable=True)
    failure_message: Mapped[str | None] = mapped_column(String(255), nullable=True)
    processor: Mapped[str] = mapped_column(String(24))
    # Set when the processor prepares the charge (before any money moves), else at settling.
    processor_reference: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # Calls to the processor's `charge` so far: part of its idempotency keys.
    charge_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Keyed HMAC of the card number (kassa.vault.fingerprint): the same card, recognised.
    card_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    # Test or live: an object of one mode is invisible to a caller acting in the other.
    livemode: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # automatic | manual (authorize at `process`, `capture` later).
    capture_method: Mapped[str] = mapped_column(
        String(16), default="automatic", server_default="automatic"
    )
    amount_captured: Mapped[int | None] = mapped_column(BigInteger, nullable=True, default=None)
    # When the authorization of a manual-capture payment was granted (its expiry runs from it).
    authorized_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, default=None)
    # While `processing`: what the processor is being asked (charge, capture, void), so
    # reconciliation repeats that step; with `capture`, the amount asked for.
    processor_step: Mapped[str | None] = mapped_column(String(16), nullable=True, default=None)
    capture_amount: Mapped[int | None] = mapped_column(BigInteger, nullable=True, default=None)
    # With `requires_action`: where the customer authenticates; `return_url` comes back after.
    next_action_url: Mapped[str | None] = mapped_column(Text, nullable=True, default=None)
    return_url: Mapped[str | None] = mapped_column(Text, nullable=True, default=None)

    def captured_amount(self) -> int:
        """What the charge took: `amount` unless a manual capture took less."""
        return self.amount if self.amount_captured is None else self.amount_captured

    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PaymentSecret(Base):
    """The vaulted card number (or wallet token) and CVC, sealed with AES-GCM.

    Kept only while a charge may need it: the CVC goes when processing starts, the whole row
    when the payment is settled or canceled. Each ciphertext is bound to its payment id."""

    __tablename__ = "payment_secret"

    payment_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("payment.id", ondelete="CASCADE"), primary_key=True
    )
    key_id: Mapped[str] = mapped_column(String(32))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    cvc_key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    cvc_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
