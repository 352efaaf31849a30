"""Database plumbing shared by every domain: the engine, the one handle to it (`Database`),
`Base` and column types.

Money columns are BIGINT minor units with a CHAR(3) currency; every timestamp is stored
and returned as an aware UTC datetime on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import sqlite3
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import asyncpg
from sqlalchemy import (
    CTE,
    ColumnDefault,
    ColumnElement,
    DateTime,
    Insert,
    MetaData,
    Table,
    bindparam,
    event,
    exists,
    insert,
    inspect,
    literal,
    select,
    text,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect, ExceptionContext, Row, RowMapping, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, class_mapper
from sqlalchemy.pool import ConnectionPoolEntry, NullPool, QueuePool
from sqlalchemy.sql.expression import Executable
from sqlalchemy.types import TypeDecorator

from kassa.ids import random_uuid

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


M = TypeVar("M", bound=Base)
T = TypeVar("T")


def table_of(model: type[Base]) -> Table:
    """The Core table of a mapped class, for statements built once at import."""
    return cast(Table, model.__table__)


@functools.cache
def _attribute_names(model: type[Base]) -> dict[str, str]:
    mapper = model.__mapper__
    return {column.name: mapper.get_property_by_column(column).key for column in table_of(model).c}


def values_of(record: Base) -> dict[str, Any]:
    """The column values set on a transient instance, by column name, for an INSERT or an
    UPDATE (a column left unset is left out, so its default applies)."""
    names = _attribute_names(type(record))
    state = inspect(record).dict
    return {column: state[attr] for column, attr in names.items() if attr in state}


def record_of(model: type[M], row: Mapping[Any, Any]) -> M:
    """A transient instance of `model` from a Core result row (column names mapped to
    attribute names), for code that reads ORM objects.

    The values go straight into the instance's state, as the ORM itself loads a row: through
    the constructor each one would fire the change events that only a session (which kassa
    does not use) reads, about 25 µs for a payment, ten times a lifecycle."""
    names = _attribute_names(model)
    record: M = class_mapper(model).class_manager.new_instance()
    state = record.__dict__
    for column, value in row.items():
        state[names[column]] = value
    return record


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime; naive values are refused rather than guessed."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    return random_uuid()


def parse_id(raw: str) -> uuid.UUID | None:
    """An id in the canonical form kassa returns, or None when malformed (callers answer 404,
    never 422/500). Other spellings of a UUID (no dashes, braces, urn:) are malformed too."""
    if not isinstance(raw, str) or len(raw) != 36:
        return None
    try:
        parsed = uuid.UUID(raw)
    except ValueError:
        return None
    return parsed if str(parsed) == raw.lower() else None


def _sqlite_on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # WAL lets readers run beside the single writer; busy_timeout turns a writer collision
    # into a wait instead of "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


_READ_ONLY = "kassa_read_only"


def _sqlite_begin(conn: Any) -> None:
    # BEGIN IMMEDIATE takes the write lock up front, so two read-then-write transactions
    # serialize instead of deadlocking when the second tries to upgrade its lock. A read-only
    # transaction takes no write lock: in WAL mode it reads one snapshot beside the writer.
    read_only = conn.get_execution_options().get(_READ_ONLY, False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


# The database is out of reach, or a connection to it broke: the request may be retried.
_UNREACHABLE = (
    sa_exc.TimeoutError,  # no pooled connection came free in time
    TimeoutError,  # connecting timed out
    ConnectionError,  # refused, reset, aborted
    asyncpg.PostgresConnectionError,  # the server dropped or refused the connection
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.ConnectionDoesNotExistError,
)
_NETWORK_ERRNOS = frozenset(
    {errno.ECONNREFUSED, errno.ECONNRESET, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT}
)
_BROKEN_MESSAGES = ("another operation is in progress", "connection is closed")


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and everything it wraps (a DBAPI error's original, causes, contexts)."""
    found: list[BaseException] = []
    queue: list[BaseException | None] = [exc]
    while queue:
        current = queue.pop()
        if current is None or any(current is seen for seen in found):
            continue
        found.append(current)
        queue += [getattr(current, "orig", None), current.__cause__, current.__context__]
    return found


def broken_connection(exc: BaseException) -> bool:
    """The connection `exc` came from is unusable (closed, or left mid-operation)."""
    return any(
        isinstance(e, (asyncpg.InterfaceError, sa_exc.InterfaceError))
        and any(m in str(e) for m in _BROKEN_MESSAGES)
        for e in _causes(exc)
    )


