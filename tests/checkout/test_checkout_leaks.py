"""The leak scan over checkout: after customers pay, are declined, retry and mistype on the
checkout page, no card number or CVC is in any page kassa served, any log line, any event
or any database column."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tests.checkout import card_form, form_of, open_session
from tests.conftest import Api, migrated_postgres, migrated_sqlite, register_user
from tests.payments import random_visa
from tests.test_no_card_data_leaks import assert_nowhere, database_text


@pytest.fixture(scope="module")
def checkout_leaks_sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return migrated_sqlite(tmp_path_factory, "checkout-leaks")


@pytest.fixture(scope="module")
def checkout_leaks_postgres_url() -> Iterator[str]:
    with migrated_postgres() as url:
        yield url


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """A database of this module's own, so the dump holds only what checkout wrote."""
    return str(request.getfixturevalue(f"checkout_leaks_{request.param}_url"))


@pytest.fixture(autouse=True)
def _park_logs() -> Iterator[None]:
    yield
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.stream = io.StringIO()
    logging.getLogger().setLevel(logging.WARNING)


async def test_no_card_number_or_cvc_anywhere_after_checkouts(
    api_factory: Any, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    api: Api = await api_factory(log_level="DEBUG")
    capsys.readouterr()
    client = api.client
    cvc = "7319"
    numbers: list[str] = []
    bodies: list[str] = []
    user = await register_user(client)

    forms: dict[str, dict[str, str]] = {}

    async def submit(session_id: str, number: str, **overrides: str) -> None:
        shown = await client.get(f"/checkout/{session_id}")
        bodies.append(shown.text)
        numbers.append(number)
        if 'name="csrf"' in shown.text:
            forms[session_id] = form_of(shown.text)
        form = {**forms[session_id], **card_form(number, cvc=cvc, **overrides)}
        answer = await client.post(f"/checkout/{session_id}", data=form)
        bodies.append(answer.text)
        bodies.append((await client.get(f"/checkout/{session_id}")).text)

    paid = await open_session(client, user)
    await submit(paid["id"], random_visa())
    retried = await open_session(client, user)
    await submit(retried["id"], "4000000000000002")  # declined
    await submit(retried["id"], random_visa()[:-1] + "0", expiry="01/20")  # refused on the page
    await submit(retried["id"], random_visa())
    await submit(paid["id"], random_visa())  # a second use, refused

    for path in ("/api/events", "/api/transactions", f"/api/checkout/sessions/{paid['id']}"):
        bodies.append((await client.get(path, headers=user.headers)).text)
    logged = capsys.readouterr()
    assert "checkout.session.completed" in bodies[-3]
    assert_nowhere("pages and API answers", "\n".join(bodies), numbers, [cvc])
    assert_nowhere("the logs", logged.out + logged.err, numbers, [cvc])
    stored = database_text(database_url)
    assert "checkout_session" in stored
    assert_nowhere("the database", stored, numbers, [cvc])
