"""Card numbers and CVCs never appear in clear anywhere kassa writes: run a payment's whole
lifecycle with distinctive cards (created, replayed by idempotency key, processed, lost and
reconciled, refunded, canceled, refused by validation), with each processor, with DEBUG
logs, then scan everything kassa keeps — a `pg_dump` (or the SQLite file's bytes), every log
line, `/metrics` and every response body — for them.

Redis is not scanned here: kassa writes only rate-limit counters to it (keyed by client IP
and user id), and no card data reaches the rate limiter."""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from kassa.processors.base import Processor
from kassa.processors.faults import Fault, FaultInjectingProcessor
from kassa.processors.simulator import SimulatorProcessor
from kassa.processors.stripe import StripeProcessor
from tests.conftest import (
    IN_CI,
    Api,
    card_details,
    migrated_postgres,
    migrated_sqlite,
    payment_body,
    register_user,
)
from tests.payments import random_visa
from tests.processors.conftest import localstripe_url, stripe_processor

__all__ = ["localstripe_url"]  # the fixture, shared with tests/processors

PG_DUMP = shutil.which("pg_dump")


@pytest.fixture(scope="module")
def leaks_sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return migrated_sqlite(tmp_path_factory, "leaks")


@pytest.fixture(scope="module")
def leaks_postgres_url() -> Iterator[str]:
    with migrated_postgres() as url:
        yield url


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """A database of this module's own, so the dump holds only what this lifecycle wrote."""
    return str(request.getfixturevalue(f"leaks_{request.param}_url"))


def database_text(url: str) -> str:
    """Everything the database holds: `pg_dump` for PostgreSQL, the raw file (and its
    write-ahead log) for SQLite."""
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        path = Path(str(parsed.database))
        files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-journal")]
        return "".join(f.read_bytes().decode("latin-1") for f in files if f.exists())
    if PG_DUMP is None:
        if IN_CI:
            pytest.fail("pg_dump is not installed (CI requires it)", pytrace=False)
        pytest.skip("pg_dump is not installed")
    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    dumped = subprocess.run(
        [PG_DUMP, "--no-owner", "--dbname", dsn],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
    )
    assert "CREATE TABLE public.payment" in dumped.stdout
    return dumped.stdout


def spellings(number: str) -> list[str]:
    """The number as it might be written: plain, in groups of four with spaces or dashes,
    and its first twelve digits (only the last four may ever be kept)."""
    groups = [number[i : i + 4] for i in range(0, len(number), 4)]
    return [number, " ".join(groups), "-".join(groups), number[:12]]


def cvc_pattern(cvc: str) -> re.Pattern[str]:
    """The CVC as a token of its own — not a run of digits inside an id, a hex blob, a
    timestamp or a decimal number, which a short code would match by chance."""
    return re.compile(rf"(?<![0-9A-Za-z.:\\-]){cvc}(?![0-9A-Za-z.:\\-])")


def assert_nowhere(where: str, text: str, numbers: list[str], cvcs: list[str]) -> None:
    for number in numbers:
        for spelled in spellings(number):
            assert spelled not in text, f"card number ({spelled[:4]}…) found in {where}"
    for cvc in cvcs:
        found = cvc_pattern(cvc).search(text)
        context = text[max(0, found.start() - 40) : found.end() + 40] if found else ""
        assert found is None, f"CVC found in {where}: …{context}…"


@pytest.fixture(autouse=True)
def _park_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    """The app logs at DEBUG into capsys' buffer, which closes after the test: park the
    root handler somewhere harmless until the next app configures logging again."""
    yield
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.stream = io.StringIO()
    logging.getLogger().setLevel(logging.WARNING)


@pytest.fixture(params=["simulator", "stripe"])
def processor_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_processor(request: pytest.FixtureRequest, processor_kind: str) -> AsyncIterator[Any]:
    made: list[StripeProcessor] = []

    def make() -> Processor:
        if processor_kind == "simulator":
            return SimulatorProcessor()
        processor = stripe_processor(str(request.getfixturevalue("localstripe_url")))
        made.append(processor)
        return processor

    yield make
    for processor in made:
        await processor.aclose()


