"""Shared fixtures: a migrated database per backend (SQLite and the real PostgreSQL), an app
wired to it, and small async factories.

PostgreSQL tests create their own uniquely named database and drop it afterwards. In CI
(`CI=true`) an unreachable PostgreSQL fails the run instead of skipping.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
from sqlalchemy import select

from kassa.app import create_app
from kassa.auth.passwords import Passwords
from kassa.container import Container, build_container
from kassa.db import Base, Runner, record_of, table_of
from kassa.migrate import upgrade
from kassa.processors.base import Processor
from kassa.processors.simulator import SimulatorProcessor
from kassa.settings import Settings, load_settings

M = TypeVar("M", bound=Base)

PG_ADMIN_DSN = os.environ.get("KASSA_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TEST_VAULT_KEY = "test:" + base64.urlsafe_b64encode(b"k" * 32).decode().rstrip("=")
# Argon2id at its cheapest (8 KiB, one pass): tests that are not about the cost of hashing
# spend microseconds instead of tens of milliseconds a password. Tests about the cost set
# their own `argon2_*` settings.
CHEAP_ARGON2 = {
    "KASSA_ARGON2_MEMORY_KIB": "8",
    "KASSA_ARGON2_TIME_COST": "1",
    "KASSA_ARGON2_PARALLELISM": "1",
}


def _pg_reachable() -> bool:
    async def probe() -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
        return True
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False


def _create_pg_database() -> tuple[str, str]:
    name = f"kassa_test_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    host_part = PG_ADMIN_DSN.split("://", 1)[1].rsplit("/", 1)[0]
    return name, f"postgresql+asyncpg://{host_part}/{name}"


def _drop_pg_database(name: str) -> None:
    async def drop() -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


def require_postgres() -> None:
    """Skip the test without a reachable PostgreSQL; in CI (`CI=true`), fail it."""
    if not _pg_reachable():
        message = f"PostgreSQL is not reachable at {PG_ADMIN_DSN}"
        if IN_CI:
            pytest.fail(message + " (CI requires it)", pytrace=False)
        pytest.skip(message)


@contextlib.contextmanager
def migrated_postgres() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database of its own, dropped afterwards."""
    require_postgres()
    name, url = _create_pg_database()
    try:
        upgrade(url)
        yield url
    finally:
        _drop_pg_database(name)


def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory, folder: str) -> str:
    """A fresh, migrated SQLite database file in a temporary folder of its own."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp(folder) / 'kassa.db'}"
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session (one per xdist worker)."""
    with migrated_postgres() as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return migrated_sqlite(tmp_path_factory, "sqlite")


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Every database test runs on both the embedded default and the real PostgreSQL."""
    return str(request.getfixturevalue(f"{request.param}_url"))


def make_settings(database_url: str, tmp_dir: Path | None = None, **overrides: Any) -> Settings:
    env = {
        "KASSA_DATABASE_URL": database_url,
        "KASSA_JWT_SECRET": "test-secret-" + "x" * 40,
        "KASSA_VAULT_KEYS": TEST_VAULT_KEY,
        "KASSA_RATE_LIMIT": "100000/minute",
        "KASSA_LOG_LEVEL": "WARNING",
        **CHEAP_ARGON2,
        **{f"KASSA_{k.upper()}": str(v) for k, v in overrides.items()},
    }
    return load_settings(env)


@dataclass
class Api:
    """An app under test: an HTTP client plus the container behind it."""

    client: httpx.AsyncClient
    container: Container
    processor: Processor


@pytest.fixture
async def api_factory(
    database_url: str,
) -> AsyncIterator[Callable[..., Any]]:
    made: list[Api] = []

    async def make(
        *,
        processor: Processor | None = None,
        clock: Callable[[], Any] | None = None,
        passwords: Passwords | None = None,
        **settings: Any,
    ) -> Api:
        config = make_settings(database_url, **settings)
        processor = processor or SimulatorProcessor()
        extra: dict[str, Any] = {"processor": processor}
        if clock is not None:
            extra["clock"] = clock
        if passwords is not None:
            extra["passwords"] = passwords
        container = build_container(config, **extra)
        app = create_app(container=container)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("203.0.113.7", 50000)),
            base_url="http://kassa.test",
        )
        api = Api(client=client, container=container, processor=processor)
        made.append(api)
        return api

    yield make
    for api in made:
        await api.client.aclose()
        await api.container.aclose()


@pytest.fixture
async def api(api_factory: Callable[..., Any]) -> Api:
    made: Api = await api_factory()
    return made


# Small factories -------------------------------------------------------------------------


def unique_email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


@dataclass
class User:
    id: str
    email: str
    password: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def register_user(
    client: httpx.AsyncClient, *, email: str | None = None, password: str | None = None
) -> User:
    email = email or unique_email()
    password = password or "correct horse " + secrets.token_hex(4)
    response = await client.post(
        "/api/auth/register", json={"name": "Test User", "email": email, "password": password}
    )
    assert response.status_code == 201, response.text
    user_id = response.json()["id"]
    login = await client.post("/api/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    tokens = login.json()
    return User(user_id, email, password, tokens["access_token"], tokens["refresh_token"])


def card_details(number: str = "4242424242424242", **overrides: Any) -> dict[str, Any]:
    return {"number": number, "exp_month": 12, "exp_year": 2099, "cvc": "123", **overrides}


def payment_body(
    amount: int = 1050,
    currency: str = "USD",
    method: str = "credit_card",
    details: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    if details is None:
        details = (
            {"wallet": "apple_pay", "token": "tok_ok"}
            if method == "digital_wallet"
            else card_details()
        )
    return {
        "amount": amount,
        "currency": currency,
        "payment_method": method,
        "details": details,
        **extra,
    }


async def create_payment(client: httpx.AsyncClient, user: User, **kwargs: Any) -> dict[str, Any]:
    response = await client.post("/api/payments", json=payment_body(**kwargs), headers=user.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def fetch_payment(client: httpx.AsyncClient, user: User, payment_id: str) -> dict[str, Any]:
    """GET /api/payments/{id} as `user`, which must answer 200."""
    response = await client.get(f"/api/payments/{payment_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def completed_payment(client: httpx.AsyncClient, user: User, **kwargs: Any) -> dict[str, Any]:
    payment = await create_payment(client, user, **kwargs)
    response = await client.post(
        "/api/payments/process", json={"payment_id": payment["id"]}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "completed"
    return body


async def stored(db: Runner, model: type[M], key: Any) -> M | None:
    """The row of `model` with primary key `key`, as a detached instance, read through the
    handle (what a test checks the database for)."""
    table = table_of(model)
    (column,) = table.primary_key.columns
    row = await db.first(select(table).where(column == key))
    return None if row is None else record_of(model, row)
