"""One Idempotency-Key, one effect, across a crash: two `kassa serve` on one PostgreSQL.

Server A stops inside the processor call (the simulator's `hang` fault: the processor does
the work, its answer never comes) of a charge, a partial refund and a "refund the rest",
and is killed -9 there. The client retries each request with its key on server B; then the
operator runs `kassa reconcile`, and the client retries once more. Every key must have made
exactly one effect (one charge, one refund row, one refund at the processor) and every
retry must answer with that effect as it stands — never run it again, and never answer with
an error about the state the effect itself caused.
"""

from __future__ import annotations

import asyncio
import time
import uuid
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
    _create,
    _fresh_database,
    _kassa,
    _merchant,
)
from tests.conftest import _drop_pg_database

pytestmark = pytest.mark.acceptance
LEASE_SECONDS = 2


@pytest.fixture
def database() -> Iterator[str]:
    name, url = _fresh_database()
    try:
        yield url
    finally:
        _drop_pg_database(name)


async def _completed(client: httpx.AsyncClient, headers: dict[str, str], amount: int) -> str:
    payment_id = await _create(client, headers, amount=amount)
    processed = await client.post(
        "/api/payments/process", json={"payment_id": payment_id}, headers=headers
    )
    assert processed.status_code == 200, processed.text
    return payment_id


async def _until(conn: asyncpg.Connection, query: str, *args: Any, want: Any) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if await conn.fetchval(query, *args) == want:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"never reached: {query} == {want!r}")


async def test_a_kill_at_the_processor_call_then_retries_on_the_other_server_make_one_effect(
    tmp_path_factory: pytest.TempPathFactory, database: str
) -> None:
    dsn = _asyncpg_dsn(database)
    common = {"database_url": database, "idempotency_lease_seconds": str(LEASE_SECONDS), **SHARED}
    server_b = await asyncio.to_thread(launch, tmp_path_factory.mktemp("once-b"), **common)
    server_a: Server | None = None
    try:
        server_a = await asyncio.to_thread(
            launch,
            tmp_path_factory.mktemp("once-a"),
            simulator_faults="charge:hang,refund:hang,refund:hang",
            **common,
        )
        async with (
            httpx.AsyncClient(base_url=server_a.base_url, timeout=60.0) as client_a,
            httpx.AsyncClient(base_url=server_b.base_url, timeout=60.0) as client_b,
        ):
            headers = await _merchant(client_b)
            to_charge = await _create(client_b, headers, amount=4_200)
            partly = await _completed(client_b, headers, 10_000)
            wholly = await _completed(client_b, headers, 10_000)
            requests: list[tuple[str, dict[str, Any], dict[str, str]]] = [
                ("/api/payments/process", {"payment_id": to_charge}, {}),
                (f"/api/payments/{partly}/refund", {"amount": 3_000}, {}),
                (f"/api/payments/{wholly}/refund", {}, {}),  # the rest
            ]
            requests = [
                (path, body, {**headers, "Idempotency-Key": f"once-{uuid.uuid4()}"})
                for path, body, _ in requests
            ]
            in_flight = [
                asyncio.ensure_future(client_a.post(path, json=body, headers=keyed))
                for path, body, keyed in requests
            ]
            # Kill A once the processor did all three and A waits for the answers.
            watcher = await asyncpg.connect(dsn)
            try:
                await _until(
                    watcher,
                    "SELECT count(*) FROM simulator_charge WHERE reference = $1",
                    _charge_reference(to_charge),
                    want=1,
                )
                await _until(
                    watcher,
                    "SELECT count(*) FROM simulator_refund r JOIN refund k"
                    " ON r.reference = 'kassa_refund_' || replace(k.id::text, '-', '')"
                    " WHERE k.payment_id = ANY($1::uuid[])",
                    [uuid.UUID(partly), uuid.UUID(wholly)],
                    want=2,
                )
            finally:
                await watcher.close()
            server_a.process.kill()
            await asyncio.to_thread(server_a.process.wait, 15)
            lost = await asyncio.gather(*in_flight, return_exceptions=True)
            assert all(isinstance(answer, httpx.TransportError) for answer in lost), lost
            await asyncio.sleep(LEASE_SECONDS + 0.5)  # the dead server's claims lapse

            # The retries on B answer with what A committed, as it stands: outcome unknown.
            first = [await client_b.post(p, json=b, headers=k) for p, b, k in requests]
            assert [r.status_code for r in first] == [202, 201, 201], [r.text for r in first]
            assert all(r.headers.get("Idempotent-Replayed") == "true" for r in first)
            assert (first[0].json()["id"], first[0].json()["status"]) == (to_charge, "processing")
            assert first[1].json()["status"] == first[2].json()["status"] == "pending"
            assert (first[1].json()["amount"], first[2].json()["amount"]) == (3_000, 10_000)

            ops = tmp_path_factory.mktemp("once-ops")
            reconciled = await asyncio.to_thread(
                _kassa, ops, database, "reconcile", "--older-than", "0"
            )
            assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr

            # Reconciled: the same keys now answer with the settled effects.
            settled = [await client_b.post(p, json=b, headers=k) for p, b, k in requests]
            assert [r.status_code for r in settled] == [200, 201, 201], [r.text for r in settled]
            assert settled[0].json()["status"] == "completed"
            assert [r.json()["id"] for r in settled] == [r.json()["id"] for r in first]
            assert settled[1].json()["status"] == settled[2].json()["status"] == "succeeded"
            again = [await client_b.post(p, json=b, headers=k) for p, b, k in requests]
            assert [r.json() for r in again] == [r.json() for r in settled]

            for payment_id, status, refunded in (
                (partly, "partially_refunded", 3_000),
                (wholly, "refunded", 10_000),
            ):
                seen = (
                    await client_b.get(f"/api/payments/{payment_id}/status", headers=headers)
                ).json()
                assert (seen["status"], seen["amount_refunded"]) == (status, refunded)

        conn = await asyncpg.connect(dsn)
        try:
            charges = await conn.fetch(
                "SELECT outcome FROM simulator_charge WHERE reference = $1",
                _charge_reference(to_charge),
            )
            charge_rows = await conn.fetchval(
                "SELECT count(*) FROM payment_transaction WHERE type = 'charge'"
                " AND payment_id = $1",
                uuid.UUID(to_charge),
            )
            refunds = await conn.fetch(
                "SELECT payment_id, amount, status, id FROM refund"
                " WHERE payment_id = ANY($1::uuid[])",
                [uuid.UUID(partly), uuid.UUID(wholly)],
            )
            at_processor = await conn.fetch(
                "SELECT reference, amount FROM simulator_refund WHERE charge_reference = ANY($1)",
                [
                    await conn.fetchval(
                        "SELECT processor_reference FROM payment WHERE id = $1", uuid.UUID(p)
                    )
                    for p in (partly, wholly)
                ],
            )
        finally:
            await conn.close()
        assert [c["outcome"] for c in charges] == ["succeeded"]
        assert charge_rows == 1
        assert sorted((str(r["payment_id"]), r["amount"], r["status"]) for r in refunds) == sorted(
            [(partly, 3_000, "succeeded"), (wholly, 10_000, "succeeded")]
        )
        assert sorted((r["reference"], r["amount"]) for r in at_processor) == sorted(
            (f"kassa_refund_{r['id'].hex}", r["amount"]) for r in refunds
        )
        verify = await asyncio.to_thread(_kassa, ops, database, "ledger", "verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        if server_a is not None:
            stop(server_a.process)
        stop(server_b.process)
