"""The payment lists: a user's payments of one mode, newest first, filtered, in cursor pages.

Read-only, one statement a page (no transaction): a keyset cursor needs no snapshot, since
a row's place in the order (created_at, id) never changes.
"""

from __future__ import annotations

import uuid

from kassa.db import Database
from kassa.pagination import Cursor, Page
from kassa.payments import repository
from kassa.payments.models import Payment
from kassa.payments.repository import PaymentFilters

__all__ = ["PaymentFilters", "PaymentLists"]


def _cursor_of(payment: Payment) -> Cursor:
    return Cursor(payment.created_at, payment.id)


class PaymentLists:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def list(
        self,
        user_id: uuid.UUID,
        livemode: bool,
        filters: PaymentFilters,
        *,
        limit: int,
        cursor: str | None,
    ) -> Page[Payment]:
        after = Cursor.decode(cursor) if cursor else None
        rows = await repository.list_payments(
            self._db, user_id, livemode, filters, cursor=after, limit=limit + 1
        )
        return Page.of(rows, limit, _cursor_of)

    async def owns(self, user_id: uuid.UUID, livemode: bool, payment_id: uuid.UUID) -> bool:
        """The payment is the user's and of this mode (anything else is a 404 to them)."""
        return await repository.is_owned(self._db, user_id, livemode, payment_id)
