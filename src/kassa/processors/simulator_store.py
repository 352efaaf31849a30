"""Where the simulator remembers what it charged, like a real processor's own records.

The in-memory store serves a single process; the database store (its own tables, reached
through the database handle, as if it were the processor's system) makes the simulator answer
consistently across server processes, hosts and restarts: one reference, one charge.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import (
    CHAR,
    BigInteger,
    Boolean,
    Insert,
    String,
    Table,
    Text,
    bindparam,
    false,
    func,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from kassa.db import Base, Database, UTCDateTime, insert_unless_present, table_of
from kassa.processors.base import (
    FAILURE_MESSAGES,
    ChargeResult,
    FailureCode,
    Outcome,
    RefundResult,
)


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
    # Authorize only: `authorized` now, `succeeded` once captured (of `amount_captured`).
    manual: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    amount_captured: Mapped[int | None] = mapped_column(BigInteger, nullable=True, default=None)
    # A 3-D Secure card that declines once the customer has authenticated.
    failure_after_action: Mapped[str | None] = mapped_column(
        String(48), nullable=True, default=None
    )


class SimulatorChallenge(Base):
    """The simulator's 3-D Secure challenge of one charge: the page's unguessable token,
    single use (`open` until completed, failed or voided), expiring. Test mode only, like
    Stripe's own test page: the token is kept as it is, so a retried charge can point the
    customer to the same page."""

    __tablename__ = "simulator_challenge"

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    reference: Mapped[str] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(16))  # open | completed | failed
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(CHAR(3))
    return_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SimulatorRefund(Base):
    __tablename__ = "simulator_refund"

    reference: Mapped[str] = mapped_column(String(255), primary_key=True)
    processor_reference: Mapped[str] = mapped_column(String(64), unique=True)
    charge_reference: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(CHAR(3))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True, slots=True)
class ChargeRecord:
    """What the simulator keeps of one charge."""

    result: ChargeResult
    amount: int
    currency: str
    manual: bool = False
    failure_after_action: FailureCode | None = None
    reference: str = ""  # kassa's


@dataclass(frozen=True, slots=True)
class Challenge:
    token: str
    reference: str
    status: str  # open | completed | failed | voided
    amount: int
    currency: str
    return_url: str | None
    expires_at: datetime


class SimulatorStore(Protocol):
    async def put_charge(
        self,
        reference: str,
        result: ChargeResult,
        amount: int,
        currency: str,
        *,
        manual: bool = False,
        failure_after_action: FailureCode | None = None,
    ) -> ChargeResult:
        """Keep `result` unless `reference` is known; return what is kept."""
        ...

    async def get_charge(self, reference: str) -> ChargeResult | None: ...

    async def get_charge_record(self, reference: str) -> ChargeRecord | None: ...

    async def move_charge(
        self,
        reference: str,
        sources: frozenset[Outcome],
        outcome: Outcome,
        *,
        failure_code: FailureCode | None = None,
        amount_captured: int | None = None,
    ) -> ChargeResult | None:
        """Move the charge to `outcome` only from one of `sources` (and, with
        `amount_captured`, only when that is at most its amount), in one statement; None when
        it was in no such state."""
        ...

    async def put_challenge(self, challenge: Challenge) -> Challenge:
        """Keep `challenge` unless its charge has one; return what is kept."""
        ...

    async def get_challenge(self, token: str) -> Challenge | None: ...

    async def challenge_of(self, reference: str) -> Challenge | None: ...

    async def finish_challenge(
        self, token: str, status: str, now: datetime, *, unexpired: bool
    ) -> Challenge | None:
        """`open` → `status` in one statement (only before it expires, with `unexpired`);
        None when the challenge was not open (or had expired): of two racing, one wins."""
        ...

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
        self._charges: dict[str, ChargeRecord] = {}
        self._refunds: dict[str, RefundResult] = {}
        self._challenges: dict[str, Challenge] = {}

    async def put_charge(
        self,
        reference: str,
        result: ChargeResult,
        amount: int,
        currency: str,
        *,
        manual: bool = False,
        failure_after_action: FailureCode | None = None,
    ) -> ChargeResult:
        record = ChargeRecord(result, amount, currency, manual, failure_after_action, reference)
        return self._charges.setdefault(reference, record).result

    def _key(self, reference: str) -> str:
        """kassa's reference of a charge found by either reference (see `_GET_CHARGE`)."""
        if reference in self._charges:
            return reference
        return next(
            (k for k, r in self._charges.items() if r.result.processor_reference == reference),
            reference,
        )

    async def get_charge(self, reference: str) -> ChargeResult | None:
        record = self._charges.get(self._key(reference))
        return None if record is None else record.result

    async def get_charge_record(self, reference: str) -> ChargeRecord | None:
        return self._charges.get(self._key(reference))

    async def move_charge(
        self,
        reference: str,
        sources: frozenset[Outcome],
        outcome: Outcome,
        *,
        failure_code: FailureCode | None = None,
        amount_captured: int | None = None,
    ) -> ChargeResult | None:
        reference = self._key(reference)
        record = self._charges.get(reference)
        if record is None or record.result.outcome not in sources:
            return None
        if amount_captured is not None and amount_captured > record.amount:
            return None
        result = dataclasses.replace(
            record.result,
            outcome=outcome,
            failure_code=failure_code,
            failure_message=FAILURE_MESSAGES[failure_code] if failure_code else None,
            amount_captured=amount_captured,
            next_action=None,
        )
        self._charges[reference] = dataclasses.replace(record, result=result)
        return result

    async def put_challenge(self, challenge: Challenge) -> Challenge:
        for kept in self._challenges.values():
            if kept.reference == challenge.reference:
                return kept
        return self._challenges.setdefault(challenge.token, challenge)

    async def get_challenge(self, token: str) -> Challenge | None:
        return self._challenges.get(token)

    async def challenge_of(self, reference: str) -> Challenge | None:
        return next((c for c in self._challenges.values() if c.reference == reference), None)

    async def finish_challenge(
        self, token: str, status: str, now: datetime, *, unexpired: bool
    ) -> Challenge | None:
        challenge = self._challenges.get(token)
        if challenge is None or challenge.status != "open":
            return None
        if unexpired and challenge.expires_at <= now:
            return None
        self._challenges[token] = dataclasses.replace(challenge, status=status)
        return self._challenges[token]

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
        return sum(1 for r in self._charges.values() if r.result.outcome is Outcome.SUCCEEDED)

    async def count_succeeded_charges(self) -> int:
        return self.succeeded_charges


