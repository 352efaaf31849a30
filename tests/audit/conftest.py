"""An app on a database of its own, with the simulator keeping its records in that database
(as `kassa serve` does), so that the processor's records can be checked against the books."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from kassa.app import create_app
from kassa.container import build_container
from tests.conftest import Api, make_settings, migrated_postgres, migrated_sqlite


@pytest.fixture(params=["sqlite", "postgres"])
def books_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        yield migrated_sqlite(tmp_path_factory, "books")
    else:
        with migrated_postgres() as url:
            yield url


@pytest.fixture
async def books(books_url: str) -> AsyncIterator[Api]:
    container = build_container(make_settings(books_url))  # the simulator, on the database
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(container=container)),
        base_url="http://kassa.test",
    )
    try:
        yield Api(client=client, container=container, processor=container.processor)
    finally:
        await client.aclose()
        await container.aclose()
