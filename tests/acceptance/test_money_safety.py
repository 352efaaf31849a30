"""Money safety across processes: two `kassa serve` processes (think: two hosts) share one
PostgreSQL, and many concurrent HTTP requests are split between them. Then a server is
SIGKILLed in the middle of a burst of charges, and `kassa reconcile` settles what it left.

Charges are counted where the simulator keeps them (`simulator_charge`, one row per
reference, shared by every process), the way one would ask a real processor.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.acceptance.conftest import KASSA, Server, clean_env, launch, stop
from tests.conftest import (
    IN_CI,
    PG_ADMIN_DSN,
    _create_pg_database,
    _drop_pg_database,
    _pg_reachable,
    card_details,
    payment_body,
)

pytestmark = pytest.mark.acceptance

# Shared by every process, as on hosts configured alike: tokens and vaulted cards work on both.
SHARED = {
    "jwt_secret": "money-safety-acceptance-secret-" + "s" * 32,
    "vault_keys": "ms1:" + base64.urlsafe_b64encode(b"v" * 32).decode().rstrip("="),
    "rate_limit": "1000000/minute",
    "log_level": "WARNING",
}
DECLINED_CARD = "4000000000000002"


def _charge_reference(payment_id: str) -> str:
    return f"kassa_charge_{uuid.UUID(payment_id).hex}"


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _fresh_database() -> tuple[str, str]:
    if not _pg_reachable():
        message = f"PostgreSQL is not reachable at {PG_ADMIN_DSN}"
        if IN_CI:
            pytest.fail(message + " (CI requires it)", pytrace=False)
        pytest.skip(message)
    return _create_pg_database()


def _kassa(workdir: Path, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a `kassa` command as an operator would, against the shared database."""
    return subprocess.run(
        [str(KASSA), *args],
        cwd=workdir,
        env=clean_env(workdir, database_url=database_url, **SHARED),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@dataclass
class Cluster:
    database_url: str
    servers: list[Server]
    workdir: Path

    @property
    def dsn(self) -> str:
        return _asyncpg_dsn(self.database_url)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    name, url = _fresh_database()
    servers: list[Server] = []
    try:
        # One after the other: the first migrates the fresh database, the second finds it done.
        for label in ("a", "b"):
            servers.append(
                launch(
                    tmp_path_factory.mktemp(f"money-{label}"),
                    database_url=url,
                    simulator_delay_ms="50",
                    **SHARED,
                )
            )
        yield Cluster(url, servers, tmp_path_factory.mktemp("money-ops"))
    finally:
        for server in servers:
            stop(server.process)
        _drop_pg_database(name)


class Clients:
    """One HTTP client per server; request `i` goes to server `i % 2`."""

    def __init__(self, servers: list[Server]) -> None:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        self.all = [
            httpx.AsyncClient(base_url=s.base_url, timeout=60.0, limits=limits) for s in servers
        ]

    def __getitem__(self, i: int) -> httpx.AsyncClient:
        return self.all[i % len(self.all)]

    async def aclose(self) -> None:
        for client in self.all:
            await client.aclose()


async def _merchant(client: httpx.AsyncClient) -> dict[str, str]:
    email = f"money-{uuid.uuid4().hex[:12]}@example.com"
    password = "money safety " + uuid.uuid4().hex[:8]
    registered = await client.post(
        "/api/auth/register", json={"name": "Money Safety", "email": email, "password": password}
    )
    assert registered.status_code == 201, registered.text
    login = await client.post("/api/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def _create(client: httpx.AsyncClient, headers: dict[str, str], **kwargs: Any) -> str:
    response = await client.post("/api/payments", json=payment_body(**kwargs), headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _completed(clients: Clients, headers: dict[str, str], amount: int) -> str:
    payment_id = await _create(clients[0], headers, amount=amount)
    processed = await clients[1].post(
        "/api/payments/process", json={"payment_id": payment_id}, headers=headers
    )
    assert processed.status_code == 200, processed.text
    assert processed.json()["status"] == "completed"
    return payment_id


async def _simulator_charges(dsn: str, payment_ids: list[str]) -> dict[str, list[str]]:
    """Outcomes of the simulator's charges under each payment's reference."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT reference, outcome FROM simulator_charge WHERE reference = ANY($1::text[])",
            [_charge_reference(p) for p in payment_ids],
        )
    finally:
        await conn.close()
    by_reference: dict[str, list[str]] = {_charge_reference(p): [] for p in payment_ids}
    for row in rows:
        by_reference[row["reference"]].append(row["outcome"])
    return {p: by_reference[_charge_reference(p)] for p in payment_ids}


def _codes(responses: list[httpx.Response]) -> Counter[tuple[int, str]]:
    return Counter(
        (r.status_code, r.json().get("code", "") if r.status_code >= 400 else "") for r in responses
    )


async def test_16_parallel_full_refunds_on_two_servers_refund_exactly_once(
    cluster: Cluster,
) -> None:
    clients = Clients(cluster.servers)
    try:
        headers = await _merchant(clients[0])
        payment_id = await _completed(clients, headers, 10_000)
        responses = await asyncio.gather(
            *(
                clients[i].post(f"/api/payments/{payment_id}/refund", json={}, headers=headers)
                for i in range(16)
            )
        )
        codes = _codes(responses)
        assert codes[(201, "")] == 1, codes
        assert set(codes) <= {(201, ""), (409, "invalid_state"), (422, "amount_exceeds_refundable")}
        [created] = [r.json() for r in responses if r.status_code == 201]
        assert (created["amount"], created["status"]) == (10_000, "succeeded")
        for client in clients.all:
            status = (
                await client.get(f"/api/payments/{payment_id}/status", headers=headers)
            ).json()
            assert (status["status"], status["amount_refunded"]) == ("refunded", 10_000)
    finally:
        await clients.aclose()


async def test_12_parallel_30_percent_refunds_on_two_servers_succeed_exactly_three_times(
    cluster: Cluster,
) -> None:
    clients = Clients(cluster.servers)
    try:
        headers = await _merchant(clients[0])
        payment_id = await _completed(clients, headers, 10_000)
        responses = await asyncio.gather(
            *(
                clients[i].post(
                    f"/api/payments/{payment_id}/refund", json={"amount": 3_000}, headers=headers
                )
                for i in range(12)
            )
        )
        codes = _codes(responses)
        assert codes == {(201, ""): 3, (422, "amount_exceeds_refundable"): 9}, codes
        status = (
            await clients[1].get(f"/api/payments/{payment_id}/status", headers=headers)
        ).json()
        assert (status["status"], status["amount_refunded"]) == ("partially_refunded", 9_000)
        conn = await asyncpg.connect(cluster.dsn)
        try:
            refunds = await conn.fetch(
                "SELECT amount, status FROM refund WHERE payment_id = $1", uuid.UUID(payment_id)
            )
        finally:
            await conn.close()
        assert sorted((r["amount"], r["status"]) for r in refunds) == [(3_000, "succeeded")] * 3
    finally:
        await clients.aclose()


async def test_10_parallel_process_calls_on_two_servers_charge_once(cluster: Cluster) -> None:
    clients = Clients(cluster.servers)
    try:
        headers = await _merchant(clients[0])
        payment_id = await _create(clients[0], headers, amount=4_200)
        responses = await asyncio.gather(
            *(
                clients[i].post(
                    "/api/payments/process", json={"payment_id": payment_id}, headers=headers
                )
                for i in range(10)
            )
        )
        codes = _codes(responses)
        assert codes == {(200, ""): 1, (409, "invalid_state"): 9}, codes
        assert await _simulator_charges(cluster.dsn, [payment_id]) == {payment_id: ["succeeded"]}
        charges = await clients[1].get(
            "/api/transactions", params={"type": "charge"}, headers=headers
        )
        assert [(t["payment_id"], t["status"]) for t in charges.json()["data"]] == [
            (payment_id, "succeeded")
        ]
    finally:
        await clients.aclose()


async def test_process_racing_cancel_on_two_servers_has_one_winner_each_time(
    cluster: Cluster,
) -> None:
    clients = Clients(cluster.servers)
    try:
        headers = await _merchant(clients[0])
        payment_ids = [await _create(clients[i], headers) for i in range(12)]
        # Every race at once: process on one server, cancel of the same payment on the other.
        requests = []
        for i, payment_id in enumerate(payment_ids):
            requests.append(
                clients[i].post(
                    "/api/payments/process", json={"payment_id": payment_id}, headers=headers
                )
            )
            requests.append(
                clients[i + 1].post(f"/api/payments/{payment_id}/cancel", headers=headers)
            )
        responses = await asyncio.gather(*requests)
        charged = await _simulator_charges(cluster.dsn, payment_ids)
        for i, payment_id in enumerate(payment_ids):
            process, cancel = responses[2 * i], responses[2 * i + 1]
            assert sorted([process.status_code, cancel.status_code]) == [200, 409], (
                process.text,
                cancel.text,
            )
            final = (await clients[i].get(f"/api/payments/{payment_id}", headers=headers)).json()
            if process.status_code == 200:
                assert cancel.json()["code"] == "invalid_state"
                assert final["status"] == process.json()["status"] == "completed"
                assert charged[payment_id] == ["succeeded"]
            else:
                assert process.json()["code"] == "invalid_state"
                assert final["status"] == cancel.json()["status"] == "canceled"
                assert charged[payment_id] == []
    finally:
        await clients.aclose()


async def test_one_idempotency_key_sent_to_both_servers_at_once_creates_one_payment(
    cluster: Cluster,
) -> None:
    clients = Clients(cluster.servers)
    try:
        headers = await _merchant(clients[0])
        keyed = {**headers, "Idempotency-Key": f"both-servers-{uuid.uuid4()}"}
        body = payment_body(amount=7_777)
        responses = await asyncio.gather(
            *(clients[i].post("/api/payments", json=body, headers=keyed) for i in range(10))
        )
        codes = _codes(responses)
        assert set(codes) <= {(201, ""), (409, "idempotency_key_in_use")}, codes
        created = {r.json()["id"] for r in responses if r.status_code == 201}
        assert len(created) == 1, codes
        [payment_id] = created
        for client in clients.all:  # settled now: both servers replay the first answer
            replay = await client.post("/api/payments", json=body, headers=keyed)
            assert replay.status_code == 201
            assert replay.headers["Idempotent-Replayed"] == "true"
            assert replay.json()["id"] == payment_id

        # The same for charging it: one key, both servers, one charge.
        process_key = {**headers, "Idempotency-Key": f"process-{uuid.uuid4()}"}
        processed = await asyncio.gather(
            *(
                clients[i].post(
                    "/api/payments/process", json={"payment_id": payment_id}, headers=process_key
                )
                for i in range(10)
            )
        )
        codes = _codes(processed)
        assert set(codes) <= {(200, ""), (409, "idempotency_key_in_use")}, codes
        assert {r.json()["status"] for r in processed if r.status_code == 200} == {"completed"}
        assert await _simulator_charges(cluster.dsn, [payment_id]) == {payment_id: ["succeeded"]}

        conn = await asyncpg.connect(cluster.dsn)
        try:
            mine = await conn.fetchval(
                "SELECT count(*) FROM payment WHERE user_id = "
                "(SELECT user_id FROM payment WHERE id = $1)",
                uuid.UUID(payment_id),
            )
        finally:
            await conn.close()
        assert mine == 1
    finally:
        await clients.aclose()


async def test_a_mixed_burst_on_two_servers_leaves_a_ledger_that_verifies(
    cluster: Cluster,
) -> None:
    clients = Clients(cluster.servers)
    try:
        headers = await _merchant(clients[0])
        amounts = [1_000 + 37 * i for i in range(20)]
        payment_ids = list(
            await asyncio.gather(
                *(
                    _create(
                        clients[i],
                        headers,
                        amount=amount,
                        details=card_details(DECLINED_CARD if i % 5 == 4 else "4242424242424242"),
                    )
                    for i, amount in enumerate(amounts)
                )
            )
        )
        processed = await asyncio.gather(
            *(
                clients[i + j].post(
                    "/api/payments/process", json={"payment_id": payment_id}, headers=headers
                )
                for i, payment_id in enumerate(payment_ids)
                for j in range(3)  # each payment asked three times, across both servers
            )
        )
        assert Counter(r.status_code for r in processed) == {200: 20, 409: 40}
        refunds = await asyncio.gather(
            *(
                clients[i + j].post(
                    f"/api/payments/{payment_id}/refund",
                    json={"amount": amounts[i] // 3},
                    headers=headers,
                )
                for i, payment_id in enumerate(payment_ids)
                for j in range(4)  # a third each: at most three fit
            )
        )
        per_payment = Counter(
            payment_ids[n // 4] for n, r in enumerate(refunds) if r.status_code == 201
        )
        for i, payment_id in enumerate(payment_ids):
            assert per_payment[payment_id] == (0 if i % 5 == 4 else 3)
        charged = await _simulator_charges(cluster.dsn, payment_ids)
        for i, payment_id in enumerate(payment_ids):
            assert charged[payment_id] == ["failed" if i % 5 == 4 else "succeeded"]

        verify = await asyncio.to_thread(
            _kassa, cluster.workdir, cluster.database_url, "ledger", "verify"
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "ledger OK" in verify.stdout
        assert "MISMATCH" not in verify.stdout
    finally:
        await clients.aclose()


# The crash ----------------------------------------------------------------------------------

CRASH_PAYMENTS = 40
CRASH_DELAY_MS = 1_000  # each charge's latency: the window in which the server is killed
CRASH_STAGGER_SECONDS = 0.04  # the burst's requests leave 40 ms apart: 1.6 s in all


@pytest.fixture
def crash_database() -> Iterator[str]:
    name, url = _fresh_database()
    try:
        yield url
    finally:
        _drop_pg_database(name)


async def _statuses(dsn: str, payment_ids: list[str]) -> dict[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        return await _statuses_on(conn, payment_ids)
    finally:
        await conn.close()


async def _statuses_on(conn: asyncpg.Connection, payment_ids: list[str]) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT id, status FROM payment WHERE id = ANY($1::uuid[])",
        [uuid.UUID(p) for p in payment_ids],
    )
    return {str(row["id"]): row["status"] for row in rows}


async def test_sigkill_mid_burst_then_reconcile_settles_everything_charging_once(
    tmp_path_factory: pytest.TempPathFactory, crash_database: str
) -> None:
    dsn = _asyncpg_dsn(crash_database)
    server_a = await asyncio.to_thread(
        launch,
        tmp_path_factory.mktemp("crash-a"),
        database_url=crash_database,
        simulator_delay_ms=str(CRASH_DELAY_MS),
        **SHARED,
    )
    server_b: Server | None = None
    try:
        async with httpx.AsyncClient(base_url=server_a.base_url, timeout=60.0) as client:
            headers = await _merchant(client)
            payment_ids = [
                await _create(
                    client,
                    headers,
                    amount=500 + i,
                    details=card_details(DECLINED_CARD if i % 8 == 7 else "4242424242424242"),
                )
                for i in range(CRASH_PAYMENTS)
            ]

            async def process(i: int, payment_id: str) -> httpx.Response:
                await asyncio.sleep(i * CRASH_STAGGER_SECONDS)
                return await client.post(
                    "/api/payments/process", json={"payment_id": payment_id}, headers=headers
                )

            burst = [asyncio.ensure_future(process(i, p)) for i, p in enumerate(payment_ids)]
            # Kill as soon as every charge has started (none is still `pending`): the later
            # ones are then inside the processor's 1 s latency, the earlier ones done.
            watcher = await asyncpg.connect(dsn)
            try:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    if "pending" not in (await _statuses_on(watcher, payment_ids)).values():
                        break
                    await asyncio.sleep(0.01)
                server_a.process.kill()
            finally:
                await watcher.close()
            await asyncio.to_thread(server_a.process.wait, 15)
            answers = await asyncio.gather(*burst, return_exceptions=True)

        at_crash = await _statuses(dsn, payment_ids)
        charged_at_crash = await _simulator_charges(dsn, payment_ids)
        left = [p for p, s in at_crash.items() if s == "processing"]
        crash_figures = {
            "statuses": dict(Counter(at_crash.values())),
            "answered": sum(isinstance(a, httpx.Response) for a in answers),
            "charged_but_unrecorded": sum(bool(charged_at_crash[p]) for p in left),
        }
        print(f"crash figures: {crash_figures}")
        assert "pending" not in at_crash.values(), crash_figures
        assert left, f"the kill came too late to leave anything processing: {crash_figures}"

        # A fresh server on the same database; then the operator reconciles.
        server_b = await asyncio.to_thread(
            launch, tmp_path_factory.mktemp("crash-b"), database_url=crash_database, **SHARED
        )
        ops = tmp_path_factory.mktemp("crash-ops")
        reconciled = await asyncio.to_thread(
            _kassa, ops, crash_database, "reconcile", "--older-than", "0"
        )
        assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
        assert f"payments: {len(left)} examined, {len(left)} settled, 0 unresolved" in (
            reconciled.stdout
        )
        print(f"reconcile: {reconciled.stdout.strip()}")

        final = await _statuses(dsn, payment_ids)
        assert set(final.values()) <= {"completed", "failed"}, Counter(final.values())
        charged = await _simulator_charges(dsn, payment_ids)
        conn = await asyncpg.connect(dsn)
        try:
            references = {
                str(row["id"]): row["processor_reference"]
                for row in await conn.fetch("SELECT id, processor_reference FROM payment")
            }
            simulator = {
                row["reference"]: row["processor_reference"]
                for row in await conn.fetch(
                    "SELECT reference, processor_reference FROM simulator_charge"
                )
            }
            succeeded_total = await conn.fetchval(
                "SELECT count(*) FROM simulator_charge WHERE outcome = 'succeeded'"
            )
            charge_transactions = await conn.fetch(
                "SELECT payment_id, status FROM payment_transaction WHERE type = 'charge'"
            )
        finally:
            await conn.close()
        for i, payment_id in enumerate(payment_ids):
            declines = i % 8 == 7
            assert final[payment_id] == ("failed" if declines else "completed"), payment_id
            assert charged[payment_id] == ["failed" if declines else "succeeded"], payment_id
            # The payment records the very charge the processor made, not another one.
            assert references[payment_id] == simulator[_charge_reference(payment_id)]
        completed = sum(1 for s in final.values() if s == "completed")
        assert succeeded_total == completed
        assert Counter(str(t["payment_id"]) for t in charge_transactions) == dict.fromkeys(
            payment_ids, 1
        )
        assert {str(t["payment_id"]): t["status"] for t in charge_transactions} == {
            p: "succeeded" if s == "completed" else "failed" for p, s in final.items()
        }
        print(
            f"after reconcile: {dict(Counter(final.values()))}, "
            f"succeeded simulator charges: {succeeded_total}"
        )

        # Server B serves the settled payments; a second reconcile has nothing left to do.
        async with httpx.AsyncClient(base_url=server_b.base_url, timeout=30.0) as client_b:
            for payment_id in left:
                seen = await client_b.get(f"/api/payments/{payment_id}", headers=headers)
                assert seen.json()["status"] == final[payment_id]
        again = await asyncio.to_thread(
            _kassa, ops, crash_database, "reconcile", "--older-than", "0"
        )
        assert again.returncode == 0
        assert "payments: 0 examined" in again.stdout

        verify = await asyncio.to_thread(_kassa, ops, crash_database, "ledger", "verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "ledger OK" in verify.stdout
    finally:
        stop(server_a.process)
        if server_b is not None:
            stop(server_b.process)
