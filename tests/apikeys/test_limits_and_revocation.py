"""Per-key limits and revocation under load.

A request made with a key counts against that key alone, at its mode's rate, with the same
RateLimit-* headers and 429 problem as every limit; it spends neither the client IP's budget
nor the user's. A revoke that has answered is final: no request sent after it succeeds, however
many run with the key meanwhile."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.apikeys.keys import create_key
from tests.conftest import Api, payment_body, register_user


async def test_each_key_has_its_own_limit_by_mode_and_spends_no_ip_budget(
    api_factory: Any,
) -> None:
    api: Api = await api_factory(
        rate_limit="5/minute", key_rate_limit_test="3/minute", key_rate_limit_live="4/minute"
    )
    user = await register_user(api.client)  # register and login: 2 of the IP's 5
    test_key = await create_key(api.client, user)  # 3
    live_key = await create_key(api.client, user, mode="live")  # 4

    answers = [await api.client.get("/api/transactions", headers=test_key.headers) for _ in "xyz"]
    assert [r.status_code for r in answers] == [200] * 3
    assert [r.headers["ratelimit-limit"] for r in answers] == ["3"] * 3
    assert [r.headers["ratelimit-remaining"] for r in answers] == ["2", "1", "0"]
    over = await api.client.get("/api/transactions", headers=test_key.headers)
    assert over.status_code == 429
    assert over.headers["content-type"].startswith("application/problem+json")
    assert over.json()["code"] == "rate_limited"
    assert 1 <= int(over.headers["retry-after"]) <= 60
    assert over.headers["ratelimit-remaining"] == "0"

    # Another key of the same user, live: its own count, at the live rate.
    live = [await api.client.get("/api/transactions", headers=live_key.headers) for _ in "wxyz"]
    assert [r.status_code for r in live] == [200] * 4
    assert live[0].headers["ratelimit-limit"] == "4"
    assert (await api.client.get("/api/transactions", headers=live_key.headers)).status_code == 429

    # Nine key requests later, the IP has spent 4 of its 5: one more, then 429.
    assert (await api.client.get("/api/transactions")).status_code == 401
    refused = await api.client.get("/api/transactions")
    assert refused.status_code == 429


async def test_a_refused_key_spends_the_ip_budget(api_factory: Any) -> None:
    """Guessing keys is limited like any unauthenticated request: per IP."""
    api: Api = await api_factory(rate_limit="3/minute")
    guesses = [
        await api.client.get("/api/transactions", headers={"Authorization": f"Bearer sk_test_{i}"})
        for i in range(4)
    ]
    assert [r.status_code for r in guesses] == [401, 401, 401, 429]


async def test_no_request_sent_after_a_revoke_answered_succeeds(api_factory: Any) -> None:
    api: Api = await api_factory(key_rate_limit_test="100000/second")
    user = await register_user(api.client)
    key = await create_key(api.client, user)
    sent: list[tuple[float, int, str]] = []
    answered: list[float] = []  # when the revoke answered
    warmed, enough_after, stop = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def hammer(index: int) -> None:
        while not stop.is_set():
            started = time.monotonic()
            if index % 2:
                response = await api.client.get("/api/transactions", headers=key.headers)
            else:
                response = await api.client.post(
                    "/api/payments", json=payment_body(), headers=key.headers
                )
            sent.append((started, response.status_code, response.text))
            if sum(1 for _, status, _ in sent if status in {200, 201}) >= 20:
                warmed.set()
            if answered and sum(1 for at, _, _ in sent if at > answered[0]) >= 40:
                enough_after.set()

    workers = [asyncio.create_task(hammer(i)) for i in range(20)]
    await asyncio.wait_for(warmed.wait(), 60)
    revoked = await api.client.delete(f"/api/keys/{key.id}", headers=user.headers)
    assert revoked.status_code == 204
    answered.append(time.monotonic())
    await asyncio.wait_for(enough_after.wait(), 60)
    stop.set()
    await asyncio.gather(*workers)

    after = [(status, text) for started, status, text in sent if started > answered[0]]
    assert len(after) >= 40
    assert {status for status, _ in after} == {401}, after[:3]
    before = [status for started, status, _ in sent if started <= answered[0]]
    assert set(before) <= {200, 201, 401}


async def test_login_keeps_the_ip_limit_even_with_a_key_in_the_request(api_factory: Any) -> None:
    api: Api = await api_factory(rate_limit="4/minute", key_rate_limit_test="1000/minute")
    user = await register_user(api.client)  # 2 of the IP's 4
    key = await create_key(api.client, user)  # 3
    login = {"email": user.email, "password": user.password}
    answers = [
        await api.client.post("/api/auth/login", json=login, headers=key.headers) for _ in "xy"
    ]
    assert [r.status_code for r in answers] == [200, 429]
    assert answers[1].json()["code"] == "rate_limited"
