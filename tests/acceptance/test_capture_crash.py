"""A crash in the middle of captures and of a 3-D Secure authentication, with `kassa serve`
as a real process on PostgreSQL: the server is SIGKILLed while a burst of captures, voids,
charges and refunds waits on the processor, after a customer authenticated whose payment the server
could not yet resume; a fresh server and `kassa reconcile` settle everything, each charge
and capture made once, and `kassa ledger verify` passes."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.acceptance.conftest import Server, launch, stop
from tests.acceptance.test_money_safety import (
    SHARED,
    _asyncpg_dsn,
    _charge_reference,
    _fresh_database,
    _kassa,
    _merchant,
    _statuses_on,
)
from tests.conftest import _drop_pg_database, card_details, payment_body

pytestmark = pytest.mark.acceptance

AUTOMATIC, MANUAL, CANCELED, REFUNDED = 8, 12, 4, 4
DELAY_MS = 1_000  # each charge's and capture's latency: the window of the kill
THREE_DS = "4000002760003184"


@pytest.fixture
def crash_database() -> Iterator[str]:
    name, url = _fresh_database()
    try:
        yield url
    finally:
        _drop_pg_database(name)


async def _create(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> str:
    response = await client.post("/api/payments", json=payment_body(**body), headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _process(
    client: httpx.AsyncClient, headers: dict[str, str], payment_id: str, **body: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/payments/process", json={"payment_id": payment_id, **body}, headers=headers
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def test_sigkill_mid_capture_and_mid_authentication_then_reconcile_settles_once(
    tmp_path_factory: pytest.TempPathFactory, crash_database: str
) -> None:
    dsn = _asyncpg_dsn(crash_database)
    # The server's first lookup is lost: the customer's return after authenticating cannot
    # resume the payment (as if the server had died right after the simulator's answer).
    server_a = await asyncio.to_thread(
        launch,
        tmp_path_factory.mktemp("capture-crash-a"),
        database_url=crash_database,
        simulator_delay_ms=str(DELAY_MS),
        simulator_faults="lookup_charge:lose_request",
        **SHARED,
    )
    server_b: Server | None = None
    try:
        async with httpx.AsyncClient(base_url=server_a.base_url, timeout=60.0) as client:
            headers = await _merchant(client)
            authorized = []
            for i in range(MANUAL + CANCELED):
                payment_id = await _create(client, headers, amount=1000 + i, capture="manual")
                answer = await _process(client, headers, payment_id)
                assert answer["status"] == "requires_capture"
                authorized.append(payment_id)
            to_capture, to_cancel = authorized[:MANUAL], authorized[MANUAL:]
            automatic = [await _create(client, headers, amount=700 + i) for i in range(AUTOMATIC)]
            charged = []
            for i in range(REFUNDED):
                payment_id = await _create(client, headers, amount=900 + i)
                assert (await _process(client, headers, payment_id))["status"] == "completed"
                charged.append(payment_id)
            # 3-D Secure: the customer authenticates; kassa cannot resume (the lost lookup).
            three_ds = await _create(client, headers, amount=4200, details=card_details(THREE_DS))
            asked = await _process(
                client, headers, three_ds, return_url=f"{server_a.base_url}/healthz"
            )
            page = re.search(r"/simulator/3ds/[^/]+$", asked["next_action"]["url"])
            assert page is not None
            done = await client.post(f"{page.group(0)}/complete")
            assert done.status_code == 303
            waiting = await client.get(f"/api/payments/{three_ds}", headers=headers)
            assert waiting.json()["status"] == "requires_action"

            async def capture(i: int, payment_id: str) -> httpx.Response:
                await asyncio.sleep(i * 0.03)
                return await client.post(
                    f"/api/payments/{payment_id}/capture",
                    json={"amount": 500 + i},
                    headers=headers,
                )

            async def charge(i: int, payment_id: str) -> httpx.Response:
                await asyncio.sleep(i * 0.03)
                return await client.post(
                    "/api/payments/process", json={"payment_id": payment_id}, headers=headers
                )

            async def cancel(payment_id: str) -> httpx.Response:
                return await client.post(f"/api/payments/{payment_id}/cancel", headers=headers)

            async def refund(payment_id: str) -> httpx.Response:
                return await client.post(
                    f"/api/payments/{payment_id}/refund", json={"amount": 300}, headers=headers
                )

            burst = [
                *(asyncio.ensure_future(capture(i, p)) for i, p in enumerate(to_capture)),
                *(asyncio.ensure_future(charge(i, p)) for i, p in enumerate(automatic)),
                *(asyncio.ensure_future(cancel(p)) for p in to_cancel),
                *(asyncio.ensure_future(refund(p)) for p in charged),
            ]
            watcher = await asyncpg.connect(dsn)
            try:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    statuses = await _statuses_on(watcher, to_capture + automatic)
                    if not {"pending", "requires_capture"} & set(statuses.values()):
                        break
                    await asyncio.sleep(0.01)
                server_a.process.kill()
            finally:
                await watcher.close()
            await asyncio.to_thread(server_a.process.wait, 15)
            await asyncio.gather(*burst, return_exceptions=True)

        everything = [*authorized, *automatic, *charged, three_ds]
        conn = await asyncpg.connect(dsn)
        try:
            at_crash = await _statuses_on(conn, everything)
        finally:
            await conn.close()
        left = [p for p in to_capture if at_crash[p] == "processing"]
        print(f"at the crash: {dict(Counter(at_crash.values()))}, captures left: {len(left)}")
        assert left, "the kill came too late to leave a capture in flight"

        server_b = await asyncio.to_thread(
            launch,
            tmp_path_factory.mktemp("capture-crash-b"),
            database_url=crash_database,
            **SHARED,
        )
        ops = tmp_path_factory.mktemp("capture-crash-ops")
        reconciled = await asyncio.to_thread(
            _kassa, ops, crash_database, "reconcile", "--older-than", "0"
        )
        assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
        assert "0 unresolved, 1 resumed after authentication" in reconciled.stdout
        print(f"reconcile: {reconciled.stdout.strip()}")

        conn = await asyncpg.connect(dsn)
        try:
            final = {
                str(row["id"]): (row["status"], row["amount_captured"])
                for row in await conn.fetch(
                    "SELECT id, status, amount_captured FROM payment WHERE id = ANY($1::uuid[])",
                    [uuid.UUID(p) for p in everything],
                )
            }
            simulator = {
                row["reference"]: (row["outcome"], row["amount_captured"])
                for row in await conn.fetch(
                    "SELECT reference, outcome, amount_captured FROM simulator_charge"
                )
            }
        finally:
            await conn.close()
        for i, payment_id in enumerate(to_capture):
            assert final[payment_id] == ("completed", 500 + i), payment_id
            assert simulator[_charge_reference(payment_id)] == ("succeeded", 500 + i)
        for payment_id in to_cancel:
            assert final[payment_id][0] == "canceled", payment_id
            assert simulator[_charge_reference(payment_id)][0] == "voided"
        for payment_id in automatic:
            assert final[payment_id][0] == "completed", payment_id
            assert simulator[_charge_reference(payment_id)][0] == "succeeded"
        for payment_id in charged:  # each refund made once, whether or not it was in flight
            assert final[payment_id][0] == "partially_refunded", payment_id
        assert final[three_ds] == ("completed", 4200)
        assert simulator[_charge_reference(three_ds)][0] == "succeeded"

        verify = await asyncio.to_thread(_kassa, ops, crash_database, "ledger", "verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "ledger OK" in verify.stdout
    finally:
        stop(server_a.process)
        if server_b is not None:
            stop(server_b.process)
