"""Opaque cursors for newest-first lists ordered by (created_at, id)."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from kassa.errors import FieldError, ValidationFailed


@dataclass(frozen=True, slots=True)
class Cursor:
    created_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        raw = f"{self.created_at.isoformat()}|{self.id.hex}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            padded = token + "=" * (-len(token) % 4)
            created, _, ident = base64.urlsafe_b64decode(padded).decode().partition("|")
            created_at = datetime.fromisoformat(created)
            if created_at.tzinfo is None:
                raise ValueError
            # Normalised here, so an offset that pushes the instant past year 1 or 9999 is
            # refused as a bad cursor instead of failing later in the query (a 500).
            created_at = created_at.astimezone(UTC)
            return cls(created_at=created_at, id=uuid.UUID(hex=ident))
        except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
            raise ValidationFailed([FieldError("cursor", "not a cursor from this list")]) from None