def database_unavailable(exc: BaseException) -> bool:
    """True when `exc` means the database could not be reached or its connection broke
    (refused, timed out, pool exhausted, closed, shutting down, SQLite locked): a 503 the
    client may retry, not a bug."""
    if broken_connection(exc):
        return True
    for e in _causes(exc):
        if isinstance(e, _UNREACHABLE):
            return True
        if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, OSError) and (
            e.errno in _NETWORK_ERRNOS or str(e).startswith("Multiple exceptions")
        ):
            return True
        if isinstance(e, sqlite3.OperationalError) and "database is locked" in str(e):
            return True
    return False


def _invalidate_broken(context: ExceptionContext) -> None:
    # A connection left mid-operation ("another operation is in progress") would fail every
    # request that takes it next: it leaves the pool. Only it: the server is fine.
    if not context.is_disconnect and broken_connection(context.original_exception):
        context.is_disconnect = True
        context.invalidate_pool_on_disconnect = False


def _refuse_closed(_dbapi: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
    # A pooled connection the server (or the network) closed while it sat idle is replaced
    # at checkout, without a round trip: asyncpg already knows it is closed.
    driver = record.driver_connection
    if driver is not None and driver.is_closed():
        raise sa_exc.DisconnectionError("the pooled connection was closed")


def create_engine(url: str, *, pool_size: int = 10, autocommit: bool = False) -> AsyncEngine:
    """An engine for `url`. On PostgreSQL the pool keeps `pool_size` connections and never
    opens more: a connection opened past the pool would be closed again on return, and that
    churn (a new server process, asyncpg's set-up queries) cost more CPU than waiting for a
    free connection. Size the pool to the requests one worker serves at once.

    Statement parameters never appear in an error's text (`hide_parameters`): they hold
    password hashes, emails and names, and an error's text reaches the log.

    `autocommit` (PostgreSQL; see `open_database`): every connection the pool opens is in
    autocommit from the start, so that `engine.begin()` on it commits each statement on its
    own; only a `Database` made with `pooled_autocommit` knows to ask for a transaction."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        # pysqlite's own transaction handling would issue a deferred BEGIN; take control.
        event.listen(
            engine.sync_engine,
            "connect",
            lambda dbapi_connection, _r: setattr(dbapi_connection, "isolation_level", None),
        )
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args={"server_settings": {"application_name": "kassa"}, "timeout": 5},
        hide_parameters=True,
        **({"isolation_level": "AUTOCOMMIT"} if autocommit else {}),
    )
    event.listen(engine.sync_engine, "handle_error", _invalidate_broken)
    event.listen(engine.sync_engine, "checkout", _refuse_closed)
    return engine


@dataclass(frozen=True, slots=True)
class ConnectionBudget:
    """What one PostgreSQL server allows kassa: `max_connections` less the slots it keeps
    for superusers (and, from PostgreSQL 16, for roles granted pg_use_reserved_connections)."""

    max_connections: int
    reserved: int

    @property
    def available(self) -> int:
        return self.max_connections - self.reserved


async def connection_budget(url: str) -> ConnectionBudget | None:
    """The server's connection limits (None on SQLite), asked over one short connection."""
    if make_url(url).get_backend_name() != "postgresql":
        return None
    engine = create_async_engine(url, poolclass=NullPool, connect_args={"timeout": 5})
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT current_setting('max_connections')::int, "
                        "current_setting('superuser_reserved_connections')::int "
                        "+ coalesce(current_setting('reserved_connections', true)::int, 0)"
                    )
                )
            ).one()
    finally:
        await engine.dispose()
    return ConnectionBudget(max_connections=int(row[0]), reserved=int(row[1]))


# --- Statements of several writes (PostgreSQL) ---------------------------------------------
#
# On PostgreSQL a request's writes go in one statement: data-modifying CTEs, each gated on the
# one whose rows say the change happened (a conditional UPDATE's RETURNING), so the statement
# writes everything or, when the change was refused, nothing but what is not gated. In
# autocommit that is one round trip, and one atomic transaction. SQLite runs the same steps
# as separate statements in one transaction.


def happened(gate: CTE) -> ColumnElement[bool]:
    """True when the data-modifying CTE `gate` returned a row (its change happened)."""
    return exists(select(literal(1)).select_from(gate))


