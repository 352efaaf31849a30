"""Which customer at a processor stands for which kassa user.

A processor that keeps customers (Stripe) gets one per kassa user, created on the user's
first charge and remembered here, so repeat payers keep one customer there. The first
mapping stored for a user wins; a customer created by a losing racer is simply never used.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from kassa.db import Base, UTCDateTime, dialect_of, insert_unless_present, table_of


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


class DatabaseCustomerStore:
    """Mappings in kassa's database, so every process and host uses one customer per user."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], processor: str) -> None:
        self._sessions = sessions
        self._processor = processor

    async def get(self, user_id: str) -> str | None:
        async with self._sessions() as session:
            found: str | None = await session.scalar(
                select(ProcessorCustomer.customer_reference).where(
                    ProcessorCustomer.processor == self._processor,
                    ProcessorCustomer.user_id == user_id,
                )
            )
            return found

    async def put(self, user_id: str, customer_reference: str) -> str:
        async with self._sessions.begin() as session:
            await session.execute(
                insert_unless_present(
                    dialect_of(session), table_of(ProcessorCustomer), "processor", "user_id"
                ),
                {
                    "processor": self._processor,
                    "user_id": user_id,
                    "customer_reference": customer_reference,
                    "created_at": datetime.now(UTC),
                },
            )
            kept: str | None = await session.scalar(
                select(ProcessorCustomer.customer_reference).where(
                    ProcessorCustomer.processor == self._processor,
                    ProcessorCustomer.user_id == user_id,
                )
            )
            assert kept is not None  # inserted above, or kept from an earlier insert
            return kept
