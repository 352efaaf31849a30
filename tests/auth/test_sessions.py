"""Sessions: refresh-token rotation and reuse detection, logout, and password changes."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import jwt
import pytest

from tests.auth.test_register_login import assert_problem, assert_validation_error
from tests.conftest import Api, User, register_user

NEW_PASSWORD = "a brand new passphrase"


async def refresh(api: Api, refresh_token: str) -> httpx.Response:
    return await api.client.post("/api/auth/refresh", json={"refresh_token": refresh_token})


async def profile_status(api: Api, access_token: str) -> int:
    response = await api.client.get(
        "/api/auth/profile", headers={"Authorization": f"Bearer {access_token}"}
    )
    return response.status_code


async def second_session(api: Api, user: User) -> User:
    response = await api.client.post(
        "/api/auth/login", json={"email": user.email, "password": user.password}
    )
    assert response.status_code == 200, response.text
    tokens = response.json()
    return User(user.id, user.email, user.password, tokens["access_token"], tokens["refresh_token"])


async def change_password(api: Api, user: User, current: str, new: str) -> httpx.Response:
    return await api.client.post(
        "/api/auth/password",
        json={"current_password": current, "new_password": new},
        headers=user.headers,
    )


# refresh ---------------------------------------------------------------------------------


async def test_refresh_returns_new_tokens(api: Api) -> None:
    user = await register_user(api.client)
    response = await refresh(api, user.refresh_token)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] > 0
    assert body["refresh_token"] != user.refresh_token
    assert body["access_token"] != user.access_token
    assert await profile_status(api, body["access_token"]) == 200


async def test_refreshed_refresh_token_can_be_rotated_again(api: Api) -> None:
    user = await register_user(api.client)
    token = user.refresh_token
    for _ in range(3):
        response = await refresh(api, token)
        assert response.status_code == 200, response.text
        token = response.json()["refresh_token"]


async def test_old_refresh_token_stops_working_after_refresh(api: Api) -> None:
    user = await register_user(api.client)
    assert (await refresh(api, user.refresh_token)).status_code == 200
    response = await refresh(api, user.refresh_token)
    assert_problem(response, 401, "invalid_refresh_token")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_reusing_a_spent_refresh_token_revokes_the_whole_session(api: Api) -> None:
    user = await register_user(api.client)
    rotated = (await refresh(api, user.refresh_token)).json()
    assert (await refresh(api, user.refresh_token)).status_code == 401  # the replay
    # Every token of that session is dead: the newest refresh token and both access tokens.
    assert (await refresh(api, rotated["refresh_token"])).status_code == 401
    assert await profile_status(api, rotated["access_token"]) == 401
    assert await profile_status(api, user.access_token) == 401


async def test_refresh_token_reuse_leaves_other_sessions_alone(api: Api) -> None:
    user = await register_user(api.client)
    other = await second_session(api, user)
    await refresh(api, user.refresh_token)
    await refresh(api, user.refresh_token)  # reuse ends the first session only
    assert await profile_status(api, other.access_token) == 200
    assert (await refresh(api, other.refresh_token)).status_code == 200


async def test_concurrent_refreshes_of_one_token_let_at_most_one_succeed(api: Api) -> None:
    user = await register_user(api.client)
    responses = await asyncio.gather(*(refresh(api, user.refresh_token) for _ in range(5)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) <= 1, statuses
    assert set(statuses) <= {200, 401}


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "x" * 4096])
async def test_refresh_with_garbage_token_is_401(api: Api, token: str) -> None:
    assert_problem(await refresh(api, token), 401, "invalid_refresh_token")


async def test_refresh_with_token_signed_by_another_key_is_401(api: Api) -> None:
    user = await register_user(api.client)
    claims = jwt.decode(user.refresh_token, options={"verify_signature": False})
    forged = jwt.encode(claims, "another-key-" + "y" * 40, algorithm="HS256")
    assert_problem(await refresh(api, forged), 401, "invalid_refresh_token")
    assert (await refresh(api, user.refresh_token)).status_code == 200


@pytest.mark.parametrize(
    "body", [{}, {"refresh_token": ""}, {"refresh_token": 5}, {"refresh_token": "t", "x": 1}]
)
async def test_refresh_with_invalid_body_is_422(api: Api, body: dict[str, Any]) -> None:
    response = await api.client.post("/api/auth/refresh", json=body)
    assert_validation_error(response)


# logout ----------------------------------------------------------------------------------


async def test_logout_is_204_with_no_body(api: Api) -> None:
    user = await register_user(api.client)
    response = await api.client.post("/api/auth/logout", headers=user.headers)
    assert response.status_code == 204
    assert response.content == b""


async def test_logout_ends_that_sessions_access_and_refresh_tokens(api: Api) -> None:
    user = await register_user(api.client)
    await api.client.post("/api/auth/logout", headers=user.headers)
    assert await profile_status(api, user.access_token) == 401
    assert_problem(await refresh(api, user.refresh_token), 401, "invalid_refresh_token")


async def test_logout_leaves_the_users_other_sessions_working(api: Api) -> None:
    user = await register_user(api.client)
    other = await second_session(api, user)
    await api.client.post("/api/auth/logout", headers=user.headers)
    assert await profile_status(api, other.access_token) == 200
    assert (await refresh(api, other.refresh_token)).status_code == 200


async def test_logout_twice_is_401_the_second_time(api: Api) -> None:
    user = await register_user(api.client)
    assert (await api.client.post("/api/auth/logout", headers=user.headers)).status_code == 204
    response = await api.client.post("/api/auth/logout", headers=user.headers)
    assert_problem(response, 401, "unauthorized")


async def test_logout_without_token_is_401(api: Api) -> None:
    response = await api.client.post("/api/auth/logout")
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_logged_out_user_can_log_in_again(api: Api) -> None:
    user = await register_user(api.client)
    await api.client.post("/api/auth/logout", headers=user.headers)
    again = await second_session(api, user)
    assert await profile_status(api, again.access_token) == 200


# password --------------------------------------------------------------------------------


async def test_password_change_is_204(api: Api) -> None:
    user = await register_user(api.client)
    response = await change_password(api, user, user.password, NEW_PASSWORD)
    assert response.status_code == 204, response.text
    assert response.content == b""


async def test_password_change_keeps_the_current_session(api: Api) -> None:
    user = await register_user(api.client)
    await change_password(api, user, user.password, NEW_PASSWORD)
    assert await profile_status(api, user.access_token) == 200
    assert (await refresh(api, user.refresh_token)).status_code == 200


async def test_password_change_revokes_every_other_session(api: Api) -> None:
    user = await register_user(api.client)
    others = [await second_session(api, user) for _ in range(2)]
    await change_password(api, user, user.password, NEW_PASSWORD)
    for other in others:
        assert await profile_status(api, other.access_token) == 401
        assert (await refresh(api, other.refresh_token)).status_code == 401


async def test_password_change_does_not_touch_another_users_sessions(api: Api) -> None:
    user = await register_user(api.client)
    stranger = await register_user(api.client)
    await change_password(api, user, user.password, NEW_PASSWORD)
    assert await profile_status(api, stranger.access_token) == 200


async def test_new_password_logs_in_and_old_does_not(api: Api) -> None:
    user = await register_user(api.client)
    await change_password(api, user, user.password, NEW_PASSWORD)
    new = await api.client.post(
        "/api/auth/login", json={"email": user.email, "password": NEW_PASSWORD}
    )
    assert new.status_code == 200, new.text
    old = await api.client.post(
        "/api/auth/login", json={"email": user.email, "password": user.password}
    )
    assert_problem(old, 401, "invalid_credentials")


async def test_password_change_with_wrong_current_password_is_401(api: Api) -> None:
    user = await register_user(api.client)
    other = await second_session(api, user)
    response = await change_password(api, user, "not my password!", NEW_PASSWORD)
    assert_problem(response, 401, "invalid_credentials")
    # Nothing changed: the old password works and the other session lives.
    assert await profile_status(api, other.access_token) == 200
    relogin = await api.client.post(
        "/api/auth/login", json={"email": user.email, "password": user.password}
    )
    assert relogin.status_code == 200


@pytest.mark.parametrize("length", [11, 1025])
async def test_password_change_to_wrong_length_is_422(api: Api, length: int) -> None:
    user = await register_user(api.client)
    response = await change_password(api, user, user.password, "n" * length)
    assert_validation_error(response, "new_password")
    assert (
        await api.client.post(
            "/api/auth/login", json={"email": user.email, "password": user.password}
        )
    ).status_code == 200


async def test_password_change_with_unknown_field_is_422(api: Api) -> None:
    user = await register_user(api.client)
    response = await api.client.post(
        "/api/auth/password",
        json={"current_password": user.password, "new_password": NEW_PASSWORD, "user_id": "x"},
        headers=user.headers,
    )
    assert_validation_error(response, "user_id")


async def test_password_change_without_token_is_401(api: Api) -> None:
    response = await api.client.post(
        "/api/auth/password",
        json={"current_password": "whatever password", "new_password": NEW_PASSWORD},
    )
    assert_problem(response, 401, "unauthorized")
