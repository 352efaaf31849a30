"""SIGTERM drains: a `kassa serve` told to stop refuses new connections at once and lets the
requests it is serving finish, a processor call included, within a grace period longer than
the processor timeout; so a deploy never leaves a payment `processing`."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.acceptance.conftest import KASSA, clean_env, launch, stop
from tests.conftest import (
    IN_CI,
    PG_ADMIN_DSN,
    _create_pg_database,
    _drop_pg_database,
    _pg_reachable,
    payment_body,
)

pytestmark = pytest.mark.acceptance

# Longer than the old 10-second shutdown, shorter than the 15-second processor timeout.
SLOW_PROCESSOR_MS = 12_000


@pytest.fixture
def database_url() -> Iterator[str]:
    if not _pg_reachable():
        message = f"PostgreSQL is not reachable at {PG_ADMIN_DSN}"
        if IN_CI:
            pytest.fail(message + " (CI requires it)", pytrace=False)
        pytest.skip(message)
    name, url = _create_pg_database()
    try:
        yield url
    finally:
        _drop_pg_database(name)


def _refused(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
        return False


def _status_in_database(url: str, payment_id: str) -> str:
    async def read() -> str:
        dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        conn = await asyncpg.connect(dsn)
        try:
            status: str = await conn.fetchval(
                "SELECT status FROM payment WHERE id = $1", uuid.UUID(payment_id)
            )
            return status
        finally:
            await conn.close()

    return asyncio.run(read())


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_lets_an_in_flight_process_call_finish_and_refuses_new_connections(
    tmp_path: Path, database_url: str, workers: int
) -> None:
    server = launch(
        tmp_path,
        "--workers",
        str(workers),
        database_url=database_url,
        simulator_delay_ms=str(SLOW_PROCESSOR_MS),
    )
    try:
        with server.client() as client:
            email = f"drain-{time.monotonic_ns()}@example.com"
            password = "correct horse battery"
            client.post(
                "/api/auth/register", json={"name": "D", "email": email, "password": password}
            ).raise_for_status()
            token = client.post(
                "/api/auth/login", json={"email": email, "password": password}
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            created = client.post("/api/payments", json=payment_body(), headers=headers)
            assert created.status_code == 201, created.text
            payment_id = created.json()["id"]

            answers: list[httpx.Response | Exception] = []

            def process() -> None:
                try:
                    with httpx.Client(base_url=server.base_url, timeout=60.0) as own:
                        answers.append(
                            own.post(
                                "/api/payments/process",
                                json={"payment_id": payment_id},
                                headers=headers,
                            )
                        )
                except Exception as exc:  # what the test reports
                    answers.append(exc)

            in_flight = threading.Thread(target=process)
            in_flight.start()
            deadline = time.monotonic() + 10
            while (
                client.get(f"/api/payments/{payment_id}/status", headers=headers).json()["status"]
                != "processing"
            ):
                assert time.monotonic() < deadline, "the process call never reached the processor"
                time.sleep(0.1)

        signalled = time.monotonic()
        server.process.terminate()
        while not _refused(server.port):
            assert time.monotonic() - signalled < 3, "new connections still accepted"
            time.sleep(0.05)
        assert in_flight.is_alive()  # refused while the request was still being served

        in_flight.join(timeout=60)
        [answer] = answers
        assert isinstance(answer, httpx.Response), repr(answer)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "completed"
        # uvicorn ends by re-raising the SIGTERM it handled (-15); its supervisor exits 0.
        assert server.process.wait(timeout=30) in {0, -15}
        assert _status_in_database(database_url, payment_id) == "completed"
    finally:
        stop(server.process)


def test_a_grace_period_not_longer_than_the_processor_timeout_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(KASSA), "serve", "--port", "0"],
        cwd=tmp_path,
        env=clean_env(tmp_path, shutdown_grace_seconds="10", processor_timeout_seconds="15"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert "KASSA_SHUTDOWN_GRACE_SECONDS (10) must be longer than" in line
    assert "KASSA_PROCESSOR_TIMEOUT_SECONDS (15)" in line
