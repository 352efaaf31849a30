"""API keys: a user's secrets for calling kassa server to server, each of one mode."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, LargeBinary, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from kassa.db import Base, UTCDateTime


class ApiKey(Base):
    """One secret key (`sk_test_…` / `sk_live_…`). The secret itself is never stored: only
    its keyed hash (HMAC-SHA256 under a server key), unique, so a request's key is found by
    one indexed lookup; `last4` is kept for display.

    `scopes` is the list of scopes the key may use, or null for all of them. A revoked key
    (`revoked_at` set) stops working on the next request: every request reads the row."""

    __tablename__ = "api_key"
    __table_args__ = (Index("ix_api_key_user_id_created_at", "user_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("user_account.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(100))
    livemode: Mapped[bool] = mapped_column(Boolean)
    scopes: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    last4: Mapped[str] = mapped_column(String(4))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
