from __future__ import annotations

import asyncio
import gc
import uuid
from pathlib import Path

import pytest

from kassa.db import parse_id


def test_parse_id_accepts_the_canonical_form_in_any_case() -> None:
    ident = uuid.uuid4()
    assert parse_id(str(ident)) == ident
    assert parse_id(str(ident).upper()) == ident


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "abc",
        "123",
        "0" * 32,
        "{" + "0" * 8 + "-0000-0000-0000-" + "0" * 12 + "}",
        "urn:uuid:00000000-0000-0000-0000-000000000000",
        "00000000-0000-0000-0000-00000000000g",
    ],
)
def test_parse_id_refuses_other_spellings(raw: str) -> None:
    assert parse_id(raw) is None


def test_the_postgresql_pool_keeps_its_size_and_never_opens_more() -> None:
    from kassa.db import create_engine

    engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:5432/postgres", pool_size=7)
    pool = engine.sync_engine.pool
    assert pool.size() == 7  # type: ignore[attr-defined]
    # No overflow: a connection past the pool would be closed again on return (churn).
    assert pool._max_overflow == 0  # type: ignore[attr-defined]


def test_the_pool_size_comes_from_the_settings() -> None:
    from kassa.container import build_container
    from kassa.settings import load_settings

    settings = load_settings(
        {
            "KASSA_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres",
            "KASSA_DATABASE_POOL_SIZE": "12",
            "KASSA_JWT_SECRET": "s" * 40,
            "KASSA_VAULT_KEYS": "k1:" + "A" * 43,
        }
    )
    assert settings.database_pool_size == 12
    container = build_container(settings)
    try:
        assert container.db.engine.sync_engine.pool.size() == 12  # type: ignore[attr-defined]
    finally:
        asyncio.run(container.aclose())
    assert load_settings({}).database_pool_size == 10


@pytest.mark.parametrize("size", ["0", "-1", "1001", "many"])
def test_a_pool_size_outside_1_to_1000_is_refused(size: str) -> None:
    from kassa.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="KASSA_DATABASE_POOL_SIZE"):
        load_settings({"KASSA_DATABASE_POOL_SIZE": size})


def test_the_served_app_freezes_what_start_up_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`kassa serve`'s factory moves the start-up heap out of the collector's way."""
    from kassa.app import create_app_from_env

    monkeypatch.setenv("KASSA_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'k.db'}")
    gc.unfreeze()
    try:
        create_app_from_env()
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()


def test_record_of_reads_a_row_into_a_transient_record_by_attribute_name() -> None:
    from sqlalchemy import inspect

    from kassa.db import record_of, table_of, values_of
    from kassa.payments.models import Payment

    row = {c.name: None for c in table_of(Payment).c}
    ident = uuid.uuid4()
    row.update(id=ident, amount=2500, currency="USD", status="pending")
    payment = record_of(Payment, row)
    assert (payment.id, payment.amount, payment.currency, payment.status) == (
        ident,
        2500,
        "USD",
        "pending",
    )
    assert inspect(payment).transient  # no session, no identity
    payment.status = "completed"  # an ordinary ORM attribute: values_of sees the change
    assert values_of(payment)["status"] == "completed"
    assert values_of(payment)["amount"] == 2500


def test_record_of_refuses_a_column_the_model_does_not_have() -> None:
    from kassa.db import record_of
    from kassa.payments.models import Payment

    with pytest.raises(KeyError, match="no_such_column"):
        record_of(Payment, {"no_such_column": 1})
