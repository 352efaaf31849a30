"""A login token's session is checked in the database on every request; the hot routes
(creating a payment, reading it, its status, processing it, refunding it, the profile) carry
that check in their first statement instead of a statement of its own (kassa.auth.sessions).

Each test here ends the session and then sends the request with its still-signed token: the
answer must be 401, and nothing may change — no payment moved, no refund, no charge at the
simulator, no Idempotency-Key claimed or replayed. The window that matters, a session
revoked after the token was verified and before the route reads, is forced by revoking it
from inside the token's verification.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from kassa.auth.deps import caller_checked_in_first_read
from kassa.auth.service import Principal
from kassa.auth.sessions import SessionCheck
from kassa.payments import repository as payments_repository
from tests.auth.test_sessions import second_session
from tests.conftest import (
    Api,
    User,
    completed_payment,
    create_payment,
    fetch_payment,
    payment_body,
    register_user,
)

ENDED = "The session has ended; log in again."
# The routes that take `CheckedInFirstRead`: each has its revoked-session test below. A route
# added to this set must pay the check in its first read and get a test here.
FOLDED = {
    ("GET", "/api/auth/profile"),
    ("POST", "/api/payments"),
    ("GET", "/api/payments/{payment_id}"),
    ("GET", "/api/payments/{payment_id}/status"),
    ("POST", "/api/payments/process"),
    ("POST", "/api/payments/{payment_id}/refund"),
}


def _assert_ended(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].lower().startswith("bearer")
    assert (response.json()["code"], response.json()["detail"]) == ("unauthorized", ENDED)
    # Every /api answer carries the limits' headers (the contract), whichever layer wrote it.
    for name in ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"):
        assert name in response.headers, (name, dict(response.headers))


async def _logout(api: Api, user: User) -> None:
    response = await api.client.post("/api/auth/logout", headers=user.headers)
    assert response.status_code == 204, response.text


async def _refunds(api: Api, user: User, payment_id: str) -> list[dict[str, Any]]:
    response = await api.client.get(f"/api/payments/{payment_id}/refunds", headers=user.headers)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def test_the_routes_that_check_the_session_in_their_first_read_are_these(api: Api) -> None:
    folded = set()
    app = api.client._transport.app  # type: ignore[attr-defined]
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute):
            continue
        calls = {d.call for d in route.dependant.dependencies}
        if caller_checked_in_first_read in calls:
            folded |= {(method, context.path) for method in context.methods or ()}
    assert folded == FOLDED


@pytest.mark.parametrize("path", ["", "/status"])
async def test_reading_a_payment_after_logout_is_401(api: Api, path: str) -> None:
    user = await register_user(api.client)
    payment = await create_payment(api.client, user)
    await _logout(api, user)
    response = await api.client.get(f"/api/payments/{payment['id']}{path}", headers=user.headers)
    _assert_ended(response)


@pytest.mark.parametrize("payment_id", [None, "not-an-id"])
async def test_an_unknown_or_malformed_payment_after_logout_is_401_not_404(
    api: Api, payment_id: str | None
) -> None:
    user = await register_user(api.client)
    await _logout(api, user)
    target = payment_id or str(uuid.uuid4())
    _assert_ended(await api.client.get(f"/api/payments/{target}", headers=user.headers))
    _assert_ended(
        await api.client.post(
            "/api/payments/process", json={"payment_id": target}, headers=user.headers
        )
    )
    _assert_ended(
        await api.client.post(f"/api/payments/{target}/refund", json={}, headers=user.headers)
    )


async def test_the_profile_after_logout_is_401_and_before_it_the_user(api: Api) -> None:
    user = await register_user(api.client)
    response = await api.client.get("/api/auth/profile", headers=user.headers)
    assert response.status_code == 200, response.text
    assert (response.json()["id"], response.json()["email"]) == (user.id, user.email)
    await _logout(api, user)
    _assert_ended(await api.client.get("/api/auth/profile", headers=user.headers))


@pytest.mark.parametrize("keyed", [False, True])
async def test_creating_after_logout_is_401_and_writes_nothing(api: Api, keyed: bool) -> None:
    user = await register_user(api.client)
    key = uuid.uuid4().hex
    headers = {**user.headers, "Idempotency-Key": key} if keyed else user.headers
    await _logout(api, user)
    _assert_ended(await api.client.post("/api/payments", json=payment_body(), headers=headers))
    fresh = await second_session(api, user)
    listed = await api.client.get("/api/payments", headers=fresh.headers)
    assert listed.status_code == 200, listed.text
    assert listed.json()["data"] == []
    if keyed:  # the key was not claimed: a new session may use it
        again = await api.client.post(
            "/api/payments", json=payment_body(), headers={**fresh.headers, "Idempotency-Key": key}
        )
        assert again.status_code == 201, again.text


@pytest.mark.parametrize("keyed", [False, True])
async def test_processing_after_logout_is_401_and_charges_nothing(api: Api, keyed: bool) -> None:
    user = await register_user(api.client)
    payment = await create_payment(api.client, user)
    key = uuid.uuid4().hex
    headers = {**user.headers, "Idempotency-Key": key} if keyed else user.headers
    await _logout(api, user)
    _assert_ended(
        await api.client.post(
            "/api/payments/process", json={"payment_id": payment["id"]}, headers=headers
        )
    )
    fresh = await second_session(api, user)
    assert (await fetch_payment(api.client, fresh, payment["id"]))["status"] == "pending"
    if keyed:  # the key was not claimed: a new session may use it for this payment
        again = await api.client.post(
            "/api/payments/process",
            json={"payment_id": payment["id"]},
            headers={**fresh.headers, "Idempotency-Key": key},
        )
        assert again.status_code == 200, again.text
        assert again.json()["status"] == "completed"


@pytest.mark.parametrize("keyed", [False, True])
async def test_refunding_after_logout_is_401_and_refunds_nothing(api: Api, keyed: bool) -> None:
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user)
    headers = {**user.headers, "Idempotency-Key": uuid.uuid4().hex} if keyed else user.headers
    await _logout(api, user)
    _assert_ended(
        await api.client.post(
            f"/api/payments/{payment['id']}/refund", json={"amount": 100}, headers=headers
        )
    )
    fresh = await second_session(api, user)
    after = await fetch_payment(api.client, fresh, payment["id"])
    assert (after["status"], after["amount_refunded"]) == ("completed", 0)
    assert await _refunds(api, fresh, payment["id"]) == []


@pytest.mark.parametrize("route", ["process", "refund", "capture"])
async def test_a_used_key_is_not_replayed_to_an_ended_session(api: Api, route: str) -> None:
    user = await register_user(api.client)
    key = uuid.uuid4().hex
    headers = {**user.headers, "Idempotency-Key": key}
    if route == "capture":
        payment = await create_payment(api.client, user, capture="manual")
        processed = await api.client.post(
            "/api/payments/process", json={"payment_id": payment["id"]}, headers=user.headers
        )
        assert processed.json()["status"] == "requires_capture", processed.text
        path, body = f"/api/payments/{payment['id']}/capture", {}
    elif route == "refund":
        payment = await completed_payment(api.client, user)
        path, body = f"/api/payments/{payment['id']}/refund", {"amount": 100}
    else:
        payment = await create_payment(api.client, user)
        path, body = "/api/payments/process", {"payment_id": payment["id"]}
    first = await api.client.post(path, json=body, headers=headers)
    assert first.status_code in (200, 201), first.text
    await _logout(api, user)
    _assert_ended(await api.client.post(path, json=body, headers=headers))


async def test_a_session_revoked_after_the_token_was_verified_is_refused_by_the_read(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race: the token's signature holds when the request arrives, and the session is
    revoked (a logout on another host) just before the route's first read. The read sees
    it: 401, and the payment never moves."""
    user = await register_user(api.client)
    payment = await create_payment(api.client, user)
    auth = api.container.auth
    verified: list[Principal] = []
    verify = auth.verify_token

    def verify_and_note(token: str) -> tuple[Principal, SessionCheck]:
        principal, check = verify(token)
        verified.append(principal)
        return principal, check

    read = payments_repository.find_payment_and_secret
    reads = 0

    async def revoke_then_read(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        await auth.logout(verified[-1])
        return await read(*args, **kwargs)

    async def no_statement_of_its_own(check: SessionCheck | None) -> None:
        raise AssertionError("the folded route paid its check with a statement of its own")

    monkeypatch.setattr(auth, "verify_token", verify_and_note)
    monkeypatch.setattr(auth, "confirm", no_statement_of_its_own)
    monkeypatch.setattr(payments_repository, "find_payment_and_secret", revoke_then_read)
    response = await api.client.post(
        "/api/payments/process", json={"payment_id": payment["id"]}, headers=user.headers
    )
    monkeypatch.undo()
    if api.container.db.writes_at_once:  # PostgreSQL: the one-statement start reads first
        assert reads == 1
        _assert_ended(response)
    fresh = await second_session(api, user)
    status = (await fetch_payment(api.client, fresh, payment["id"]))["status"]
    assert status == ("pending" if api.container.db.writes_at_once else "completed")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/payments/process", {"payment_id": 12}),
        ("/api/payments/{id}/refund", {"amount": "all of it"}),
        ("/api/payments", {"amount": -1}),
    ],
)
async def test_a_body_refused_before_the_first_read_is_401_when_the_session_has_ended(
    api: Api, path: str, body: dict[str, Any]
) -> None:
    """The body fails validation before any statement runs; the answer still waits for the
    session check, and an ended session is 401, not 422."""
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user)
    target = path.replace("{id}", payment["id"])
    refused = await api.client.post(target, json=body, headers=user.headers)
    assert refused.status_code == 422, refused.text
    await _logout(api, user)
    _assert_ended(await api.client.post(target, json=body, headers=user.headers))


@pytest.mark.parametrize("route", ["process", "refund"])
async def test_a_malformed_id_after_logout_keeps_nothing_under_the_key(
    api: Api, route: str
) -> None:
    user = await register_user(api.client)
    key = uuid.uuid4().hex
    path = "/api/payments/process" if route == "process" else "/api/payments/nope/refund"
    body = {"payment_id": "nope"} if route == "process" else {}
    await _logout(api, user)
    ended = await api.client.post(path, json=body, headers={**user.headers, "Idempotency-Key": key})
    _assert_ended(ended)
    fresh = await second_session(api, user)
    payment = await (
        create_payment(api.client, fresh)
        if route == "process"
        else completed_payment(api.client, fresh)
    )
    path = path.replace("nope", payment["id"])
    body = {"payment_id": payment["id"]} if route == "process" else {}
    used = await api.client.post(path, json=body, headers={**fresh.headers, "Idempotency-Key": key})
    assert used.status_code in (200, 201), used.text
