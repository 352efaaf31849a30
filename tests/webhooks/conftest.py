from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from kassa.app import create_app
from kassa.container import build_container
from kassa.processors.simulator import SimulatorProcessor
from tests.conftest import Api, make_settings
from tests.webhooks import FakeResolver, MovableClock, Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    yield started
    started.stop()


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
async def resolver_api(database_url: str) -> Any:
    """Like `api_factory`, with a resolver the test chooses (and a movable clock)."""
    made: list[Api] = []

    async def make(resolver: FakeResolver, clock: Callable[[], Any], **settings: Any) -> Api:
        container = build_container(
            make_settings(database_url, **settings),
            processor=SimulatorProcessor(),
            clock=clock,
            resolver=resolver,
        )
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(container=container)),
            base_url="http://kassa.test",
        )
        api = Api(client=client, container=container, processor=container.processor)
        made.append(api)
        return api

    yield make
    for api in made:
        await api.client.aclose()
        await api.container.aclose()


@pytest.fixture
async def clean_webhooks(database_url: str) -> Any:
    """Deletes every webhook endpoint (and so every queued delivery) after the test, so that
    no later test's deliverer sends this test's events. Each database belongs to one xdist
    worker, whose tests run one at a time."""
    yield
    from sqlalchemy import delete

    from kassa.db import Database, create_engine
    from kassa.webhooks.models import WebhookEndpoint

    db = Database(create_engine(database_url, pool_size=1))
    try:
        await db.execute(delete(WebhookEndpoint))
    finally:
        await db.dispose()
