"""Where the simulator remembers what it charged, like a real processor's own records.

The in-memory store serves a single process; the database store (its own tables, reached
through the database handle, as if it were the processor's system) makes the simulator answer
consistently across server processes, hosts and restarts: one reference, one charge.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import CHAR, BigInteger, Insert, String, Table, bindparam, func, select
from sqlalchemy.orm import Mapped, mapped_column

from kassa.db import Base, Database, UTCDateTime, insert_unless_present, table_of
from kassa.processors.base import ChargeResult, FailureCode, Outcome, RefundResult


class SimulatorCharge(Base):
    __tablename__ = "simulator_charge"

    reference: Mapped[str] = mapped_column(String(255), primary_key=True)
    processor_reference: Mapped[str] = mapped_column(String(64), unique=True)
    outcome: Mapped[str] = mapped_column(String(16))
    failure_code: Mapped[str | None] = mapped_column(String(48), nullable=True)
    failure_message: Mapped[str | None] = mapped_column(String(255), nullable=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(CHAR(3))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SimulatorRefund(Base):
    __tablename__ = "simulator_refund"

    reference: Mapped[str] = mapped_column(String(255), primary_key=True)
    processor_reference: Mapped[str] = mapped_column(String(64), unique=True)
    charge_reference: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(CHAR(3))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SimulatorStore(Protocol):
    async def put_charge(
        self, reference: str, result: ChargeResult, amount: int, currency: str
    ) -> ChargeResult:
        """Keep `result` unless `reference` is known; return what is kept."""
        ...

    async def get_charge(self, reference: str) -> ChargeResult | None: ...

    async def put_refund(
        self,
        reference: str,
        result: RefundResult,
        charge_reference: str,
        amount: int,
        currency: str,
    ) -> RefundResult: ...

    async def count_succeeded_charges(self) -> int: ...


class MemorySimulatorStore:
    def __init__(self) -> None:
        self._charges: dict[str, ChargeResult] = {}
        self._refunds: dict[str, RefundResult] = {}

    async def put_charge(
        self, reference: str, result: ChargeResult, amount: int, currency: str
    ) -> ChargeResult:
        return self._charges.setdefault(reference, result)

    async def get_charge(self, reference: str) -> ChargeResult | None:
        return self._charges.get(reference)

    async def put_refund(
        self,
        reference: str,
        result: RefundResult,
        charge_reference: str,
        amount: int,
        currency: str,
    ) -> RefundResult:
        return self._refunds.setdefault(reference, result)

    @property
    def succeeded_charges(self) -> int:
        return sum(1 for r in self._charges.values() if r.outcome is Outcome.SUCCEEDED)

    async def count_succeeded_charges(self) -> int:
        return self.succeeded_charges


def _charge_result(row: Mapping[Any, Any]) -> ChargeResult:
    return ChargeResult(
        outcome=Outcome(row["outcome"]),
        processor_reference=row["processor_reference"],
        failure_code=FailureCode(row["failure_code"]) if row["failure_code"] else None,
        failure_message=row["failure_message"],
    )


def _refund_result(row: Mapping[Any, Any]) -> RefundResult:
    return RefundResult(Outcome(row["outcome"]), row["processor_reference"])


_CHARGE = table_of(SimulatorCharge)
_REFUND = table_of(SimulatorRefund)


def _keep_first(table: Table) -> dict[str, Insert]:
    """Insert unless the reference is there, returning the row inserted (per dialect)."""
    return {
        dialect: insert_unless_present(dialect, table, "reference").returning(*table.c)
        for dialect in ("postgresql", "sqlite")
    }


_KEEP_FIRST = {table.name: _keep_first(table) for table in (_CHARGE, _REFUND)}
_GET = {
    table.name: select(table).where(table.c.reference == bindparam("ref"))
    for table in (_CHARGE, _REFUND)
}
_COUNT_SUCCEEDED = (
    select(func.count()).select_from(_CHARGE).where(_CHARGE.c.outcome == Outcome.SUCCEEDED.value)
)


class DatabaseSimulatorStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def _keep_first(self, table: Table, values: dict[str, Any]) -> Mapping[Any, Any]:
        """Insert unless the reference is known; the row kept, in one statement (and a read
        only when another process won the race, after its insert committed)."""
        values = {**values, "created_at": datetime.now(UTC)}
        row = await self._db.first(_KEEP_FIRST[table.name][self._db.dialect], values)
        if row is None:
            row = await self._db.first(_GET[table.name], {"ref": values["reference"]})
        assert row is not None  # inserted here, or by the process that won the race
        return row

    async def put_charge(
        self, reference: str, result: ChargeResult, amount: int, currency: str
    ) -> ChargeResult:
        row = await self._keep_first(
            _CHARGE,
            {
                "reference": reference,
                "processor_reference": result.processor_reference,
                "outcome": result.outcome.value,
                "failure_code": result.failure_code.value if result.failure_code else None,
                "failure_message": result.failure_message,
                "amount": amount,
                "currency": currency,
            },
        )
        return _charge_result(row)

    async def get_charge(self, reference: str) -> ChargeResult | None:
        row = await self._db.first(_GET[_CHARGE.name], {"ref": reference})
        return _charge_result(row) if row is not None else None

    async def put_refund(
        self,
        reference: str,
        result: RefundResult,
        charge_reference: str,
        amount: int,
        currency: str,
    ) -> RefundResult:
        row = await self._keep_first(
            _REFUND,
            {
                "reference": reference,
                "processor_reference": result.processor_reference,
                "charge_reference": charge_reference,
                "outcome": result.outcome.value,
                "amount": amount,
                "currency": currency,
            },
        )
        return _refund_result(row)

    async def count_succeeded_charges(self) -> int:
        return int(await self._db.scalar(_COUNT_SUCCEEDED) or 0)