async def test_no_card_number_or_cvc_anywhere_after_a_whole_lifecycle(
    api_factory: Any,
    database_url: str,
    make_processor: Any,
    processor_kind: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cvc = "864" if processor_kind == "stripe" else "8642"  # localstripe takes 3 digits only
    faulty = FaultInjectingProcessor(make_processor())
    api: Api = await api_factory(processor=faulty, log_level="DEBUG")
    capsys.readouterr()
    client = api.client
    numbers: list[str] = []
    bodies: list[str] = []

    async def post(path: str, headers: dict[str, str], **kwargs: Any) -> httpx.Response:
        response = await client.post(path, headers=headers, **kwargs)
        bodies.append(response.text)
        return response

    def card(**overrides: Any) -> dict[str, Any]:
        number = random_visa()
        numbers.append(number)
        return card_details(number, cvc=cvc, holder_name="Sam Cardholder", **overrides)

    user = await register_user(client)
    keyed = {**user.headers, "Idempotency-Key": f"order-{uuid.uuid4().hex}"}

    # Created twice under one Idempotency-Key (replayed), processed, refunded in two parts.
    body = payment_body(amount=5000, details=card())
    created = await post("/api/payments", keyed, json=body)
    replayed = await post("/api/payments", keyed, json=body)
    assert created.status_code == replayed.status_code == 201
    paid = created.json()["id"]
    processed = await post(
        "/api/payments/process",
        {**user.headers, "Idempotency-Key": uuid.uuid4().hex},
        json={"payment_id": paid},
    )
    assert processed.json()["status"] == "completed", processed.text
    part = await post(f"/api/payments/{paid}/refund", user.headers, json={"amount": 1200})
    rest = await post(f"/api/payments/{paid}/refund", user.headers)
    assert (part.status_code, rest.status_code) == (201, 201)

    # The answer of the charge is lost: processing, then reconciled.
    lost = (await post("/api/payments", user.headers, json=payment_body(details=card()))).json()
    faulty.plan("charge", Fault.LOSE_ANSWER)
    unknown = await post("/api/payments/process", user.headers, json={"payment_id": lost["id"]})
    assert unknown.status_code == 202
    await api.container.payments.reconcile(older_than=timedelta(0))

    # Created and canceled; created and left pending (sealed, never in clear).
    canceled = (await post("/api/payments", user.headers, json=payment_body(details=card()))).json()
    await post(f"/api/payments/{canceled['id']}/cancel", user.headers)
    await post("/api/payments", user.headers, json=payment_body(details=card()))

    # Refused by validation with the card in the body: the error never echoes it.
    expired = await post(
        "/api/payments", user.headers, json=payment_body(details=card(exp_year=2001))
    )
    extra = await post(
        "/api/payments", user.headers, json={**payment_body(details=card()), "status": "x"}
    )
    wrong_luhn = numbers[-1][:-1] + str((int(numbers[-1][-1]) + 1) % 10)
    bad_number = await post(
        "/api/payments",
        user.headers,
        json=payment_body(details=card_details(wrong_luhn, cvc=cvc)),
    )
    assert {expired.status_code, extra.status_code, bad_number.status_code} == {422}
    numbers.append(wrong_luhn)

    for path in (f"/api/payments/{paid}", "/api/transactions", f"/api/payments/{paid}/status"):
        bodies.append((await client.get(path, headers=user.headers)).text)
    metrics = (await client.get("/metrics")).text
    logged = capsys.readouterr()

    assert len(numbers) == 7
    assert_nowhere("response bodies", "\n".join(bodies), numbers, [cvc])
    assert_nowhere("the logs", logged.out + logged.err, numbers, [cvc])
    assert_nowhere("/metrics", metrics, numbers, [cvc])
    stored = database_text(database_url)
    assert numbers[0][-4:] in stored  # the right database: last4 is kept, by design
    assert_nowhere("the database", stored, numbers, [cvc])
    assert '"cvc"' not in logged.out.replace('"cvc":"[REDACTED]"', "")
