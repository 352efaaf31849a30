"""What each request costs in kassa's own Python, held structurally (never by a timer): the
middleware stack is plain ASGI, a worker builds the OpenAPI document at start-up instead of
in a request, and the log redaction's early exit lets through only what no check acts on."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from starlette.middleware.base import BaseHTTPMiddleware

import kassa.app
from kassa.app import create_app, create_app_from_env
from kassa.db import open_database
from kassa.observability.logging import REDACTED, redact_text
from tests.conftest import make_settings


def test_no_middleware_is_a_base_http_middleware(tmp_path: Path) -> None:
    # BaseHTTPMiddleware runs the rest of the app in a task with memory streams: several
    # times the cost of a plain ASGI layer, on every request.
    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path}/kassa.db"))
    classes = [m.cls for m in app.user_middleware]
    assert classes, "the app has its middleware"
    assert not [c for c in classes if isinstance(c, type) and issubclass(c, BaseHTTPMiddleware)]


def test_a_worker_builds_the_openapi_document_before_it_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The access log names a request that an outer layer answered (a replay, a 429, a client
    # gone before its body arrived) by the documented route templates; built on the first
    # such request, the document cost that request about half a second of CPU.
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path}/kassa.db")
    built: list[FastAPI] = []

    def create() -> FastAPI:
        app = create_app(settings)
        built.append(app)
        return app

    monkeypatch.setattr(kassa.app, "create_app", create)
    try:
        app = create_app_from_env()
        assert app is built[0]
        assert app.openapi_schema is not None
    finally:
        gc.unfreeze()


@pytest.mark.parametrize(
    "text",
    [
        "4242 4242 4242 4242",
        "card 4242-4242-4242-4242 here",
        "BEARER abc.def.ghi",
        "authorization: bEaReR sometoken",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
        "whsec_c2VjcmV0K/w==",
        "sk_live_abc123",
        "rk_test_abc123",
        "[parameters: ('secret-value',)]",
        "invalid input for query argument $1: 'hunter2'",
        "DETAIL: Key (email)=(someone@example.com) already exists.",
    ],
)
def test_every_value_a_check_acts_on_passes_the_early_exit(text: str) -> None:
    assert REDACTED in redact_text(text)


@pytest.mark.parametrize(
    "text",
    [
        "/api/payments/cb8aa161-790f-4e3e-a944-ae96948d8ee6/refund",
        "2026-12-06T01:30:59.170992Z",
        "request",
        "127.0.0.1",
        "1234 5678 901",  # eleven digits: never a card number
    ],
)
def test_ordinary_values_are_left_as_they_are(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.postgres
async def test_the_applications_handle_keeps_transactions_whole_on_an_autocommit_pool(
    postgres_url: str,
) -> None:
    db = open_database(postgres_url, pool_size=1)
    try:
        # Alone, a statement commits on its own (the connection's session table keeps it).
        await db.execute(text("CREATE TEMP TABLE t (n int)"))
        await db.execute(text("INSERT INTO t VALUES (0)"))
        assert await db.scalar(text("SELECT count(*) FROM t")) == 1
        # A transaction is one: its statements share a start, and a failure undoes them all.
        async with db.transaction() as tx:
            assert await tx.scalar(text("SHOW transaction_isolation")) == "read committed"
            first = await tx.scalar(text("SELECT now()"))
            await tx.scalar(text("SELECT pg_sleep(0.01)"))
            assert await tx.scalar(text("SELECT now()")) == first

        async def insert_then_fail() -> None:
            async with db.transaction() as tx:
                await tx.execute(text("INSERT INTO t VALUES (1)"))
                raise RuntimeError

        with pytest.raises(RuntimeError):
            await insert_then_fail()
        assert await db.scalar(text("SELECT count(*) FROM t")) == 1
        async with db.snapshot() as tx:
            assert await tx.scalar(text("SHOW transaction_isolation")) == "repeatable read"
            assert await tx.scalar(text("SHOW transaction_read_only")) == "on"
        # The one connection went back to autocommit after each of them.
        await db.execute(text("INSERT INTO t VALUES (2)"))
        assert await db.scalar(text("SELECT count(*) FROM t")) == 2
    finally:
        await db.dispose()
