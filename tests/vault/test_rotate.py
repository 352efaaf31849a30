"""Key rotation: `kassa vault rotate` re-seals every vaulted card number and CVC (and the
fingerprint key) under the first key of KASSA_VAULT_KEYS, in batches, resumable after an
interruption, after which the old key can be dropped.

These tests get databases of their own: rotating the shared test database would re-seal
other tests' card data under a key they do not hold."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from kassa.db import record_of
from kassa.migrate import upgrade
from kassa.payments.models import Payment, PaymentSecret
from kassa.vault.fingerprint import KEY_ROW, VaultFingerprintKey
from tests.conftest import (
    TEST_VAULT_KEY,
    Api,
    User,
    card_details,
    create_payment,
    make_settings,
    migrated_postgres,
    migrated_sqlite,
    register_user,
    stored,
)
from tests.payments import random_visa

NEW_KEY = "new:" + base64.urlsafe_b64encode(b"n" * 32).decode().rstrip("=")
THIRD_KEY = "third:" + base64.urlsafe_b64encode(b"t" * 32).decode().rstrip("=")
LOST_KEY = "lost:" + base64.urlsafe_b64encode(b"l" * 32).decode().rstrip("=")
ROTATING = f"{NEW_KEY},{TEST_VAULT_KEY}"  # the new key seals, the old one still opens


@pytest.fixture
def rotation_sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database per test: each rotation starts from a state of its own making."""
    return migrated_sqlite(tmp_path_factory, "rotate")


@pytest.fixture
def rotation_postgres_url() -> Iterator[str]:
    with migrated_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"rotation_{request.param}_url"))


async def _secrets(api: Api) -> list[PaymentSecret]:
    rows = await api.container.db.rows(select(PaymentSecret))
    return [record_of(PaymentSecret, row) for row in rows]


async def _fingerprint_kid(api: Api) -> str:
    row = await stored(api.container.db, VaultFingerprintKey, KEY_ROW)
    assert row is not None
    return row.key_id


async def _fingerprint(api: Api, payment_id: str) -> str | None:
    payment = await stored(api.container.db, Payment, uuid.UUID(payment_id))
    assert payment is not None
    return payment.card_fingerprint


async def _pending_payments(api: Api, count: int) -> tuple[User, list[dict[str, Any]]]:
    user = await register_user(api.client)
    made = [
        await create_payment(api.client, user, details=card_details(random_visa()))
        for _ in range(count)
    ]
    return user, made


async def _rotate_everything(api: Api) -> None:
    """Rotate until nothing is left under an old key (earlier tests' rows included)."""
    report = await api.container.vault_rotator.rotate(batch_size=50)
    assert report.unreadable == 0


async def test_rotation_reseals_every_number_and_cvc_under_the_new_key(api_factory: Any) -> None:
    old = await api_factory()
    user, payments = await _pending_payments(old, 5)
    rotating: Api = await api_factory(vault_keys=ROTATING)
    seen: list[tuple[int, int]] = []
    report = await rotating.container.vault_rotator.rotate(
        batch_size=2, progress=lambda done, total: seen.append((done, total))
    )
    assert report.unreadable == 0
    assert report.resealed >= 5
    secrets = await _secrets(rotating)
    assert {s.key_id for s in secrets} == {"new"}
    assert {s.cvc_key_id for s in secrets} <= {"new", None}
    assert seen
    assert seen[-1][0] == seen[-1][1]  # progress reaches its total
    # The old key can go: a server holding only the new key processes every payment.
    new_only: Api = await api_factory(vault_keys=NEW_KEY)
    for payment in payments:
        response = await new_only.client.post(
            "/api/payments/process", json={"payment_id": payment["id"]}, headers=user.headers
        )
        assert response.json()["status"] == "completed", response.text


async def test_rotation_interrupted_midway_resumes_where_it_stopped(api_factory: Any) -> None:
    old = await api_factory()
    user, payments = await _pending_payments(old, 6)
    rotating: Api = await api_factory(vault_keys=ROTATING)
    total_before = await rotating.container.payments.count_to_reseal()

    def interrupt(done: int, total: int) -> None:
        if done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await rotating.container.vault_rotator.rotate(batch_size=2, progress=interrupt)
    left = await rotating.container.payments.count_to_reseal()
    assert 0 < left < total_before  # the batches done are done; the rest still opens
    await _rotate_everything(rotating)
    assert await rotating.container.payments.count_to_reseal() == 0
    new_only: Api = await api_factory(vault_keys=NEW_KEY)
    response = await new_only.client.post(
        "/api/payments/process", json={"payment_id": payments[-1]["id"]}, headers=user.headers
    )
    assert response.json()["status"] == "completed"


async def test_running_rotation_again_has_nothing_to_do(api_factory: Any) -> None:
    rotating: Api = await api_factory(vault_keys=ROTATING)
    await _rotate_everything(rotating)
    again = await rotating.container.vault_rotator.rotate()
    assert (again.examined, again.resealed, again.unreadable) == (0, 0, 0)


