"""A database out of reach: 503 with Retry-After, no key left in flight, and a connection
in a broken state leaves the pool.

PostgreSQL is reached through a TCP proxy the test cuts and restores (the shared server is
never touched): cut, every connection through it is closed and new ones are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import InterfaceError

from kassa.app import create_app
from kassa.container import Container, build_container
from kassa.db import create_engine
from tests.conftest import make_settings, payment_body, register_user

PG_PORT = 5432


class TcpProxy:
    """Forwards TCP to PostgreSQL until cut."""

    def __init__(self) -> None:
        self.down = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.close()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", PG_PORT)
        self._writers |= {writer, upstream_writer}
        await asyncio.gather(
            self._pipe(reader, upstream_writer),
            self._pipe(upstream_reader, writer),
            return_exceptions=True,
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
            self._writers.discard(writer)

    def cut(self) -> None:
        self.down = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.down = False

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@contextlib.asynccontextmanager
async def proxied_app(url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Container, TcpProxy]]:
    proxy = TcpProxy()
    await proxy.start()
    settings = make_settings(url.replace(f":{PG_PORT}/", f":{proxy.port}/"))
    container = build_container(settings)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(container=container)),
        base_url="http://kassa.test",
    )
    try:
        yield client, container, proxy
    finally:
        await client.aclose()
        await proxy.close()
        await container.aclose()


def _keyed(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Idempotency-Key": f"down-{uuid.uuid4()}"}


async def test_a_database_out_of_reach_is_503_with_retry_after_and_the_key_runs_once_back(
    postgres_url: str,
) -> None:
    async with proxied_app(postgres_url) as (client, _container, proxy):
        user = await register_user(client)
        headers = _keyed(user.headers)
        proxy.cut()
        refused = await client.post("/api/payments", json=payment_body(), headers=headers)
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "service_unavailable"
        assert refused.headers["Retry-After"] == "2"
        assert refused.headers["content-type"].startswith("application/problem+json")
        proxy.restore()
        created = await client.post("/api/payments", json=payment_body(), headers=headers)
        assert created.status_code == 201, created.text
        assert "Idempotent-Replayed" not in created.headers
        listed = await client.get("/api/transactions", headers=user.headers)
        assert listed.status_code == 200


async def test_a_database_lost_after_the_claim_leaves_no_key_in_flight(postgres_url: str) -> None:
    async with proxied_app(postgres_url) as (client, container, proxy):
        user = await register_user(client)
        headers = _keyed(user.headers)
        fingerprints = container.payments._fingerprints
        assert fingerprints is not None
        real = fingerprints.fingerprint

        async def fingerprint_then_lose_the_database(number: str) -> Any:
            result = await real(number)
            proxy.cut()  # the key is claimed; the payment's transaction comes next
            return result

        fingerprints.fingerprint = fingerprint_then_lose_the_database  # type: ignore[method-assign]
        lost = await client.post("/api/payments", json=payment_body(), headers=headers)
        assert lost.status_code == 503, lost.text
        assert lost.headers["Retry-After"] == "2"
        fingerprints.fingerprint = real  # type: ignore[method-assign]
        proxy.restore()
        # The claim's release could not reach the database; it is made once it is back,
        # well before the claim's 60 s lease would have lapsed.
        for _ in range(50):
            retried = await client.post("/api/payments", json=payment_body(), headers=headers)
            if retried.status_code != 409:
                break
            assert retried.json()["code"] == "idempotency_key_in_use"
            await asyncio.sleep(0.1)
        assert retried.status_code == 201, retried.text
        assert "Idempotent-Replayed" not in retried.headers
        async with container.db.engine.connect() as conn:
            mine = await conn.scalar(
                text("SELECT count(*) FROM payment WHERE user_id = :u"), {"u": uuid.UUID(user.id)}
            )
        assert mine == 1


async def test_a_connection_left_mid_operation_leaves_the_pool(postgres_url: str) -> None:
    engine = create_engine(postgres_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            busy = asyncio.ensure_future(driver.fetch("SELECT pg_sleep(0.5)"))
            await asyncio.sleep(0.05)
            with pytest.raises(InterfaceError, match="another operation is in progress"):
                await conn.execute(text("SELECT 1"))
            assert conn.invalidated
            await asyncio.gather(busy, return_exceptions=True)
        async with engine.connect() as fresh:  # the pool hands out a working one
            assert await fresh.scalar(text("SELECT 1")) == 1
    finally:
        await engine.dispose()
