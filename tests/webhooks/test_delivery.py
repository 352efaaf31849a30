"""Delivery to a real receiver on loopback: Standard Webhooks signatures a receiver using
the `standardwebhooks` library verifies, retries with backoff (an injected clock skips the
waits), every attempt listed, manual redelivery, the endpoint disabled after failing for the
whole retry window, and the SSRF guard again at delivery time."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from kassa.vault.crypto import Vault
from kassa.webhooks.delivery import RETRY_WINDOW, WebhookDeliverer
from kassa.webhooks.urls import system_resolver
from tests.conftest import Api, User, completed_payment, create_payment, register_user
from tests.webhooks import (
    FakeResolver,
    MovableClock,
    Receiver,
    create_webhook,
    list_attempts,
    list_events,
    login_again,
    until,
)

pytestmark = pytest.mark.usefixtures("clean_webhooks")
ATTEMPT_KEYS = {
    "id",
    "delivery_id",
    "event_id",
    "event_type",
    "attempt",
    "status",
    "response_status",
    "error",
    "duration_ms",
    "created_at",
}


@pytest.fixture
async def api(api_factory: Any, clock: MovableClock) -> Api:
    made: Api = await api_factory(clock=clock, webhook_allow_private=True)
    return made


async def drain(api: Api) -> None:
    """Everything due now, delivered (what a worker's pool does)."""
    while await api.container.deliveries.deliver_due(20) > 0:
        pass


def verify_all(receiver: Receiver, secret: str) -> list[dict[str, Any]]:
    """Every request the receiver got, verified by the Standard Webhooks library."""
    verifier = Webhook(secret)
    with receiver.lock:
        requests = list(receiver.requests)
    payloads = []
    for request in requests:
        payload = verifier.verify(request.body, request.headers)
        assert request.headers["webhook-id"] == payload["id"]
        assert request.headers["content-type"] == "application/json"
        assert request.headers["webhook-signature"].startswith("v1,")
        payloads.append(payload)
    return payloads


async def test_a_failing_receiver_gets_the_event_until_it_answers_2xx(
    api: Api, receiver: Receiver, clock: MovableClock
) -> None:
    receiver.statuses = [500, 503]
    user = await register_user(api.client)
    endpoint = await create_webhook(api.client, user, receiver.url)
    await create_payment(api.client, user)
    [event] = await list_events(api.client, user)

    await drain(api)
    assert len(receiver.requests) == 1
    await drain(api)  # the retry is not due yet
    assert len(receiver.requests) == 1
    clock.advance(timedelta(seconds=16))  # past the first backoff (at most 15 s)
    await drain(api)
    assert len(receiver.requests) == 2
    clock.advance(timedelta(seconds=31))  # past the second (at most 30 s)
    await drain(api)
    assert len(receiver.requests) == 3
    clock.advance(timedelta(days=4))
    await drain(api)
    assert len(receiver.requests) == 3  # delivered: never again
    user = await login_again(api.client, user)

    payloads = verify_all(receiver, endpoint["secret"])
    assert payloads == [event, event, event]
    assert {r.path for r in receiver.requests} == {"/hooks?source=kassa"}
    assert receiver.ids() == [event["id"]] * 3

    attempts = await list_attempts(api.client, user, endpoint["id"])
    assert all(set(a) == ATTEMPT_KEYS for a in attempts)
    assert [(a["attempt"], a["status"], a["response_status"], a["error"]) for a in attempts] == [
        (3, "succeeded", 200, None),
        (2, "failed", 503, "HTTP 503"),
        (1, "failed", 500, "HTTP 500"),
    ]
    assert {(a["event_id"], a["event_type"]) for a in attempts} == {
        (event["id"], "payment.created")
    }
    assert len({a["delivery_id"] for a in attempts}) == 1


async def test_every_event_is_delivered_once_and_verifies(api: Api, receiver: Receiver) -> None:
    user = await register_user(api.client)
    endpoint = await create_webhook(api.client, user, receiver.url)
    payment = await completed_payment(api.client, user, amount=1000)
    await api.client.post(
        f"/api/payments/{payment['id']}/refund", json={"amount": 400}, headers=user.headers
    )
    await api.client.post(f"/api/payments/{payment['id']}/refund", headers=user.headers)
    other = await create_payment(api.client, user)
    await api.client.post(f"/api/payments/{other['id']}/cancel", headers=user.headers)
    await drain(api)

    events = await list_events(api.client, user, limit=100)
    assert len(events) == 9
    payloads = verify_all(receiver, endpoint["secret"])
    assert sorted(receiver.ids()) == sorted(e["id"] for e in events)
    assert sorted(payloads, key=lambda p: p["id"]) == sorted(events, key=lambda e: e["id"])


async def test_a_forged_or_altered_delivery_does_not_verify(api: Api, receiver: Receiver) -> None:
    user = await register_user(api.client)
    endpoint = await create_webhook(api.client, user, receiver.url)
    await create_payment(api.client, user)
    await drain(api)
    [request] = receiver.requests
    verifier = Webhook(endpoint["secret"])
    verifier.verify(request.body, request.headers)
    altered = json.loads(request.body)
    altered["data"]["object"]["amount"] = 1
    with pytest.raises(WebhookVerificationError):
        verifier.verify(json.dumps(altered).encode(), request.headers)
    other = await create_webhook(api.client, user, receiver.url)
    with pytest.raises(WebhookVerificationError):
        Webhook(other["secret"]).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        verifier.verify(request.body, {**request.headers, "webhook-id": "evt_other"})


async def test_endpoints_get_only_the_events_they_subscribe_to(
    api: Api, receiver: Receiver
) -> None:
    user = await register_user(api.client)
    base = f"http://127.0.0.1:{receiver.port}"
    await create_webhook(api.client, user, f"{base}/completed", ["payment.completed"])
    await create_webhook(api.client, user, f"{base}/refunds", ["refund.created"])
    payment = await completed_payment(api.client, user)
    await api.client.post(f"/api/payments/{payment['id']}/refund", headers=user.headers)
    await drain(api)
    got = sorted((r.path, json.loads(r.body)["type"]) for r in receiver.requests)
    assert got == [("/completed", "payment.completed"), ("/refunds", "refund.created")]


async def test_redeliver_sends_the_event_again(api: Api, receiver: Receiver) -> None:
    user = await register_user(api.client)
    endpoint = await create_webhook(api.client, user, receiver.url)
    await create_payment(api.client, user)
    [event] = await list_events(api.client, user)
    await drain(api)
    assert receiver.ids() == [event["id"]]

    response = await api.client.post(f"/api/events/{event['id']}/redeliver", headers=user.headers)
    assert response.status_code == 202
    assert response.json() == {"id": event["id"], "queued": 1}
    await drain(api)
    assert receiver.ids() == [event["id"], event["id"]]
    assert verify_all(receiver, endpoint["secret"]) == [event, event]
    attempts = await list_attempts(api.client, user, endpoint["id"])
    assert [a["status"] for a in attempts] == ["succeeded", "succeeded"]


async def test_redeliver_reaches_an_endpoint_created_after_the_event(
    api: Api, receiver: Receiver
) -> None:
    user = await register_user(api.client)
    await create_payment(api.client, user)
    [event] = await list_events(api.client, user)
    await create_webhook(api.client, user, receiver.url)
    await drain(api)
    assert receiver.requests == []
    response = await api.client.post(f"/api/events/{event['id']}/redeliver", headers=user.headers)
    assert response.json()["queued"] == 1
    await drain(api)
    assert receiver.ids() == [event["id"]]


async def test_an_endpoint_failing_for_the_whole_window_is_disabled(
    api: Api, receiver: Receiver, clock: MovableClock
) -> None:
    receiver.statuses = [500] * 1000
    user = await register_user(api.client)
    endpoint = await create_webhook(api.client, user, receiver.url)
    await create_payment(api.client, user)
    [event] = await list_events(api.client, user)
    started = clock.now
    for _ in range(30):
        await drain(api)
        user = await login_again(api.client, user)
        listed = (await api.client.get("/api/webhooks", headers=user.headers)).json()["data"]
        if listed[0]["status"] == "disabled":
            break
        clock.advance(timedelta(hours=9))  # more than the longest backoff (8 h)
    else:
        raise AssertionError("the endpoint was never disabled")
    assert listed[0]["disabled_at"] is not None
    assert clock.now - started >= RETRY_WINDOW

    attempts = await list_attempts(api.client, user, endpoint["id"], limit=100)
    assert 8 <= len(attempts) <= 12
    assert {a["status"] for a in attempts} == {"failed"}
    assert [a["attempt"] for a in attempts] == list(range(len(attempts), 0, -1))
    assert len(receiver.requests) == len(attempts)

    # Nothing more goes to a disabled endpoint: neither new events nor redeliveries.
    await create_payment(api.client, user)
    response = await api.client.post(f"/api/events/{event['id']}/redeliver", headers=user.headers)
    assert response.status_code == 202
    assert response.json()["queued"] == 0
    clock.advance(timedelta(days=1))
    await drain(api)
    assert len(receiver.requests) == len(attempts)
    assert len(await list_events(api.client, await login_again(api.client, user))) == 2


async def test_a_success_within_the_window_keeps_the_endpoint_enabled(
    api: Api, receiver: Receiver, clock: MovableClock
) -> None:
    receiver.statuses = [500] * 6
    user = await register_user(api.client)
    await create_webhook(api.client, user, receiver.url)
    await create_payment(api.client, user)
    for _ in range(10):
        await drain(api)
        clock.advance(timedelta(hours=9))
    user = await login_again(api.client, user)
    listed = (await api.client.get("/api/webhooks", headers=user.headers)).json()["data"]
    assert listed[0]["status"] == "enabled"
    assert len(receiver.requests) == 7


async def test_an_address_that_turned_internal_is_refused_at_delivery(
    resolver_api: Any, receiver: Receiver, clock: MovableClock
) -> None:
    resolver = FakeResolver({"hooks.test": ["93.184.215.14"]})
    api: Api = await resolver_api(resolver, clock)  # private networks refused
    user = await register_user(api.client)
    endpoint = await create_webhook(api.client, user, f"http://hooks.test:{receiver.port}/in")
    resolver.answers["hooks.test"] = ["127.0.0.1"]  # DNS now points inside
    await create_payment(api.client, user)
    await drain(api)
    assert receiver.requests == []
    [attempt] = await list_attempts(api.client, user, endpoint["id"])
    assert attempt["status"] == "failed"
    assert attempt["response_status"] is None
    assert attempt["error"].startswith("refused:")
    assert "loopback" in attempt["error"]


async def test_delivery_connects_to_the_checked_address_with_the_host_name(
    resolver_api: Any, receiver: Receiver, clock: MovableClock
) -> None:
    # ::1 first: nothing listens there, so the next checked address is tried.
    resolver = FakeResolver({"hooks.test": ["::1", "127.0.0.1"]})
    api: Api = await resolver_api(resolver, clock, webhook_allow_private=True)
    user = await register_user(api.client)
    endpoint = await create_webhook(api.client, user, f"http://hooks.test:{receiver.port}/in")
    await create_payment(api.client, user)
    await drain(api)
    [request] = receiver.requests
    assert request.headers["host"] == f"hooks.test:{receiver.port}"
    assert request.path == "/in"
    verify_all(receiver, endpoint["secret"])


async def test_a_receiver_that_does_not_answer_in_time_is_a_failed_attempt(
    api: Api, receiver: Receiver, clock: MovableClock
) -> None:
    receiver.hold = True
    user = await register_user(api.client)
    endpoint = await create_webhook(api.client, user, receiver.url)
    await create_payment(api.client, user)
    impatient = WebhookDeliverer(
        api.container.db,
        Vault(api.container.settings.secrets.vault_keys),
        clock,
        require_https=False,
        allow_private=True,
        resolver=system_resolver,
        timeout=0.5,
    )
    try:
        assert await impatient.deliver_due() == 1
    finally:
        await impatient.aclose()
        receiver.release.set()
    [attempt] = await list_attempts(api.client, user, endpoint["id"])
    assert attempt["status"] == "failed"
    assert attempt["error"] == "timed out after 0.5 s"


async def test_a_killed_workers_claim_is_delivered_by_another_after_its_lease(
    api: Api, receiver: Receiver, clock: MovableClock
) -> None:
    receiver.hold = True
    user = await register_user(api.client)
    endpoint = await create_webhook(api.client, user, receiver.url)
    await create_payment(api.client, user)
    [event] = await list_events(api.client, user)

    doomed = asyncio.create_task(api.container.deliveries.deliver_due())
    await until(receiver.arrived.is_set)
    doomed.cancel()  # killed mid-request: the claim is committed, the outcome never recorded
    with pytest.raises(asyncio.CancelledError):
        await doomed
    receiver.hold = False
    receiver.release.set()

    await drain(api)
    assert len(receiver.requests) == 1  # the lease still holds
    clock.advance(timedelta(seconds=61))
    await drain(api)
    assert receiver.ids() == [event["id"], event["id"]]  # at least once
    verify_all(receiver, endpoint["secret"])
    user = await login_again(api.client, user)
    attempts = await list_attempts(api.client, user, endpoint["id"])
    assert [(a["attempt"], a["status"]) for a in attempts] == [(1, "succeeded")]
    clock.advance(timedelta(days=4))
    await drain(api)
    assert len(receiver.requests) == 2


async def test_attempts_are_paged_newest_first(
    api: Api, receiver: Receiver, clock: MovableClock
) -> None:
    user: User = await register_user(api.client)
    endpoint = await create_webhook(api.client, user, receiver.url)
    for _ in range(5):
        await create_payment(api.client, user)
    await drain(api)
    everything = await list_attempts(api.client, user, endpoint["id"], limit=100)
    assert len(everything) == 5
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (
            await api.client.get(
                f"/api/webhooks/{endpoint['id']}/deliveries", params=params, headers=user.headers
            )
        ).json()
        seen.extend(a["id"] for a in page["data"])
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert seen == [a["id"] for a in everything]
    stamps = [(a["created_at"], a["id"]) for a in everything]
    assert stamps == sorted(stamps, reverse=True)
