"""One slow endpoint does not stall everyone: the worker delivers with a bounded pool that
fills each slot as it frees, and no endpoint holds more than its share of the slots."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest

from kassa.settings import SettingsError, load_settings
from kassa.webhooks.delivery import PER_ENDPOINT
from kassa.worker import Worker
from tests.conftest import TEST_VAULT_KEY, Api, create_payment, register_user
from tests.webhooks import Receiver, create_webhook, until

pytestmark = pytest.mark.usefixtures("clean_webhooks")


@pytest.fixture
def slow() -> Any:
    """A receiver that holds every request until the test lets go (past the attempt timeout
    if need be, which ends the attempt)."""
    started = Receiver(hold=True).start()
    yield started
    started.stop()


async def test_a_hanging_endpoint_does_not_delay_another_tenants_deliveries(
    api_factory: Any, receiver: Receiver, slow: Receiver
) -> None:
    api: Api = await api_factory(webhook_allow_private=True)
    patient, other = await register_user(api.client), await register_user(api.client)
    await create_webhook(api.client, patient, slow.url)
    await create_webhook(api.client, other, receiver.url)
    for _ in range(3 * PER_ENDPOINT + 20):  # more than a whole old-style batch
        await create_payment(api.client, patient)
    expected = [await create_payment(api.client, other) for _ in range(5)]

    worker = Worker(api.container, interval=3600, older_than=timedelta(hours=1))
    running = asyncio.create_task(worker.run())
    try:
        started = time.monotonic()
        await until(lambda: len(set(receiver.ids())) == len(expected), within=5)
        latency = time.monotonic() - started
        # Still hanging: the slow endpoint never got more than its share of the pool.
        await until(lambda: len(slow.requests) == PER_ENDPOINT, within=5)
        await asyncio.sleep(0.5)
        assert len(slow.requests) == PER_ENDPOINT
        assert not slow.release.is_set()
    finally:
        slow.release.set()
        worker.stop()
        await asyncio.wait_for(running, timeout=30)
    assert latency < 5
    assert len(receiver.ids()) == len(expected)


async def test_the_per_endpoint_cap_is_a_setting_and_holds_across_deliverers(
    api_factory: Any, slow: Receiver
) -> None:
    first: Api = await api_factory(webhook_allow_private=True, webhook_endpoint_concurrency=2)
    second: Api = await api_factory(webhook_allow_private=True, webhook_endpoint_concurrency=2)
    user = await register_user(first.client)
    await create_webhook(first.client, user, slow.url)
    for _ in range(10):
        await create_payment(first.client, user)
    stopping = asyncio.Event()
    pools = [
        asyncio.create_task(api.container.deliveries.run(stopping, poll=0.05))
        for api in (first, second)
    ]
    try:
        await until(lambda: len(slow.requests) == 2, within=5)
        await asyncio.sleep(0.5)  # both pools have polled many times meanwhile
        assert len(slow.requests) == 2
    finally:
        stopping.set()
        slow.release.set()
        await asyncio.wait_for(asyncio.gather(*pools), timeout=30)


def test_a_per_endpoint_cap_as_large_as_the_pool_is_refused() -> None:
    with pytest.raises(SettingsError, match="must be less than KASSA_WEBHOOK_CONCURRENCY"):
        load_settings(
            {
                "KASSA_JWT_SECRET": "s" * 40,
                "KASSA_VAULT_KEYS": TEST_VAULT_KEY,
                "KASSA_WEBHOOK_CONCURRENCY": "8",
                "KASSA_WEBHOOK_ENDPOINT_CONCURRENCY": "8",
            }
        )
