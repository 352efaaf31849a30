"""The connection pools fit the database: `kassa serve` refuses, in one line, workers × pool
(plus a `kassa worker` and a tool) past what the server's max_connections allows."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kassa.cli import connections_needed
from kassa.db import connection_budget
from kassa.settings import load_settings
from tests.acceptance.conftest import KASSA, clean_env
from tests.conftest import migrated_postgres


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with migrated_postgres() as url:
        yield url


def _serve(workdir: Path, url: str, workers: int, pool: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KASSA), "serve", "--port", "1", "--workers", str(workers)],
        cwd=workdir,
        env=clean_env(workdir, database_url=url, database_pool_size=str(pool)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_server_budget_is_max_connections_less_the_reserved_slots(pg_url: str) -> None:
    budget = asyncio.run(connection_budget(pg_url))
    assert budget is not None
    assert budget.max_connections >= 20
    assert 0 <= budget.reserved < budget.max_connections
    assert budget.available == budget.max_connections - budget.reserved


def test_the_default_pool_lets_four_workers_and_a_kassa_worker_share_a_default_server(
    pg_url: str,
) -> None:
    pool = load_settings({}).database_pool_size
    assert pool == 10
    assert connections_needed(4, pool) == 4 * 10 + 10 + 1
    # PostgreSQL's default max_connections is 100, 3 of them reserved for superusers.
    assert connections_needed(4, pool) <= 100 - 3


def test_serve_refuses_pools_past_max_connections_in_one_line(tmp_path: Path, pg_url: str) -> None:
    budget = asyncio.run(connection_budget(pg_url))
    assert budget is not None
    pool = budget.max_connections // 2 + 10  # 60 against the default 100: 2 × 60 > 100
    done = _serve(tmp_path, pg_url, 2, pool)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"kassa: --workers 2 × KASSA_DATABASE_POOL_SIZE {pool} = {2 * pool} ")
    assert f"exceed the {budget.available} the database allows" in line
    assert f"max_connections {budget.max_connections}" in line


def test_serve_refuses_one_worker_whose_pool_alone_is_too_large(
    tmp_path: Path, pg_url: str
) -> None:
    budget = asyncio.run(connection_budget(pg_url))
    assert budget is not None
    done = _serve(tmp_path, pg_url, 1, budget.max_connections)
    assert done.returncode == 2
    assert "KASSA_DATABASE_POOL_SIZE" in done.stderr
