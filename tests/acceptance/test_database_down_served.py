"""The database out of reach, the way it was found: two `kassa serve` on one PostgreSQL.

Both servers reach PostgreSQL through a TCP proxy the test cuts (every connection through
it is closed, new ones are refused) and restores; the shared server is never touched. While
it is cut, keyed requests to server A answer 503 `service_unavailable` with Retry-After —
never 500, never a dropped connection — and /readyz is 503. Once it is back, the same keys
retried on server B run at once (nothing was claimed) and make exactly one effect.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.acceptance.conftest import Server, launch, stop
from tests.acceptance.test_money_safety import (
    SHARED,
    _asyncpg_dsn,
    _charge_reference,
    _create,
    _kassa,
    _merchant,
)
from tests.conftest import migrated_postgres, payment_body
from tests.test_database_down import PG_PORT, TcpProxy

pytestmark = pytest.mark.acceptance
DEADLINE_SECONDS = 30.0


@pytest.fixture
def database() -> Iterator[str]:
    """Migrated on the real port, before any proxy (sync: it runs its own event loop)."""
    with migrated_postgres() as url:
        yield url


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    tcp = TcpProxy()
    await tcp.start()
    try:
        yield tcp
    finally:
        await tcp.close()


def _problem(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "service_unavailable"
    assert int(response.headers["Retry-After"]) > 0


def _serve(workdir: Path, database_url: str) -> Server:
    return launch(workdir, extra_env=None, database_url=database_url, **SHARED)


async def _until_ready(client: httpx.AsyncClient, status: int) -> httpx.Response:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        ready = await client.get("/readyz")
        if ready.status_code == status or time.monotonic() > deadline:
            return ready
        await asyncio.sleep(0.1)


async def test_a_cut_database_is_503_on_one_server_and_the_same_keys_run_once_on_the_other(
    tmp_path_factory: pytest.TempPathFactory, database: str, proxy: TcpProxy
) -> None:
    proxied = database.replace(f":{PG_PORT}/", f":{proxy.port}/")
    assert proxied != database
    servers: list[Server] = []
    try:
        for name in ("down-a", "down-b"):
            # In a thread: the proxy runs on this loop while the server starts.
            workdir = tmp_path_factory.mktemp(name)
            servers.append(await asyncio.to_thread(_serve, workdir, proxied))
        server_a, server_b = servers
        async with (
            httpx.AsyncClient(base_url=server_a.base_url, timeout=30.0) as client_a,
            httpx.AsyncClient(base_url=server_b.base_url, timeout=30.0) as client_b,
        ):
            headers = await _merchant(client_a)
            to_process = await _create(client_a, headers, amount=4_200)
            create = {**headers, "Idempotency-Key": f"down-create-{uuid.uuid4()}"}
            process = {**headers, "Idempotency-Key": f"down-process-{uuid.uuid4()}"}
            process_body = {"payment_id": to_process}

            proxy.cut()
            _problem(await client_a.post("/api/payments", json=payment_body(), headers=create))
            _problem(
                await client_a.post("/api/payments/process", json=process_body, headers=process)
            )
            ready = await client_a.get("/readyz")
            assert ready.status_code == 503, ready.text
            assert ready.json()["checks"]["database"] == "unavailable"

            proxy.restore()
            assert (await _until_ready(client_b, 200)).status_code == 200
            created = await client_b.post("/api/payments", json=payment_body(), headers=create)
            assert created.status_code == 201, created.text
            assert "Idempotent-Replayed" not in created.headers
            processed = await client_b.post(
                "/api/payments/process", json=process_body, headers=process
            )
            assert processed.status_code == 200, processed.text
            assert processed.json()["status"] == "completed"
            assert (await _until_ready(client_a, 200)).status_code == 200

        conn = await asyncpg.connect(_asyncpg_dsn(database))
        try:
            owner = await conn.fetchval(
                "SELECT user_id FROM payment WHERE id = $1", uuid.UUID(to_process)
            )
            payments = await conn.fetch(
                "SELECT id FROM payment WHERE user_id = $1 ORDER BY created_at", owner
            )
            keys = await conn.fetch(
                "SELECT key, state FROM idempotency_record WHERE user_id = $1 ORDER BY key",
                owner,
            )
            charges = await conn.fetch(
                "SELECT outcome FROM simulator_charge WHERE reference = $1",
                _charge_reference(to_process),
            )
        finally:
            await conn.close()
        # The payment made before the cut, and exactly one for the create key.
        assert [str(p["id"]) for p in payments] == [to_process, created.json()["id"]]
        assert [(k["key"], k["state"]) for k in keys] == [
            (create["Idempotency-Key"], "completed"),
            (process["Idempotency-Key"], "completed"),
        ]
        assert [c["outcome"] for c in charges] == ["succeeded"]
    finally:
        for server in servers:  # in a thread: the proxy serves their shutdown
            await asyncio.to_thread(stop, server.process)
    ops = tmp_path_factory.mktemp("down-ops")
    verify = await asyncio.to_thread(_kassa, ops, database, "ledger", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
