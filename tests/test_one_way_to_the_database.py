"""Repositories and services reach the database only through `kassa.db.Database` (issue 16):
no module under src/kassa but db.py imports the async engine layer, an ORM session or a
driver, nor opens a connection or transaction of its own. The migration runner may open the
one connection Alembic needs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import kassa.db

SRC = Path(kassa.db.__file__).parent
# db.py is the handle; migrate.py hands Alembic its one connection.
ALLOWED = {"db.py": {"*"}, "migrate.py": {"connect"}}
FORBIDDEN_MODULES = (
    "sqlalchemy.ext.asyncio",
    "sqlalchemy.orm.session",
    "sqlalchemy.sql.compiler",
    "sqlalchemy.dialects.postgresql.asyncpg",
    "sqlalchemy.dialects.sqlite.aiosqlite",
    "asyncpg",
    "aiosqlite",
    "sqlite3",
    "psycopg",
    "psycopg2",
)
FORBIDDEN_NAMES = {
    "AsyncSession",
    "async_sessionmaker",
    "Session",
    "sessionmaker",
    "AsyncConnection",
    "AsyncEngine",
    "create_async_engine",
    "DriverStatement",
    "autocommit_engine",
    "engine_of",
    "create_session_factory",
    "Executor",
    "read_snapshot",
}
# Calls that open a connection or transaction, or reach under SQLAlchemy to the driver.
FORBIDDEN_CALLS = {
    "begin",
    "begin_nested",
    "connect",
    "get_raw_connection",
    "exec_driver_sql",
    "raw_connection",
}
FORBIDDEN_ATTRIBUTES = {"driver_connection", "sync_connection", "dbapi_connection"}


def _class_constructor(func: ast.Attribute) -> bool:
    """`SomeClass.connect(...)`: a class's own constructor (a processor's client), not a
    connection to the database."""
    return isinstance(func.value, ast.Name) and func.value.id[:1].isupper()


def violations(source: str, filename: str = "module.py") -> list[str]:
    """What in `source` reaches the database around the handle."""
    allowed = ALLOWED.get(filename, set())
    if "*" in allowed:
        return []
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            modules = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            found += [
                f"imports {alias.name}" for alias in node.names if alias.name in FORBIDDEN_NAMES
            ]
        else:
            modules = []
        for module in modules:
            if any(module == m or module.startswith(m + ".") for m in FORBIDDEN_MODULES):
                found.append(f"imports {module}")
            if any(part.startswith("_") and part != "__future__" for part in module.split(".")):
                found.append(f"imports the private module {module}")
        if isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            found.append(f"uses {node.id}")
        if isinstance(node, ast.Attribute) and (
            node.attr in FORBIDDEN_NAMES or node.attr in FORBIDDEN_ATTRIBUTES
        ):
            found.append(f"uses .{node.attr}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in FORBIDDEN_CALLS
            and node.func.attr not in allowed
            and not _class_constructor(node.func)
        ):
            found.append(f"calls .{node.func.attr}()")
    return found


def test_no_module_but_the_handle_reaches_the_database_another_way() -> None:
    found = {
        str(path.relative_to(SRC)): problems
        for path in sorted(SRC.rglob("*.py"))
        if (problems := violations(path.read_text(), path.name))
    }
    assert found == {}


@pytest.mark.parametrize(
    "source",
    [
        "from sqlalchemy.ext.asyncio import AsyncSession",
        "import asyncpg",
        "from sqlalchemy.orm import Session",
        "async def f(engine):\n    async with engine.begin() as c:\n        pass",
        "async def f(engine):\n    async with engine.connect() as c:\n        pass",
        "async def f(conn):\n    return (await conn.get_raw_connection()).driver_connection",
        "from sqlalchemy.sql.compiler import SQLCompiler",
        "from kassa.db import DriverStatement",
        "from sqlalchemy.dialects.postgresql import asyncpg",
        "from starlette._utils import is_async_callable",
    ],
)
def test_the_scan_catches_each_other_way(source: str) -> None:
    assert violations(source) != []


def test_the_scan_passes_code_on_the_handle() -> None:
    source = (
        "from kassa.db import Database, Runner\n"
        "async def f(db: Database, r: Runner):\n"
        "    async with db.transaction() as tx:\n"
        "        await tx.execute(stmt)\n"
        "    async with db.snapshot() as s:\n"
        "        await s.rows(stmt)\n"
        "    await r.first(stmt)\n"
    )
    assert violations(source) == []


def test_the_old_ways_are_gone_from_the_handle_module() -> None:
    for name in ("DriverStatement", "autocommit_engine", "engine_of", "create_session_factory"):
        assert not hasattr(kassa.db, name), name
    assert not hasattr(kassa.db, "Executor")
