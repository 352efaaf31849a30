from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from kassa.db import Base, UTCDateTime


class IdempotencyRecord(Base):
    """One `Idempotency-Key` of one user: the keyed hash of the request it was first used
    with, the effect its request committed (written in that effect's own transaction) and,
    once that request finished, the response to replay. Never the request body.

    `state`: `in_flight` (claimed, nothing committed: a lapsed lease may be taken over and
    the request run again), `effect_committed` (`effect` names what was done to object
    `effect_id`; never run again), `completed` (the response is kept). `token` changes
    with every claim and takeover: only its holder may commit the effect or finish."""

    __tablename__ = "idempotency_record"
    __table_args__ = (
        UniqueConstraint("user_id", "key", name="uq_idempotency_record_user_id_key"),
        Index("ix_idempotency_record_expires_at", "expires_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("user_account.id", ondelete="CASCADE")
    )
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # in_flight | effect_committed | completed
    token: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    effect: Mapped[str | None] = mapped_column(String(16), nullable=True)
    effect_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    response_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    response_type: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