def _charge_result(row: Mapping[Any, Any]) -> ChargeResult:
    return ChargeResult(
        outcome=Outcome(row["outcome"]),
        processor_reference=row["processor_reference"],
        failure_code=FailureCode(row["failure_code"]) if row["failure_code"] else None,
        failure_message=row["failure_message"],
        amount_captured=row["amount_captured"],
    )


def _charge_record(row: Mapping[Any, Any]) -> ChargeRecord:
    after = row["failure_after_action"]
    return ChargeRecord(
        result=_charge_result(row),
        amount=row["amount"],
        currency=row["currency"],
        manual=bool(row["manual"]),
        failure_after_action=FailureCode(after) if after else None,
        reference=row["reference"],
    )


def _challenge(row: Mapping[Any, Any]) -> Challenge:
    return Challenge(
        token=row["token"],
        reference=row["reference"],
        status=row["status"],
        amount=row["amount"],
        currency=row["currency"],
        return_url=row["return_url"],
        expires_at=row["expires_at"],
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
_CHALLENGE = table_of(SimulatorChallenge)
_MOVE_CHARGE = (
    update(_CHARGE)
    .where(
        (_CHARGE.c.reference == bindparam("ref"))
        | (_CHARGE.c.processor_reference == bindparam("ref")),
        _CHARGE.c.outcome.in_(bindparam("sources", expanding=True)),
        _CHARGE.c.amount >= bindparam("at_most"),
    )
    .values(
        outcome=bindparam("to"),
        failure_code=bindparam("code"),
        failure_message=bindparam("message"),
        amount_captured=bindparam("captured"),
    )
    .returning(*_CHARGE.c)
)
# A charge is found by kassa's reference or by the simulator's own (`sim_ch_…`), which kassa
# stores on the payment once the charge answers: the way a processor finds its charges.
_GET_CHARGE = select(_CHARGE).where(
    (_CHARGE.c.reference == bindparam("ref")) | (_CHARGE.c.processor_reference == bindparam("ref"))
)
_GET_CHALLENGE = select(_CHALLENGE).where(_CHALLENGE.c.token == bindparam("tok"))
_CHALLENGE_OF = select(_CHALLENGE).where(_CHALLENGE.c.reference == bindparam("ref"))
_FINISH_CHALLENGE = (
    update(_CHALLENGE)
    .where(
        _CHALLENGE.c.token == bindparam("tok"),
        _CHALLENGE.c.status == "open",
        _CHALLENGE.c.expires_at > bindparam("not_before"),
    )
    .values(status=bindparam("to"), finished_at=bindparam("now"))
    .returning(*_CHALLENGE.c)
)
_LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)
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
        self,
        reference: str,
        result: ChargeResult,
        amount: int,
        currency: str,
        *,
        manual: bool = False,
        failure_after_action: FailureCode | None = None,
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
                "manual": manual,
                "amount_captured": result.amount_captured,
                "failure_after_action": failure_after_action.value
                if failure_after_action
                else None,
            },
        )
        return _charge_result(row)

    async def get_charge_record(self, reference: str) -> ChargeRecord | None:
        row = await self._db.first(_GET_CHARGE, {"ref": reference})
        return None if row is None else _charge_record(row)

    async def move_charge(
        self,
        reference: str,
        sources: frozenset[Outcome],
        outcome: Outcome,
        *,
        failure_code: FailureCode | None = None,
        amount_captured: int | None = None,
    ) -> ChargeResult | None:
        row = await self._db.first(
            _MOVE_CHARGE,
            {
                "ref": reference,
                "sources": sorted(source.value for source in sources),
                "at_most": amount_captured or 0,
                "to": outcome.value,
                "code": failure_code.value if failure_code else None,
                "message": FAILURE_MESSAGES[failure_code] if failure_code else None,
                "captured": amount_captured,
            },
        )
        return None if row is None else _charge_result(row)

    async def put_challenge(self, challenge: Challenge) -> Challenge:
        row = await self._db.first(
            insert_unless_present(self._db.dialect, _CHALLENGE, "reference").returning(
                *_CHALLENGE.c
            ),
            {**dataclasses.asdict(challenge), "created_at": datetime.now(UTC)},
        )
        if row is None:
            row = await self._db.first(_CHALLENGE_OF, {"ref": challenge.reference})
        assert row is not None
        return _challenge(row)

    async def get_challenge(self, token: str) -> Challenge | None:
        row = await self._db.first(_GET_CHALLENGE, {"tok": token})
        return None if row is None else _challenge(row)

    async def challenge_of(self, reference: str) -> Challenge | None:
        row = await self._db.first(_CHALLENGE_OF, {"ref": reference})
        return None if row is None else _challenge(row)

    async def finish_challenge(
        self, token: str, status: str, now: datetime, *, unexpired: bool
    ) -> Challenge | None:
        row = await self._db.first(
            _FINISH_CHALLENGE,
            {
                "tok": token,
                "to": status,
                "now": now,
                "not_before": now if unexpired else _LONG_AGO,
            },
        )
        return None if row is None else _challenge(row)

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
