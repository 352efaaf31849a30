"""Bearer tokens on the profile route: what opens it, and every way a token is refused."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from tests.auth.test_register_login import assert_problem
from tests.conftest import Api, User, register_user

TEST_SECRET = "test-secret-" + "x" * 40  # the key tests/conftest.py make_settings configures


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def forge(user: User, key: str = TEST_SECRET, algorithm: str = "HS256", **changes: Any) -> str:
    """The user's own access token with some claims changed (None removes one), re-signed."""
    claims = claims_of(user.access_token)
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return jwt.encode(claims, key, algorithm=algorithm)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def profile(api: Api, authorization: str | None) -> httpx.Response:
    headers = {} if authorization is None else {"Authorization": authorization}
    return await api.client.get("/api/auth/profile", headers=headers)


def assert_unauthorized(response: httpx.Response) -> None:
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_profile_returns_the_user(api: Api) -> None:
    user = await register_user(api.client)
    response = await profile(api, f"Bearer {user.access_token}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"id", "name", "email", "created_at"}
    assert body["id"] == user.id
    assert body["email"] == user.email
    assert body["name"] == "Test User"


async def test_profile_accepts_the_scheme_in_any_letter_case(api: Api) -> None:
    user = await register_user(api.client)
    response = await profile(api, f"bearer {user.access_token}")
    assert response.status_code == 200, response.text


async def test_access_token_carries_pinned_algorithm_and_required_claims(api: Api) -> None:
    user = await register_user(api.client)
    header = jwt.get_unverified_header(user.access_token)
    assert header["alg"] == "HS256"
    claims = jwt.decode(
        user.access_token,
        TEST_SECRET,
        algorithms=["HS256"],
        audience=claims_of(user.access_token)["aud"],
    )
    assert {"exp", "iat", "sub"} <= claims.keys()
    assert claims["sub"] == user.id
    assert claims["exp"] > claims["iat"]
    assert "password" not in json.dumps(claims)


async def test_profile_without_authorization_header_is_401(api: Api) -> None:
    assert_unauthorized(await profile(api, None))


@pytest.mark.parametrize("scheme", ["Basic", "Token", "Digest"])
async def test_profile_with_non_bearer_scheme_is_401(api: Api, scheme: str) -> None:
    user = await register_user(api.client)
    assert_unauthorized(await profile(api, f"{scheme} {user.access_token}"))


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer ", "Bearer garbage", "Bearer a.b.c", "Bearer " + "x" * 5000, "garbage"],
)
async def test_profile_with_garbage_token_is_401(api: Api, authorization: str) -> None:
    assert_unauthorized(await profile(api, authorization))


async def test_profile_token_signed_with_another_key_is_401(api: Api) -> None:
    user = await register_user(api.client)
    assert_unauthorized(await profile(api, f"Bearer {forge(user, key='another-key-' + 'y' * 40)}"))


async def test_profile_token_with_alg_none_is_401(api: Api) -> None:
    user = await register_user(api.client)
    claims = claims_of(user.access_token)
    unsigned = b64(b'{"alg":"none","typ":"JWT"}') + "." + b64(json.dumps(claims).encode()) + "."
    assert_unauthorized(await profile(api, f"Bearer {unsigned}"))


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_profile_token_with_another_hmac_algorithm_is_401(api: Api) -> None:
    user = await register_user(api.client)
    assert_unauthorized(await profile(api, f"Bearer {forge(user, algorithm='HS512')}"))


async def test_profile_with_tampered_payload_is_401(api: Api) -> None:
    user = await register_user(api.client)
    other = await register_user(api.client)
    header, _, signature = user.access_token.split(".")
    claims = claims_of(user.access_token) | {"sub": other.id}
    tampered = f"{header}.{b64(json.dumps(claims).encode())}.{signature}"
    assert_unauthorized(await profile(api, f"Bearer {tampered}"))


async def test_profile_expired_token_is_401(api: Api) -> None:
    user = await register_user(api.client)
    now = int(time.time())
    token = forge(user, iat=now - 3600, exp=now - 60)
    assert_unauthorized(await profile(api, f"Bearer {token}"))


async def test_profile_token_issued_in_the_future_is_401(api: Api) -> None:
    user = await register_user(api.client)
    now = int(time.time())
    token = forge(user, iat=now + 3600, exp=now + 7200)
    assert_unauthorized(await profile(api, f"Bearer {token}"))


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "someone-else"},
        {"iss": "someone-else"},
        {"aud": None},
        {"iss": None},
        {"exp": None},
        {"iat": None},
        {"sub": None},
        {"sid": None},
        {"sub": "not-a-uuid"},
        {"exp": "tomorrow"},
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()),
)
async def test_profile_token_with_wrong_or_missing_claim_is_401(
    api: Api, changes: dict[str, Any]
) -> None:
    user = await register_user(api.client)
    assert_unauthorized(await profile(api, f"Bearer {forge(user, **changes)}"))


