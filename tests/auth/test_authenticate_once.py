"""A request's bearer token is verified once, before the rate limits; the user limit, the
Idempotency-Key claim and the route all read that one outcome, and 401s read as before."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from kassa.auth.service import Principal
from kassa.auth.sessions import SessionCheck
from tests.conftest import Api, payment_body, register_user


@pytest.fixture
def authentications(api: Api, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token the auth service is asked to verify, in order."""
    seen: list[str] = []
    verify = api.container.auth.verify_token

    def spy(token: str) -> tuple[Principal, SessionCheck]:
        seen.append(token)
        return verify(token)

    monkeypatch.setattr(api.container.auth, "verify_token", spy)
    return seen


def _keyed(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Idempotency-Key": uuid.uuid4().hex}


def _assert_401(response: Any, detail: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["www-authenticate"].lower().startswith("bearer")
    problem = response.json()
    assert (problem["code"], problem["detail"]) == ("unauthorized", detail)


async def test_a_keyed_payment_verifies_its_token_once(
    api: Api, authentications: list[str]
) -> None:
    user = await register_user(api.client)
    authentications.clear()
    response = await api.client.post(
        "/api/payments", json=payment_body(), headers=_keyed(user.headers)
    )
    assert response.status_code == 201, response.text
    assert authentications == [user.access_token]


async def test_a_refused_token_is_verified_once_and_answered_401(
    api: Api, authentications: list[str]
) -> None:
    forged = "not-a-token"
    response = await api.client.post(
        "/api/payments", json=payment_body(), headers=_keyed({"Authorization": f"Bearer {forged}"})
    )
    _assert_401(response, "The bearer token is invalid or expired.")
    assert authentications == [forged]


async def test_an_ended_session_is_verified_once_and_answered_401(
    api: Api, authentications: list[str]
) -> None:
    user = await register_user(api.client)
    assert (await api.client.post("/api/auth/logout", headers=user.headers)).status_code == 204
    authentications.clear()
    response = await api.client.get(f"/api/payments/{uuid.uuid4()}", headers=user.headers)
    _assert_401(response, "The session has ended; log in again.")
    assert authentications == [user.access_token]


async def test_no_token_is_401_without_verifying_anything(
    api: Api, authentications: list[str]
) -> None:
    response = await api.client.get("/api/transactions")
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "unauthorized"
    assert authentications == []