def gated_insert(
    table: Table,
    prefix: str,
    gate: CTE | None,
    name: str,
    *,
    returning: Sequence[str] = (),
    when: ColumnElement[bool] | None = None,
) -> CTE:
    """`INSERT INTO table SELECT :<prefix><column>, … WHERE <gate happened>` as a CTE named
    `name`: one row, every column bound (`bound_row` fills them), written only when `gate`
    returned a row (always, with no gate) and `when` holds. Returns `returning` (default:
    the first primary-key column)."""
    columns = list(table.c)
    row = select(*(bindparam(f"{prefix}{c.name}", type_=c.type) for c in columns))
    if gate is not None:
        row = row.where(happened(gate))
    if when is not None:
        row = row.where(when)
    returned = [table.c[n] for n in returning] or list(table.primary_key.columns)[:1]
    return insert(table).from_select([c.name for c in columns], row).returning(*returned).cte(name)


@functools.cache
def _row_defaults(table: Table) -> tuple[frozenset[str], tuple[tuple[str, Any], ...]]:
    """`table`'s column names, and each column's scalar default (or None), in order."""
    defaults = tuple(
        (
            column.name,
            column.default.arg
            if isinstance(column.default, ColumnDefault) and column.default.is_scalar
            else None,
        )
        for column in table.c
    )
    return frozenset(name for name, _ in defaults), defaults