async def test_an_entry_no_key_opens_is_reported_and_skipped_never_lost(api_factory: Any) -> None:
    await _pending_payments(await api_factory(), 1)  # the fingerprint key, under a key kept
    stranger: Api = await api_factory(vault_keys=f"{LOST_KEY},{TEST_VAULT_KEY}")
    _, [lost] = await _pending_payments(stranger, 1)
    rotating: Api = await api_factory(vault_keys=ROTATING)
    report = await rotating.container.vault_rotator.rotate(batch_size=1)
    assert report.unreadable == 1
    kept = [s for s in await _secrets(rotating) if str(s.payment_id) == lost["id"]]
    assert [s.key_id for s in kept] == ["lost"]  # untouched, still there for the right key
    cleanup: Api = await api_factory(vault_keys=f"{NEW_KEY},{LOST_KEY}")
    await _rotate_everything(cleanup)


async def test_a_fingerprint_key_no_key_opens_is_reported_and_skipped_not_a_crash(
    api_factory: Any,
) -> None:
    stranger: Api = await api_factory(vault_keys=f"{LOST_KEY},{TEST_VAULT_KEY}")
    await _pending_payments(stranger, 1)  # this database's fingerprint key: under "lost"
    rotating: Api = await api_factory(vault_keys=ROTATING)
    report = await rotating.container.vault_rotator.rotate()
    assert report.unreadable == 2  # the key and the one card number, both under "lost"
    assert await _fingerprint_kid(rotating) == "lost"  # untouched, still there for the key


async def test_fingerprints_survive_rotation_and_never_equal_a_plain_hash(
    api_factory: Any,
) -> None:
    import hashlib

    number = random_visa()
    old: Api = await api_factory(vault_keys=ROTATING)  # opens what earlier tests left
    user = await register_user(old.client)
    before = await create_payment(old.client, user, details=card_details(number))
    rotating: Api = await api_factory(vault_keys=f"{THIRD_KEY},{ROTATING}")
    await _rotate_everything(rotating)
    assert await _fingerprint_kid(rotating) == "third"
    new_only: Api = await api_factory(vault_keys=THIRD_KEY)
    after = await create_payment(new_only.client, user, details=card_details(number))
    other = await create_payment(new_only.client, user, details=card_details(random_visa()))
    fingerprint = await _fingerprint(new_only, before["id"])
    assert fingerprint is not None
    assert await _fingerprint(new_only, after["id"]) == fingerprint
    assert await _fingerprint(new_only, other["id"]) != fingerprint
    plain = {
        hashlib.sha256(number.encode()).hexdigest(),
        hashlib.sha512(number.encode()).hexdigest(),
    }
    assert fingerprint not in plain
    assert number not in fingerprint


def test_kassa_vault_rotate_shows_progress_on_stderr_and_a_summary_on_stdout(
    tmp_path: Path,
) -> None:
    import asyncio

    from kassa.app import create_app
    from kassa.container import build_container

    url = f"sqlite+aiosqlite:///{tmp_path / 'kassa.db'}"
    upgrade(url)

    async def seed() -> None:
        import httpx

        container = build_container(make_settings(url))
        app = create_app(container=container)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://kassa.test"
        ) as client:
            user = await register_user(client)
            for _ in range(3):
                await create_payment(client, user, details=card_details(random_visa()))
        await container.aclose()

    asyncio.run(seed())
    kassa = Path(sys.executable).parent / "kassa"
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("KASSA_")}
    env.update(
        KASSA_DATABASE_URL=url,
        KASSA_VAULT_KEYS=ROTATING,
        KASSA_JWT_SECRET="test-secret-" + "x" * 40,
    )
    result = subprocess.run(
        [str(kassa), "vault", "rotate", "--batch-size", "1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "re-sealed with key 'new'" in result.stdout
    assert "0 could not be opened" in result.stdout
    assert "vault rotate [" in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith("4/4")  # 3 secrets + the key
    again = subprocess.run(
        [str(kassa), "vault", "rotate"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0
    assert "0 re-sealed" in again.stdout


@pytest.mark.parametrize("batch_size", ["0", "10001", "many"])
def test_kassa_vault_rotate_refuses_a_bad_batch_size_without_a_traceback(
    tmp_path: Path, batch_size: str
) -> None:
    kassa = Path(sys.executable).parent / "kassa"
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("KASSA_")}
    result = subprocess.run(
        [str(kassa), "vault", "rotate", "--batch-size", batch_size],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    assert "--batch-size" in result.stderr
    assert not (tmp_path / "kassa.db").exists()  # refused before touching the database


async def test_rotation_reseals_webhook_signing_secrets_so_the_old_key_can_go(
    api_factory: Any,
) -> None:
    from kassa.vault.crypto import Sealed, Vault, parse_vault_keys
    from kassa.webhooks.models import WebhookEndpoint
    from kassa.webhooks.service import secret_context

    old: Api = await api_factory(webhook_allow_private=True)
    user = await register_user(old.client)
    created = await old.client.post(
        "/api/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "events": ["*"]},
        headers=user.headers,
    )
    assert created.status_code == 201, created.text
    rotating: Api = await api_factory(vault_keys=ROTATING, webhook_allow_private=True)
    report = await rotating.container.vault_rotator.rotate(batch_size=1)
    assert report.unreadable == 0
    endpoint = await stored(rotating.container.db, WebhookEndpoint, uuid.UUID(created.json()["id"]))
    assert endpoint is not None
    assert endpoint.secret_key_id == "new"
    new_only = Vault(parse_vault_keys(NEW_KEY))
    opened = new_only.decrypt(
        Sealed(endpoint.secret_key_id, endpoint.secret_sealed), context=secret_context(endpoint.id)
    )
    assert opened == created.json()["secret"]
