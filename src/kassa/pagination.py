"""Opaque cursors for newest-first lists ordered by (created_at, id)."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, bindparam, tuple_

from kassa.errors import FieldError, ValidationFailed

T = TypeVar("T")


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


def before_cursor(created_at: ColumnElement[Any], id_: ColumnElement[Any], cursor: Cursor) -> Any:
    """Rows after `cursor` in newest-first order: `(created_at, id) < (cursor's)`. One row
    comparison, which an index ending in `created_at DESC, id DESC` answers as a range
    (an `a < x OR (a = x AND b < y)` would be a filter, and a deep page would walk every
    row before it). Rows inserted after the cursor was made are newer, so they never enter
    a later page: a walk sees every row once, none twice."""
    return tuple_(created_at, id_) < tuple_(
        bindparam("cursor_created_at", cursor.created_at, type_=created_at.type),
        bindparam("cursor_id", cursor.id, type_=id_.type),
    )


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a newest-first list and the cursor of the next (None on the last)."""

    data: Sequence[T]
    has_more: bool
    next_cursor: str | None

    @classmethod
    def of(cls, rows: Sequence[T], limit: int, cursor_of: Callable[[T], Cursor]) -> Page[T]:
        """The page from up to `limit + 1` rows read: the extra one only says more follow."""
        data = rows[:limit]
        has_more = len(rows) > limit
        return cls(data, has_more, cursor_of(data[-1]).encode() if has_more else None)