def bound_row(table: Table, prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of a `gated_insert` of `values` (by column name): every column, a
    missing one at its scalar default (or NULL)."""
    names, defaults = _row_defaults(table)
    if not names.issuperset(values):
        raise KeyError(f"not columns of {table.name}: {sorted(set(values) - names)}")
    return {f"{prefix}{name}": values.get(name, default) for name, default in defaults}


_INSERTS: dict[str, Any] = {"postgresql": pg_insert, "sqlite": sqlite_insert}


@functools.cache
def insert_unless_present(dialect: str, table: Table, *conflict: str) -> Insert:
    """`INSERT … ON CONFLICT (conflict) DO NOTHING` into `table`, in `dialect`'s spelling
    (PostgreSQL or SQLite); the values come with the execution."""
    insert: Insert = _INSERTS[dialect](table).on_conflict_do_nothing(index_elements=list(conflict))
    return insert


@contextlib.asynccontextmanager
async def _read_snapshot(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A read-only transaction over one consistent snapshot of the whole database, for
    audits that must see every committed change whole or not at all while writers go on.

    PostgreSQL: REPEATABLE READ, READ ONLY (the snapshot is taken at the first statement).
    SQLite: a deferred transaction, which in WAL mode reads one snapshot and blocks no
    writer (the ordinary BEGIN IMMEDIATE would hold the write lock throughout)."""
    async with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        else:
            await conn.execution_options(**{_READ_ONLY: True})
        async with conn.begin():
            yield conn


# --- The one way to the database -----------------------------------------------------------
#
# Repositories take a `Runner`: either the `Database` itself, where each statement is its own
# transaction (autocommit on PostgreSQL: one round trip, no BEGIN/COMMIT), or a `Transaction`
# from `Database.transaction()` / `Database.snapshot()`. Services decide where transactions
# begin and end through the `Database`; they never build SQL. Statements are SQLAlchemy Core
# (built once at import where they can be) and run through SQLAlchemy's public API only.

Params = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


class Runner:
    """What a repository runs its statements on (a `Database` or a `Transaction`).

    Each method reads what it returns from the live result, before the connection goes back
    to the pool, so no result is copied (frozen) on its way out."""

    dialect: str

    async def _run(self, statement: Executable, params: Params, read: Callable[[Any], T]) -> T:
        raise NotImplementedError

    async def rows(self, statement: Executable, params: Params = None) -> list[RowMapping]:
        """Every row the statement returns, as mappings by column name."""
        return await self._run(statement, params, _all_mappings)

    async def tuples(self, statement: Executable, params: Params = None) -> list[Row[Any]]:
        """Every row the statement returns, as named tuples (for reports that unpack them)."""
        return await self._run(statement, params, _all_rows)

    async def first(self, statement: Executable, params: Params = None) -> RowMapping | None:
        """The first row the statement returns, or None."""
        return await self._run(statement, params, _first_mapping)

    async def scalar(self, statement: Executable, params: Params = None) -> Any:
        """The first column of the first row, or None."""
        return await self._run(statement, params, _first_scalar)

    async def execute(self, statement: Executable, params: Params = None) -> int:
        """Run a statement that returns no rows; the number of rows it wrote."""
        return await self._run(statement, params, _rowcount)


def _all_mappings(result: Any) -> list[RowMapping]:
    return list(result.mappings())


def _all_rows(result: Any) -> list[Row[Any]]:
    return list(result.all())


def _first_mapping(result: Any) -> RowMapping | None:
    row: RowMapping | None = result.mappings().first()
    return row


def _first_scalar(result: Any) -> Any:
    return result.scalar()


def _rowcount(result: Any) -> int:
    count = int(getattr(result, "rowcount", 0) or 0)
    if result.returns_rows:
        result.close()  # rows nobody reads: release the cursor with the connection
    return count


class Transaction(Runner):
    """Statements on one connection inside one transaction (see `Database.transaction`)."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection
        self.dialect = connection.dialect.name

    async def _run(self, statement: Executable, params: Params, read: Callable[[Any], T]) -> T:
        return read(await self._connection.execute(statement, params))


class _Held:
    """The connection a request holds for its lone statements (see
    `Database.held_connection`), with its turn at the pool. Its statements run one at a time
    (a task the request started waits for the request's statement rather than take a second
    connection); a statement after the request ended takes a pooled connection of its own."""

    __slots__ = ("connection", "database", "ended", "lock", "turn")

    def __init__(self, database: Database) -> None:
        self.database = database
        self.connection: AsyncConnection | None = None
        self.turn: asyncio.Semaphore | None = None
        self.ended = False
        self.lock = asyncio.Lock()

    async def run(self, statement: Executable, params: Params, read: Callable[[Any], T]) -> T:
        async with self.lock:
            try:
                if self.connection is None:
                    self.turn = await self.database._take_turn()
                    self.connection = await self.database._autocommit.connect()
                    self.database._holding.add(self)
                return read(await self.connection.execute(statement, params))
            except BaseException:
                # A failed statement may have broken the connection (or been cancelled half
                # way through the protocol): the next one starts on a fresh checkout.
                await self._give_back()
                raise

    async def release(self) -> None:
        """Give the connection back, unless a statement is running on it (then it stays to
        the request's end, when its statement is over)."""
        if not self.lock.locked():
            await self._give_back()

    async def _give_back(self) -> None:
        self.database._holding.discard(self)
        connection, self.connection = self.connection, None
        turn, self.turn = self.turn, None
        try:
            if connection is not None:
                await connection.close()
        finally:
            if turn is not None:
                turn.release()


_HELD: ContextVar[_Held | None] = ContextVar("kassa_held_connection", default=None)


async def release_held_connection() -> None:
    """Give back the connection the current request holds (see `Database.held_connection`),
    if any, before a wait that is not the database's; its next statement takes one again."""
    held = _HELD.get()
    if held is not None:
        await held.release()


class Database(Runner):
    """The handle every repository and service reaches the database through.

    Used directly, each statement is its own transaction: on PostgreSQL it runs in autocommit
    (one round trip); on SQLite inside BEGIN IMMEDIATE … COMMIT on the ordinary engine. Use it
    only where one statement does the whole job; anything that reads then writes, or writes
    twice, takes `transaction()`."""

    def __init__(self, engine: AsyncEngine, *, pooled_autocommit: bool = False) -> None:
        """`pooled_autocommit`: `engine`'s connections are in autocommit from the pool
        (`create_engine(..., autocommit=True)`, PostgreSQL), so a statement on its own needs
        no isolation change and a transaction asks for READ COMMITTED on its connection.
        Otherwise the other way round. Either way each statement alone commits on its own
        and a transaction is one; the first saves each single statement the change of
        isolation at checkout and its reset at check-in (about 70 µs of CPU)."""
        self.engine = engine
        self.dialect = engine.dialect.name
        # PostgreSQL writes a request's changes in one statement (see `gated_insert`).
        self.writes_at_once = self.dialect == "postgresql"
        self._transactional = engine
        self._autocommit = engine
        if self.dialect == "postgresql" and pooled_autocommit:
            self._transactional = engine.execution_options(isolation_level="READ COMMITTED")
        elif self.dialect == "postgresql":
            self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        # Turns at the pool, first come first served (see `_take_turn`): one semaphore per
        # event loop, as the handle may outlive a loop (tests, the CLI's steps).
        pool = engine.sync_engine.pool
        self._pool_size = pool.size() if isinstance(pool, QueuePool) else None
        self._pool_timeout = pool.timeout() if isinstance(pool, QueuePool) else None
        self._turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        # Requests holding a connection (see `held_connection`), to take idle ones back.
        self._holding: set[_Held] = set()

    async def _take_turn(self) -> asyncio.Semaphore | None:
        """Wait for a turn at the pool (None: no turns to wait for). SQLAlchemy's async pool
        hands a returned connection to whoever asks next, not to whoever waited longest, so
        a request that holds its connection to its end and a client that sends the next
        request at once could keep one waiting until it timed out. The semaphore queues
        them in order, and no one asks the pool without a turn, so the pool never waits."""
        if self._pool_size is None:
            return None
        loop = asyncio.get_running_loop()
        turns = self._turns.get(loop)
        if turns is None:
            turns = self._turns[loop] = asyncio.Semaphore(self._pool_size)
        if turns.locked():
            await self._take_back_idle()
        if not turns.locked():
            await turns.acquire()  # free: taken at once, without a timer
            return turns
        try:
            await asyncio.wait_for(turns.acquire(), self._pool_timeout)
        except TimeoutError:
            # As the pool itself would say after its timeout: the database is out of reach
            # for now (a 503 the client may retry), rather than a request waiting for ever.
            raise sa_exc.TimeoutError(
                f"no turn at the pool of {self._pool_size} within {self._pool_timeout} s"
            ) from None
        return turns

    async def _take_back_idle(self) -> None:
        """Someone must wait for a connection: every request holding one between its
        statements gives it back now (its next statement waits its turn like any other).
        So a held connection never makes anyone wait — whatever the holder is waiting for
        meanwhile (a lock, another request) — and holding is only the saving of a checkout
        while connections are free."""
        idle = [held for held in self._holding if not held.lock.locked()]
        for held in idle:
            await held._give_back()

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        turn = await self._take_turn()
        try:
            yield
        finally:
            if turn is not None:
                turn.release()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One transaction: committed when the block ends, rolled back when it raises.
        (SQLite: BEGIN IMMEDIATE, so read-then-write transactions serialize.)"""
        await release_held_connection()  # a request never holds two connections
        async with self._turn(), self._transactional.begin() as connection:
            yield Transaction(connection)

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Transaction]:
        """A read-only transaction over one consistent snapshot of the whole database
        (PostgreSQL REPEATABLE READ READ ONLY; SQLite a deferred WAL read), for audits and
        lists that must see every committed change whole or not at all."""
        await release_held_connection()  # a request never holds two connections
        async with self._turn(), _read_snapshot(self.engine) as connection:
            yield Transaction(connection)

    @contextlib.asynccontextmanager
    async def held_connection(self) -> AsyncIterator[None]:
        """Within the block (a request), the lone statements share one pooled connection,
        taken at the first and given back when the block ends, instead of a checkout and a
        check-in each (about 85 µs of CPU a statement). PostgreSQL only: its pool is in
        autocommit, so a held connection holds no transaction and no lock.

        A request never holds two connections: `transaction()` and `snapshot()` give the
        held one back before they take theirs, and so does `release_held_connection()`,
        which callers use before a wait that is not the database's (a processor's answer, a
        password hash), so that a slow wait keeps no connection from other requests."""
        if self.dialect != "postgresql":
            yield
            return
        held = _Held(self)
        token = _HELD.set(held)
        try:
            yield
        finally:
            _HELD.reset(token)
            held.ended = True
            async with held.lock:  # a statement still running (a task's) ends first
                await held._give_back()

    async def _run(self, statement: Executable, params: Params, read: Callable[[Any], T]) -> T:
        if self.dialect == "postgresql":
            held = _HELD.get()
            if held is not None and held.database is self and not held.ended:
                return await held.run(statement, params, read)
            async with self._turn(), self._autocommit.connect() as connection:
                return read(await connection.execute(statement, params))
        async with self.engine.begin() as connection:
            return read(await connection.execute(statement, params))

    async def dispose(self) -> None:
        await self.engine.dispose()


def open_database(url: str, *, pool_size: int = 10) -> Database:
    """The application's handle: on PostgreSQL its pool's connections are in autocommit (most
    requests' statements run alone), and its transactions ask for READ COMMITTED."""
    postgres = make_url(url).get_backend_name() == "postgresql"
    engine = create_engine(url, pool_size=pool_size, autocommit=postgres)
    return Database(engine, pooled_autocommit=postgres)
