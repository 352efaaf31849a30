"""Which customer at a processor stands for which kassa user.

A processor that keeps customers (Stripe) gets one per kassa user, created on the user's
first charge and remembered here, so repeat payers keep one customer there. The first
mapping stored for a user wins; a customer created by a losing racer is simply never used.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import String, bindparam, select
from sqlalchemy.orm import Mapped, mapped_column

from kassa.db import Base, Database, UTCDateTime, insert_unless_present, table_of


class ProcessorCustomer(Base):
    __tablename__ = "processor_customer"

    processor: Mapped[str] = mapped_column(String(24), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_reference: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CustomerStore(Protocol):
    async def get(self, user_id: str) -> str | None: ...

    async def put(self, user_id: str, customer_reference: str) -> str:
        """Keep the mapping unless the user already has one; return the one kept."""
        ...


class MemoryCustomerStore:
    def __init__(self) -> None:
        self._customers: dict[str, str] = {}

    async def get(self, user_id: str) -> str | None:
        return self._customers.get(user_id)

    async def put(self, user_id: str, customer_reference: str) -> str:
        return self._customers.setdefault(user_id, customer_reference)


_CUSTOMER = table_of(ProcessorCustomer)
_GET = select(_CUSTOMER.c.customer_reference).where(
    _CUSTOMER.c.processor == bindparam("processor"), _CUSTOMER.c.user_id == bindparam("user")
)


class DatabaseCustomerStore:
    """Mappings in kassa's database, so every process and host uses one customer per user."""

    def __init__(self, db: Database, processor: str) -> None:
        self._db = db
        self._processor = processor

    async def get(self, user_id: str) -> str | None:
        found: str | None = await self._db.scalar(
            _GET, {"processor": self._processor, "user": user_id}
        )
        return found

    async def put(self, user_id: str, customer_reference: str) -> str:
        async with self._db.transaction() as db:
            await db.execute(
                insert_unless_present(db.dialect, _CUSTOMER, "processor", "user_id"),
                {
                    "processor": self._processor,
                    "user_id": user_id,
                    "customer_reference": customer_reference,
                    "created_at": datetime.now(UTC),
                },
            )
            kept: str | None = await db.scalar(
                _GET, {"processor": self._processor, "user": user_id}
            )
            assert kept is not None  # inserted above, or kept from an earlier insert
            return kept
