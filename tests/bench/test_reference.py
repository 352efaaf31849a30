"""bench/reference: the lean reference gives the lifecycle's guarantees (a revocable
session, a stored idempotent answer, a refund never above what is left, the card sealed and
destroyed, two ledger lines a posting) in the round trips the benchmark reports.

Each test has a PostgreSQL database of its own and a Redis key prefix of its own."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from bench.reference.app import Config, create_app
from bench.reference.checks import apply_schema, check_reference, seed_login, seed_tokens
from bench.reference.resp import Redis
from bench.reference.sql import pgbench_script
from bench.wirecount import CountingProxy, PgFrontend, RespCommands, round_trips
from tests.conftest import _create_pg_database, _drop_pg_database, _pg_reachable
from tests.edge.conftest import SHARED_REDIS, _redis_answers, _unavailable

pytestmark = pytest.mark.postgres

CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2035, "cvc": "123"}
PAYMENT = {"amount": 2500, "currency": "USD", "payment_method": "credit_card", "details": CARD}
PASSWORD = "a long enough password"


@dataclass
class Reference:
    client: httpx.AsyncClient
    dsn: str
    log: io.StringIO
    config: Config

    async def user(self, email: str | None = None) -> dict[str, str]:
        email = email or f"u-{uuid.uuid4().hex[:8]}@example.com"
        made = await self.client.post(
            "/api/auth/register", json={"name": "u", "email": email, "password": PASSWORD}
        )
        assert made.status_code == 201, made.text
        login = await self.client.post(
            "/api/auth/login", json={"email": email, "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        return {"Authorization": f"Bearer {login.json()['access_token']}"}

    async def fetch(self, sql: str) -> list[dict[str, Any]]:
        connection = await asyncpg.connect(self.dsn)
        try:
            return [dict(r) for r in await connection.fetch(sql)]
        finally:
            await connection.close()


def _key() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


async def _open(config: Config) -> AsyncIterator[tuple[httpx.AsyncClient, io.StringIO]]:
    log = io.StringIO()
    app = create_app(config, log)
    lean = app.app.state.lean
    await lean.open()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ref") as client:
            yield client, log
    finally:
        await lean.close()
        redis = Redis("redis://{}:{}/0".format(*SHARED_REDIS))
        keys = await redis.call("KEYS", f"{config.redis_prefix}:*")
        if keys:
            await redis.call("DEL", *keys)
        await redis.close()


@pytest.fixture
async def reference() -> AsyncIterator[Reference]:
    if not await asyncio.to_thread(_pg_reachable):
        _unavailable("PostgreSQL is not reachable")
    if not _redis_answers(*SHARED_REDIS):
        _unavailable("Redis is not reachable")
    name, url = await asyncio.to_thread(_create_pg_database)
    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    try:
        await apply_schema(dsn)
        config = Config(
            dsn=dsn,
            redis_url="redis://{}:{}/0".format(*SHARED_REDIS),
            redis_prefix=f"lean-test-{uuid.uuid4().hex[:12]}",
            jwt_secret="test-" + "s" * 40,
            card_key=os.urandom(32),
            pool_size=4,
        )
        async for client, log in _open(config):
            yield Reference(client, dsn, log, config)
    finally:
        await asyncio.to_thread(_drop_pg_database, name)


async def test_one_lifecycle_keeps_every_guarantee(reference: Reference) -> None:
    client = reference.client
    auth = await reference.user()
    created = await client.post("/api/payments", json=PAYMENT, headers={**auth, **_key()})
    assert created.status_code == 201, created.text
    payment = created.json()
    assert (payment["status"], payment["details"]["last4"]) == ("pending", "4242")
    assert "4242424242424242" not in created.text
    pid = payment["id"]
    sealed = (await reference.fetch("SELECT card_sealed FROM charge"))[0]["card_sealed"]
    assert len(sealed) > 12 + 16  # nonce, ciphertext, tag
    assert b"4242424242424242" not in sealed

    processed = await client.post(
        "/api/payments/process", json={"payment_id": pid}, headers={**auth, **_key()}
    )
    assert (processed.status_code, processed.json()["status"]) == (200, "completed")
    status = await client.get(f"/api/payments/{pid}/status", headers=auth)
    assert status.json() | {"updated_at": None} == {
        "id": pid, "status": "completed", "amount": 2500, "amount_refunded": 0,
        "currency": "USD", "updated_at": None,
    }  # fmt: skip
    refund = await client.post(
        f"/api/payments/{pid}/refund", json={"amount": 1000}, headers={**auth, **_key()}
    )
    assert (refund.status_code, refund.json()["amount"]) == (201, 1000)
    status = await client.get(f"/api/payments/{pid}/status", headers=auth)
    assert (status.json()["status"], status.json()["amount_refunded"]) == (
        "partially_refunded",
        1000,
    )

    assert (await reference.fetch("SELECT card_sealed FROM charge"))[0]["card_sealed"] is None
    lines = await reference.fetch(
        "SELECT posting, sum(debit) AS d, sum(credit) AS c, count(*) AS n "
        "FROM book_line GROUP BY posting"
    )
    assert sorted((r["d"], r["c"], r["n"]) for r in lines) == [(1000, 1000, 2), (2500, 2500, 2)]
    topics = await reference.fetch("SELECT topic FROM outbox ORDER BY id")
    assert [t["topic"] for t in topics] == ["payment.completed", "refund.created"]
    moves = await reference.fetch("SELECT kind, outcome FROM money_move ORDER BY kind")
    assert [(m["kind"], m["outcome"]) for m in moves] == [
        ("charge", "succeeded"),
        ("refund", "succeeded"),
    ]
    assert await check_reference(reference.dsn, max_pending=0)
    access = [orjson.loads(line) for line in reference.log.getvalue().splitlines()]
    assert [(a["method"], a["status"]) for a in access[-4:]] == [
        ("POST", 200), ("GET", 200), ("POST", 201), ("GET", 200),
    ]  # fmt: skip


async def test_a_repeated_key_replays_the_stored_answer_and_changes_nothing(
    reference: Reference,
) -> None:
    client = reference.client
    auth = await reference.user()
    key = _key()
    first = await client.post("/api/payments", json=PAYMENT, headers={**auth, **key})
    again = await client.post("/api/payments", json=PAYMENT, headers={**auth, **key})
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert len(await reference.fetch("SELECT id FROM charge")) == 1
    other = await client.post(
        "/api/payments", json={**PAYMENT, "amount": 99}, headers={**auth, **key}
    )
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"

    pid = first.json()["id"]
    key = _key()
    processed = await client.post(
        "/api/payments/process", json={"payment_id": pid}, headers={**auth, **key}
    )
    replayed = await client.post(
        "/api/payments/process", json={"payment_id": pid}, headers={**auth, **key}
    )
    assert (replayed.status_code, replayed.content) == (200, processed.content)
    assert len(await reference.fetch("SELECT reference FROM network_record")) == 1


async def test_a_revoked_session_is_refused_at_once(reference: Reference) -> None:
    client = reference.client
    auth = await reference.user()
    created = await client.post("/api/payments", json=PAYMENT, headers={**auth, **_key()})
    assert created.status_code == 201
    assert (await client.post("/api/auth/logout", headers=auth)).status_code == 204
    pid = created.json()["id"]
    for response in (
        await client.get(f"/api/payments/{pid}/status", headers=auth),
        await client.post("/api/payments", json=PAYMENT, headers={**auth, **_key()}),
        await client.post(
            "/api/payments/process", json={"payment_id": pid}, headers={**auth, **_key()}
        ),
    ):
        assert response.status_code == 401, response.text
    assert (await reference.fetch("SELECT state FROM charge"))[0]["state"] == "pending"
    assert len(await reference.fetch("SELECT id FROM charge")) == 1
    assert (await client.get("/api/payments", headers=auth)).status_code == 405
    bad = {"Authorization": "Bearer not-a-token"}
    assert (await client.get(f"/api/payments/{pid}/status", headers=bad)).status_code == 401


async def test_a_refund_above_what_is_left_is_refused_and_its_refusal_replayed(
    reference: Reference,
) -> None:
    client = reference.client
    auth = await reference.user()
    pid = (await client.post("/api/payments", json=PAYMENT, headers={**auth, **_key()})).json()[
        "id"
    ]
    early = await client.post(
        f"/api/payments/{pid}/refund", json={"amount": 100}, headers={**auth, **_key()}
    )
    assert (early.status_code, early.json()["code"]) == (409, "invalid_state")
    await client.post("/api/payments/process", json={"payment_id": pid}, headers={**auth, **_key()})
    ok = await client.post(
        f"/api/payments/{pid}/refund", json={"amount": 2000}, headers={**auth, **_key()}
    )
    assert ok.status_code == 201
    key = _key()
    over = await client.post(
        f"/api/payments/{pid}/refund", json={"amount": 501}, headers={**auth, **key}
    )
    assert (over.status_code, over.json()["code"]) == (422, "amount_exceeds_refundable")
    again = await client.post(
        f"/api/payments/{pid}/refund", json={"amount": 501}, headers={**auth, **key}
    )
    assert (again.status_code, again.content) == (422, over.content)
    rest = await client.post(f"/api/payments/{pid}/refund", json={}, headers={**auth, **_key()})
    assert (rest.status_code, rest.json()["amount"]) == (201, 500)
    row = (await reference.fetch("SELECT state, refunded, refund_held FROM charge"))[0]
    assert row == {"state": "refunded", "refunded": 2500, "refund_held": 0}


async def test_racing_processes_charge_once_and_racing_refunds_never_exceed_the_amount(
    reference: Reference,
) -> None:
    client = reference.client
    auth = await reference.user()
    pid = (await client.post("/api/payments", json=PAYMENT, headers={**auth, **_key()})).json()[
        "id"
    ]
    processes = await asyncio.gather(
        *(
            client.post(
                "/api/payments/process", json={"payment_id": pid}, headers={**auth, **_key()}
            )
            for _ in range(4)
        )
    )
    assert sorted(r.status_code for r in processes) == [200, 409, 409, 409]
    refunds = await asyncio.gather(
        *(
            client.post(
                f"/api/payments/{pid}/refund", json={"amount": 1000}, headers={**auth, **_key()}
            )
            for _ in range(4)
        )
    )
    assert sorted(r.status_code for r in refunds) == [201, 201, 422, 422]
    assert len(await reference.fetch("SELECT reference FROM network_record")) == 3
    row = (await reference.fetch("SELECT state, refunded, refund_held FROM charge"))[0]
    assert row == {"state": "partially_refunded", "refunded": 2000, "refund_held": 0}


async def test_the_rate_limit_answers_429_past_the_window_s_limit(reference: Reference) -> None:
    config = replace(reference.config, rate_limit=3, redis_prefix=f"lean-test-{uuid.uuid4().hex}")
    async for client, _log in _open(config):
        auth = await reference.user()
        codes = [
            (await client.get(f"/api/payments/{uuid.uuid4()}/status", headers=auth)).status_code
            for _ in range(4)
        ]
    assert codes == [404, 404, 404, 429]


async def test_round_trips_per_request_are_what_the_benchmark_reports(
    reference: Reference,
) -> None:
    """create 1, process 3, status 1, refund 3 database round trips; one Redis call each."""
    host, port = SHARED_REDIS
    pg_port = int(reference.dsn.split("@", 1)[1].split("/", 1)[0].partition(":")[2] or 5432)
    with (
        CountingProxy("127.0.0.1", pg_port, PgFrontend) as pg,
        CountingProxy(host, port, RespCommands) as redis,
    ):
        dsn = reference.dsn.replace(f":{pg_port}/", f":{pg.port}/")
        config = replace(reference.config, dsn=dsn, redis_url=f"redis://127.0.0.1:{redis.port}/0")
        async for client, _log in _open(config):
            auth = await reference.user()  # on the first client: the same database
            seen: dict[str, list[tuple[int, int]]] = {}
            for lifecycle in range(2):  # the first prepares each statement
                pid = ""
                for part in ("create", "process", "status", "refund"):
                    pg_before, redis_before = pg.snapshot(), redis.snapshot()
                    if part == "create":
                        r = await client.post(
                            "/api/payments", json=PAYMENT, headers={**auth, **_key()}
                        )
                        pid = r.json()["id"]
                    elif part == "process":
                        body = {"payment_id": pid}
                        r = await client.post(
                            "/api/payments/process", json=body, headers={**auth, **_key()}
                        )
                    elif part == "status":
                        r = await client.get(f"/api/payments/{pid}/status", headers=auth)
                    else:
                        body = {"amount": 1000}
                        r = await client.post(
                            f"/api/payments/{pid}/refund", json=body, headers={**auth, **_key()}
                        )
                    assert r.status_code in (200, 201), r.text
                    pg_seen, redis_seen = pg.snapshot() - pg_before, redis.snapshot() - redis_before
                    redis_calls = sum(n for k, n in redis_seen.items() if k != "turns")
                    if lifecycle:
                        seen[part] = [(round_trips(pg_seen), redis_calls)]
    assert seen == {
        "create": [(1, 1)], "process": [(3, 1)], "status": [(1, 1)], "refund": [(3, 1)],
    }  # fmt: skip


async def test_pgbench_runs_the_reference_sql_as_whole_lifecycles_that_pass_the_checks(
    reference: Reference, tmp_path: Path
) -> None:
    if shutil.which("pgbench") is None:
        _unavailable("pgbench is not installed")
    login, shopper = await seed_login(reference.dsn)
    script = tmp_path / "lifecycle.sql"
    script.write_text(pgbench_script(["create", "process", "status", "refund"]))
    command = ["pgbench", "-n", "-M", "prepared", "-t", "3", "-c", "2", "-f", str(script)]
    command += [f"-Dlogin={login}", f"-Dshopper={shopper}", reference.dsn]
    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stdout[-800:] + done.stderr[-800:]
    assert "number of failed transactions: 0" in done.stdout
    checked = await check_reference(reference.dsn, max_pending=0)
    assert checked["states"] == {"partially_refunded": 6}
    assert (checked["network_charges"], checked["refunds"]) == (6, 6)


async def test_seeded_tokens_are_live_sessions_the_app_accepts(reference: Reference) -> None:
    tokens = await seed_tokens(reference.dsn, reference.config.jwt_secret, 3)
    assert len(set(tokens)) == 3
    for token in tokens:
        auth = {"Authorization": f"Bearer {token}"}
        created = await reference.client.post(
            "/api/payments", json=PAYMENT, headers={**auth, **_key()}
        )
        assert created.status_code == 201, created.text
    forged = await seed_tokens(reference.dsn, "another secret " * 3, 1)
    auth = {"Authorization": f"Bearer {forged[0]}"}
    assert (await reference.client.get("/api/payments/x/status", headers=auth)).status_code == 401


async def test_a_client_that_leaves_before_its_body_is_logged_499_not_a_server_error(
    reference: Reference,
) -> None:
    headers = await reference.user()
    app = reference.client._transport.app  # type: ignore[attr-defined]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/payments/process",
        "raw_path": b"/api/payments/process",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"authorization", headers["Authorization"].encode()),
            (b"idempotency-key", b"gone-1"),
            (b"content-type", b"application/json"),
            (b"content-length", b"40"),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("ref", 80),
        "state": {},
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)  # no exception escapes
    assert sent[0]["status"] == 499
    line = orjson.loads(reference.log.getvalue().splitlines()[-1])
    assert (line["path"], line["status"]) == ("/api/payments/process", 499)
