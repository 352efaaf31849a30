"""What a request made with an API key costs on the wire (tests/wirecount.py), against the same
request with a login token: the key is verified by one statement of its own (the token's
session check rides in the route's first read), and all of the request's limits are one
Redis call (the key's own)."""

from __future__ import annotations

import pytest

from tests.apikeys.keys import create_key
from tests.conftest import payment_body, register_user
from tests.test_round_trips import Wire, postgres_of_its_own, wire

__all__ = ["postgres_of_its_own", "wire"]  # the fixtures, shared with tests/test_round_trips

pytestmark = pytest.mark.postgres


async def test_a_key_request_costs_one_redis_call_and_one_round_trip_for_its_key(
    wire: Wire,
) -> None:
    user = await register_user(wire.client)
    key = await create_key(wire.client, user)
    created = await wire.client.post("/api/payments", json=payment_body(), headers=key.headers)
    assert created.status_code == 201
    path = f"/api/payments/{created.json()['id']}"
    for headers in (key.headers, user.headers):  # warm-up: statements prepared
        assert (await wire.client.get(path, headers=headers)).status_code == 200

    with_key, key_trips, key_calls = await wire.cost(wire.client.get(path, headers=key.headers))
    with_token, token_trips, token_calls = await wire.cost(
        wire.client.get(path, headers=user.headers)
    )
    assert with_key.status_code == with_token.status_code == 200
    assert key_calls == 1, "a key's request counts in its own limit alone"
    assert token_calls == 1  # the IP's and the user's limits, in one script
    # A key is looked up before the limits (its scopes, mode and user decide them); a login
    # token's session is checked in the payment's read itself.
    assert (key_trips, token_trips) == (2, 1)