async def test_profile_correctly_signed_token_for_unknown_session_is_401(api: Api) -> None:
    user = await register_user(api.client)
    token = forge(user, sid=str(uuid.uuid4()))
    assert_unauthorized(await profile(api, f"Bearer {token}"))


async def test_profile_token_naming_another_user_of_the_session_is_401(api: Api) -> None:
    user = await register_user(api.client)
    other = await register_user(api.client)
    token = forge(user, sub=other.id)
    assert_unauthorized(await profile(api, f"Bearer {token}"))


async def test_refresh_token_used_as_access_token_is_401(api: Api) -> None:
    user = await register_user(api.client)
    assert_unauthorized(await profile(api, f"Bearer {user.refresh_token}"))


async def test_access_token_used_as_refresh_token_is_401(api: Api) -> None:
    user = await register_user(api.client)
    response = await api.client.post("/api/auth/refresh", json={"refresh_token": user.access_token})
    assert_problem(response, 401, "invalid_refresh_token")


async def test_unauthorized_problem_never_echoes_the_token(api: Api) -> None:
    user = await register_user(api.client)
    token = forge(user, key="another-key-" + "y" * 40)
    response = await profile(api, f"Bearer {token}")
    assert response.status_code == 401
    assert token not in response.text
    assert TEST_SECRET not in response.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/auth/profile"),
        ("POST", "/api/auth/logout"),
        ("POST", "/api/auth/password"),
        ("GET", "/api/transactions"),
        ("POST", "/api/payments"),
    ],
)
async def test_routes_other_than_register_and_login_need_a_bearer_token(
    api: Api, method: str, path: str
) -> None:
    response = await api.client.request(method, path)
    assert_unauthorized(response)


class Clock:
    """A settable clock for the app (the tokens are judged by the clock that issued them)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_tokens_are_judged_by_the_injected_clock(api_factory: Any) -> None:
    clock = Clock(datetime(2030, 1, 1, 12, tzinfo=UTC))
    api: Api = await api_factory(clock=clock)
    user = await register_user(api.client)
    assert (await profile(api, f"Bearer {user.access_token}")).status_code == 200
    assert claims_of(user.access_token)["iat"] == int(clock.now.timestamp())


async def test_access_token_expires_after_its_ttl(api_factory: Any) -> None:
    clock = Clock(datetime.now(UTC))
    api: Api = await api_factory(clock=clock, access_token_ttl_seconds=60)
    user = await register_user(api.client)
    claims = claims_of(user.access_token)
    assert claims["exp"] - claims["iat"] == 60
    clock.now += timedelta(seconds=59)
    assert (await profile(api, f"Bearer {user.access_token}")).status_code == 200
    clock.now += timedelta(seconds=1)
    assert_unauthorized(await profile(api, f"Bearer {user.access_token}"))


# The codec remembers tokens that verified; the time still decides on every use.


def _codec() -> Any:
    from kassa.auth.tokens import TokenCodec

    return TokenCodec(
        TEST_SECRET.encode(), access_ttl=timedelta(minutes=15), refresh_ttl=timedelta(days=7)
    )


def test_a_token_that_verified_is_not_verified_again(monkeypatch: pytest.MonkeyPatch) -> None:
    codec = _codec()
    now = datetime.now(UTC)
    token = codec.issue("access", user_id=uuid.uuid4(), session_id=uuid.uuid4(), now=now)
    calls = 0
    real_decode = jwt.decode

    def counting_decode(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)
    first = codec.decode(token, "access", now=now)
    second = codec.decode(token, "access", now=now + timedelta(seconds=5))
    assert first == second
    assert calls == 1


def test_a_remembered_token_still_expires_and_keeps_its_type() -> None:
    from kassa.auth.tokens import InvalidToken

    codec = _codec()
    now = datetime.now(UTC)
    token = codec.issue("access", user_id=uuid.uuid4(), session_id=uuid.uuid4(), now=now)
    codec.decode(token, "access", now=now)
    with pytest.raises(InvalidToken):
        codec.decode(token, "access", now=now + timedelta(minutes=15))
    with pytest.raises(InvalidToken):
        codec.decode(token, "refresh", now=now)
    with pytest.raises(InvalidToken):  # issued in the future, past the leeway
        codec.decode(token, "access", now=now - timedelta(minutes=5))


def test_a_bad_token_is_checked_afresh_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from kassa.auth.tokens import InvalidToken

    codec = _codec()
    now = datetime.now(UTC)
    token = codec.issue("access", user_id=uuid.uuid4(), session_id=uuid.uuid4(), now=now)
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    calls = 0
    real_decode = jwt.decode

    def counting_decode(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)
    for _ in range(2):
        with pytest.raises(InvalidToken):
            codec.decode(forged, "access", now=now)
    assert calls == 2
