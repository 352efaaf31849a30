"""A request's lone statements share one pooled connection (PostgreSQL): one checkout a
request, never two connections at once, and none held across a wait that is not the
database's (a processor's answer, a password hash)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import event, literal, select, text

from kassa.auth.passwords import Passwords
from kassa.db import Database, create_engine, release_held_connection
from kassa.processors.calls import call_processor
from tests.conftest import Api, create_payment, register_user

ONE = select(literal(1))


class Checkouts:
    """Counts a pool's checkouts, and how many connections are out right now."""

    def __init__(self, db: Database) -> None:
        self.count = 0
        self.out = 0
        self.most = 0
        pool = db.engine.sync_engine.pool
        event.listen(pool, "checkout", self._checkout)
        event.listen(pool, "checkin", self._checkin)

    def _checkout(self, *_: Any) -> None:
        self.count += 1
        self.out += 1
        self.most = max(self.most, self.out)

    def _checkin(self, *_: Any) -> None:
        self.out -= 1


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[Database]:
    database = Database(
        create_engine(postgres_url, pool_size=1, autocommit=True), pooled_autocommit=True
    )
    yield database
    await database.dispose()


async def test_statements_in_a_held_block_share_one_checkout(pg: Database) -> None:
    checkouts = Checkouts(pg)
    async with pg.held_connection():
        for _ in range(3):
            assert await pg.scalar(ONE) == 1
        assert checkouts.out == 1  # held between statements
    assert (checkouts.count, checkouts.out) == (1, 0)
    for _ in range(3):
        await pg.scalar(ONE)
    assert checkouts.count == 4  # outside a block: one each


async def test_a_transaction_gives_the_held_connection_back_first(pg: Database) -> None:
    # A pool of one: holding the request's connection while asking for the transaction's
    # would wait for ever.
    checkouts = Checkouts(pg)

    async def request() -> None:
        async with pg.held_connection():
            await pg.scalar(ONE)
            async with pg.transaction() as tx:
                assert await tx.scalar(ONE) == 1
            async with pg.snapshot() as snap:
                assert await snap.scalar(ONE) == 1
            assert await pg.scalar(ONE) == 1

    await asyncio.wait_for(request(), timeout=10)
    assert checkouts.most == 1
    assert checkouts.out == 0


async def test_statements_running_at_once_in_one_request_take_turns_on_its_connection(
    pg: Database,
) -> None:
    # A task the request started waits for the request's statement instead of taking a
    # second connection: with a pool of one, a second connection would never come.
    checkouts = Checkouts(pg)

    async def request() -> list[Any]:
        async with pg.held_connection():
            return await asyncio.gather(
                *(
                    pg.scalar(text("SELECT CAST(:n AS int) FROM pg_sleep(0.05)"), {"n": n})
                    for n in range(3)
                )
            )

    assert await asyncio.wait_for(request(), timeout=10) == [0, 1, 2]
    assert (checkouts.count, checkouts.most, checkouts.out) == (1, 1, 0)


async def test_waiting_requests_get_the_connection_in_turn(pg: Database) -> None:
    # A pool of one and a client that sends its next request the moment the last one
    # answers: without turns, the connection it gives back goes straight to its next
    # request, and a request that was already waiting never gets it.
    stop = asyncio.Event()
    served = 0

    async def greedy() -> None:
        nonlocal served
        while not stop.is_set():
            async with pg.held_connection():
                await pg.scalar(ONE)
                await asyncio.sleep(0)
                await pg.scalar(ONE)
            served += 1

    async def waiting() -> float:
        await asyncio.sleep(0.05)
        started = asyncio.get_running_loop().time()
        async with pg.held_connection():
            await pg.scalar(ONE)
        return asyncio.get_running_loop().time() - started

    greedies = [asyncio.create_task(greedy()) for _ in range(3)]
    try:
        waited = await asyncio.wait_for(waiting(), timeout=10)
    finally:
        stop.set()
        await asyncio.gather(*greedies)
    assert served > 0
    assert waited < 1.0


async def test_a_failed_statement_gives_the_connection_back_and_the_next_starts_afresh(
    pg: Database,
) -> None:
    checkouts = Checkouts(pg)
    async with pg.held_connection():
        await pg.scalar(ONE)
        with pytest.raises(Exception, match="division by zero"):
            await pg.scalar(text("SELECT 1 / 0"))
        assert checkouts.out == 0
        assert await pg.scalar(ONE) == 1
    assert (checkouts.count, checkouts.out) == (2, 0)


async def test_a_statement_still_running_when_the_request_ends_gives_the_connection_back(
    pg: Database,
) -> None:
    checkouts = Checkouts(pg)
    started = asyncio.Event()

    async def slow() -> Any:
        started.set()
        return await pg.scalar(text("SELECT 7 FROM pg_sleep(0.2)"))

    async with pg.held_connection():
        task = asyncio.create_task(slow())  # a task the request started, outliving it
        await started.wait()
        await asyncio.sleep(0.05)
    # The request's end waited for the task's statement, then gave the connection back.
    assert checkouts.out == 0
    assert await task == 7
    assert await pg.scalar(ONE) == 1  # after the request, statements check out as usual
    assert checkouts.out == 0


