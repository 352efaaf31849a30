"""Bring the database schema up to date with Alembic."""

from __future__ import annotations

import asyncio
from importlib.resources import files
from pathlib import Path

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from kassa.db import create_engine

log = structlog.get_logger("kassa.migrate")


def migrations_dir() -> Path:
    """Packaged wheels carry the scripts as `kassa/migrations`; a source checkout keeps them
    at the repository root."""
    packaged = Path(str(files("kassa"))) / "migrations"
    if (packaged / "env.py").is_file():
        return packaged
    return Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def _current_heads(database_url: str) -> tuple[str, ...]:
    def read(connection: Connection) -> tuple[str, ...]:
        return tuple(MigrationContext.configure(connection).get_current_heads())

    async def run() -> tuple[str, ...]:
        engine = create_engine(database_url, pool_size=1)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(read)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def unknown_revisions(database_url: str) -> list[str]:
    """Revisions the database is at that this release does not know: a newer release
    migrated it (expand/contract lets the older code still run against it)."""
    script = ScriptDirectory.from_config(alembic_config(database_url))
    known = {rev.revision for rev in script.walk_revisions()}
    return [head for head in _current_heads(database_url) if head not in known]


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply pending migrations. A database already ahead of this release (a rollback to an
    older image) is left as it is, with a warning, instead of refusing to start."""
    newer = unknown_revisions(database_url)
    if newer:
        log.warning("database_schema_is_newer", revisions=newer)
        return
    command.upgrade(alembic_config(database_url), revision)
