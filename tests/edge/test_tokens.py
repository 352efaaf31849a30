"""Bearer tokens at the edge: every bad token is a 401 — against a real server too — and none
of them spends the per-user budget of the user it names."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest

from kassa.auth.tokens import AUDIENCE, ISSUER
from tests.acceptance.conftest import Server, launch, stop
from tests.conftest import Api, User, register_user

TEST_SECRET = "test-secret-" + "x" * 40  # the key tests/conftest.py make_settings configures
PROFILE = "/api/auth/profile"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def forged_tokens(access_token: str, key: str) -> dict[str, str]:
    """Tokens naming the same user and session, each wrong in one way."""
    claims = claims_of(access_token)
    now = int(time.time())
    header, payload, signature = access_token.split(".")
    return {
        "other-key": jwt.encode(claims, "another-key-" + "y" * 40, algorithm="HS256"),
        "alg-none": b64(b'{"alg":"none","typ":"JWT"}') + "." + payload + ".",
        "alg-none-with-signature": b64(b'{"alg":"none","typ":"JWT"}') + f".{payload}.{signature}",
        "expired": jwt.encode(claims | {"iat": now - 7200, "exp": now - 60}, key, "HS256"),
        "wrong-audience": jwt.encode(claims | {"aud": "someone-else"}, key, "HS256"),
        "no-audience": jwt.encode(
            {k: v for k, v in claims.items() if k != "aud"}, key, algorithm="HS256"
        ),
        "wrong-issuer": jwt.encode(claims | {"iss": "someone-else"}, key, "HS256"),
        "refresh-as-access": jwt.encode(claims | {"typ": "refresh", "gen": 0}, key, "HS256"),
        "tampered": f"{header}.{b64(json.dumps(claims | {'exp': now + 10**6}).encode())}"
        f".{signature}",
        "truncated": access_token[:-5],
    }


def test_issued_tokens_name_kassa_as_issuer_and_audience() -> None:
    assert ISSUER == "kassa"
    assert AUDIENCE == "kassa-api"


async def test_bad_tokens_are_401_and_do_not_spend_the_users_budget(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(user_rate_limit="3/minute")
    user = await register_user(api.client)
    for name, token in forged_tokens(user.access_token, TEST_SECRET).items():
        response = await api.client.get(PROFILE, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, name
        assert response.json()["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    response = await api.client.get(PROFILE, headers=user.headers)
    assert response.status_code == 200
    assert response.headers["ratelimit-limit"] == "3"
    assert response.headers["ratelimit-remaining"] == "2"


async def test_a_logged_out_token_is_401_and_does_not_spend_the_users_budget(
    api_factory: Callable[..., Any],
) -> None:
    api: Api = await api_factory(user_rate_limit="3/minute")
    user = await register_user(api.client)
    # A second session of the same user, then ended.
    login = await api.client.post(
        "/api/auth/login", json={"email": user.email, "password": user.password}
    )
    ended = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert (await api.client.post("/api/auth/logout", headers=ended)).status_code == 204
    for _ in range(4):
        assert (await api.client.get(PROFILE, headers=ended)).status_code == 401
    response = await api.client.get(PROFILE, headers=user.headers)
    assert response.status_code == 200
    assert response.headers["ratelimit-remaining"] == "1"  # the logout and this request


async def test_a_reused_refresh_token_is_401_and_ends_the_session(api: Api) -> None:
    user = await register_user(api.client)
    first = await api.client.post("/api/auth/refresh", json={"refresh_token": user.refresh_token})
    assert first.status_code == 200
    reused = await api.client.post("/api/auth/refresh", json={"refresh_token": user.refresh_token})
    assert reused.status_code == 401
    rotated = first.json()
    after = await api.client.post(
        "/api/auth/refresh", json={"refresh_token": rotated["refresh_token"]}
    )
    assert after.status_code == 401
    profile = await api.client.get(
        PROFILE, headers={"Authorization": f"Bearer {rotated['access_token']}"}
    )
    assert profile.status_code == 401


# The same against a real server ----------------------------------------------------------


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = launch(
        tmp_path_factory.mktemp("tokens"), jwt_secret=TEST_SECRET, rate_limit="1000/minute"
    )
    yield server
    stop(server.process)


@pytest.fixture(scope="module")
def real_user(token_server: Server) -> User:
    email = f"edge-{time.time_ns()}@example.com"
    password = "correct horse battery staple"
    with token_server.client() as client:
        registered = client.post(
            "/api/auth/register", json={"name": "Edge", "email": email, "password": password}
        )
        assert registered.status_code == 201
        login = client.post("/api/auth/login", json={"email": email, "password": password})
    tokens = login.json()
    return User(
        registered.json()["id"], email, password, tokens["access_token"], tokens["refresh_token"]
    )


@pytest.mark.acceptance
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "kind",
    [
        "other-key",
        "alg-none",
        "alg-none-with-signature",
        "expired",
        "wrong-audience",
        "no-audience",
        "wrong-issuer",
        "refresh-as-access",
        "tampered",
        "truncated",
    ],
)
def test_a_real_server_refuses_a_bad_token(
    token_server: Server, real_user: User, kind: str
) -> None:
    token = forged_tokens(real_user.access_token, TEST_SECRET)[kind]
    response = httpx.get(
        token_server.base_url + PROFILE, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert token not in response.text
    assert httpx.get(token_server.base_url + PROFILE, headers=real_user.headers).status_code == 200


@pytest.mark.acceptance
@pytest.mark.timeout(300)
def test_a_real_server_refuses_a_reused_refresh_token(token_server: Server) -> None:
    email = f"refresh-{time.time_ns()}@example.com"
    password = "correct horse battery staple"
    with token_server.client() as client:
        client.post("/api/auth/register", json={"name": "R", "email": email, "password": password})
        tokens = client.post("/api/auth/login", json={"email": email, "password": password}).json()
        spent = tokens["refresh_token"]
        rotated = client.post("/api/auth/refresh", json={"refresh_token": spent})
        assert rotated.status_code == 200
        reused = client.post("/api/auth/refresh", json={"refresh_token": spent})
        assert reused.status_code == 401
        revoked = client.post(
            "/api/auth/refresh", json={"refresh_token": rotated.json()["refresh_token"]}
        )
        assert revoked.status_code == 401
