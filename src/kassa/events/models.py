"""The event table: one row per state change, written in the business transaction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, Uuid, false
from sqlalchemy.orm import Mapped, mapped_column

from kassa.db import Base, UTCDateTime


class Event(Base):
    """Something that happened to one of a user's payments or refunds.

    Immutable once written: `data` is `{"object": ...}` with the Payment or Refund exactly as
    the API returned it at that moment."""

    __tablename__ = "event"
    __table_args__ = (
        Index("ix_event_user_id_created_at_id", "user_id", "created_at", "id"),
        Index("ix_event_user_id_type_created_at_id", "user_id", "type", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("user_account.id", ondelete="RESTRICT")
    )
    type: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Test or live: an object of one mode is invisible to a caller acting in the other.
    livemode: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
