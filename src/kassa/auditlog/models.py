from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Index, String, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from kassa.db import Base, UTCDateTime


class AuditEvent(Base):
    """One thing done in an account: `action` on the object (`object_type`, `object_id`) by
    the actor (a user, an API key, or nobody authenticated: a failed login), from `ip`, in
    the request `request_id`.

    Append-only: kassa only inserts, and the database refuses UPDATE, DELETE (and, on
    PostgreSQL, TRUNCATE) of this table with triggers (migration audit_log). Never holds a
    secret: keys are named by id, passwords not at all."""

    __tablename__ = "audit_event"
    __table_args__ = (
        CheckConstraint("actor_type IN ('user', 'api_key', 'anonymous')", name="actor_type_valid"),
        Index("ix_audit_event_list", "user_id", text("created_at DESC"), text("id DESC")),
        Index(
            "ix_audit_event_list_action",
            "user_id",
            "action",
            text("created_at DESC"),
            text("id DESC"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # The account whose log this is (None: a failed login for an email no account has).
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("user_account.id", ondelete="RESTRICT"), nullable=True
    )
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    action: Mapped[str] = mapped_column(String(48))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    # The mode of the object acted on; None for what belongs to the account (logins, keys).
    livemode: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
