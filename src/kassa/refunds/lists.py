"""The refund lists: a user's refunds of one mode, or one payment's, newest first, in cursor
pages (one statement a page; see kassa.payments.lists)."""

from __future__ import annotations

import uuid

from kassa.db import Database
from kassa.pagination import Cursor, Page
from kassa.payments.errors import PaymentNotFound
from kassa.payments.lists import PaymentLists
from kassa.refunds import repository
from kassa.refunds.models import Refund


def _cursor_of(refund: Refund) -> Cursor:
    return Cursor(refund.created_at, refund.id)


class RefundLists:
    def __init__(self, db: Database, payments: PaymentLists) -> None:
        self._db = db
        self._payments = payments

    async def list(
        self,
        user_id: uuid.UUID,
        livemode: bool,
        *,
        limit: int,
        cursor: str | None,
        payment_id: uuid.UUID | None = None,
    ) -> Page[Refund]:
        """With `payment_id`, that payment's refunds: PaymentNotFound unless the payment is
        the user's and of this mode."""
        after = Cursor.decode(cursor) if cursor else None
        rows = await repository.list_refunds(
            self._db, user_id, livemode, payment_id=payment_id, cursor=after, limit=limit + 1
        )
        # A refund found is of the user's payment of this mode (a refund carries its
        # payment's owner and mode), so only an empty page needs the payment looked up.
        if (
            payment_id is not None
            and not rows
            and not await self._payments.owns(user_id, livemode, payment_id)
        ):
            raise PaymentNotFound
        return Page.of(rows, limit, _cursor_of)