async def test_release_gives_the_held_connection_back_until_the_next_statement(
    pg: Database,
) -> None:
    checkouts = Checkouts(pg)
    async with pg.held_connection():
        await pg.scalar(ONE)
        await release_held_connection()
        assert checkouts.out == 0
        await pg.scalar(ONE)
        assert checkouts.out == 1
    assert checkouts.count == 2


async def test_no_connection_is_held_while_the_processor_answers(pg: Database) -> None:
    checkouts = Checkouts(pg)
    seen: list[int] = []

    async def processor() -> str:
        seen.append(checkouts.out)
        return "ok"

    async with pg.held_connection():
        await pg.scalar(ONE)
        answer = await call_processor(
            "test", "charge", processor(), seconds=5, reference="r", outcome=lambda _: "ok"
        )
    assert answer is not None
    assert answer.value == "ok"
    assert seen == [0]


async def test_no_connection_is_held_while_a_password_is_hashed(pg: Database) -> None:
    checkouts = Checkouts(pg)
    seen: list[int] = []

    class Watching:
        def hash(self, password: str) -> str:
            seen.append(checkouts.out)
            return "hashed:" + password

        def verify(self, password_hash: str, password: str) -> bool:
            seen.append(checkouts.out)
            return password_hash == "hashed:" + password

    passwords = Passwords(Watching())  # type: ignore[arg-type]
    async with pg.held_connection():
        await pg.scalar(ONE)
        hashed = await passwords.hash("secret")
        await pg.scalar(ONE)
        assert await passwords.verify(hashed, "secret")
    assert seen == [0, 0]


async def test_sqlite_statements_are_unchanged_by_a_held_block(sqlite_url: str) -> None:
    db = Database(create_engine(sqlite_url))
    try:
        async with db.held_connection():
            assert await db.scalar(ONE) == 1
            assert await db.scalar(ONE) == 1
    finally:
        await db.dispose()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_each_request_checks_out_one_connection(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory()
    user = await register_user(api.client)
    payment = await create_payment(api.client, user)
    checkouts = Checkouts(api.container.db)
    status = await api.client.get(f"/api/payments/{payment['id']}/status", headers=user.headers)
    assert status.status_code == 200
    create = await api.client.post(
        "/api/payments",
        json={
            "amount": 1000,
            "currency": "USD",
            "payment_method": "credit_card",
            "details": {
                "number": "4242424242424242",
                "exp_month": 12,
                "exp_year": 2099,
                "cvc": "123",
            },
        },
        headers={**user.headers, "Idempotency-Key": "held-1"},
    )
    assert create.status_code == 201, create.text
    # status: the session check and the read; create: the session check and the write.
    assert checkouts.count == 2
    assert checkouts.out == 0


async def test_a_request_waiting_on_another_never_keeps_its_connection_from_it(
    pg: Database,
) -> None:
    # A pool of one. Request A holds the connection and waits for a lock that request B
    # holds while B needs a statement: B takes A's idle connection back instead of waiting
    # for ever (as a first request loading a shared key would, with others queued behind).
    lock = asyncio.Lock()
    b_has_lock = asyncio.Event()

    async def a() -> Any:
        async with pg.held_connection():
            await pg.scalar(ONE)
            await b_has_lock.wait()
            async with lock:
                return await pg.scalar(text("SELECT 'a'"))

    async def b() -> Any:
        async with pg.held_connection(), lock:
            b_has_lock.set()
            await asyncio.sleep(0.05)  # A is waiting for the lock, holding its connection
            return await pg.scalar(text("SELECT 'b'"))

    assert list(await asyncio.wait_for(asyncio.gather(a(), b()), timeout=10)) == ["a", "b"]


async def test_a_turn_not_given_in_the_pool_s_timeout_is_the_pool_s_timeout_error(
    postgres_url: str,
) -> None:
    # A request's turn never comes while another holds the only connection in a
    # transaction: after the pool's own timeout it gets the error the pool would give
    # (answered 503, database unavailable), not a wait for ever.
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.ext.asyncio import create_async_engine

    from kassa.db import database_unavailable

    engine = create_async_engine(
        postgres_url, pool_size=1, max_overflow=0, pool_timeout=0.3, isolation_level="AUTOCOMMIT"
    )
    db = Database(engine, pooled_autocommit=True)
    try:
        async with db.transaction() as tx:
            await tx.scalar(ONE)
            with pytest.raises(sa_exc.TimeoutError) as raised:
                await asyncio.wait_for(db.scalar(ONE), timeout=10)
            assert database_unavailable(raised.value)
        assert await db.scalar(ONE) == 1  # and the turn is there again once it is free
    finally:
        await db.dispose()
