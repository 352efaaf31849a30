"""API keys across two `kassa serve` processes over one database and one Redis: a key revoked
through one is refused by the other on its very next request (no process keeps a key it
verified), and a key's limit is one count shared by both."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.acceptance.conftest import Server
from tests.conftest import TEST_VAULT_KEY
from tests.edge.conftest import _pg_reachable, _unavailable

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(300)]

PASSWORD = "correct horse battery staple"
JWT_SECRET = "served-keys-secret-" + "q7Zr2" * 8


@pytest.fixture(params=["sqlite", "postgres"])
def shared_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        shared = tmp_path / "shared"
        shared.mkdir()
        return f"sqlite+aiosqlite:///{shared / 'kassa.db'}"
    if not _pg_reachable():
        _unavailable("PostgreSQL is not reachable")
    url: str = request.getfixturevalue("empty_pg_url")
    return url


def _two(
    serve: Callable[..., Server], database_url: str, redis: tuple[str, str], **settings: str
) -> tuple[Server, Server]:
    url, prefix = redis
    common = {
        # Hosts of one deployment share their secrets (the key hash is keyed by them).
        "jwt_secret": JWT_SECRET,
        "vault_keys": TEST_VAULT_KEY,
        "database_url": database_url,
        "redis_url": url,
        "redis_key_prefix": prefix,
        "redis_timeout_ms": "1000",
        **settings,
    }
    return serve(**common), serve(**common)


def _login_headers(server: Server, email: str) -> dict[str, str]:
    body = {"name": "Merchant", "email": email, "password": PASSWORD}
    assert httpx.post(server.base_url + "/api/auth/register", json=body).status_code == 201
    login = httpx.post(
        server.base_url + "/api/auth/login", json={"email": email, "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def _key(server: Server, headers: dict[str, str], mode: str = "test") -> tuple[str, str]:
    created = httpx.post(
        server.base_url + "/api/keys", json={"name": "backend", "mode": mode}, headers=headers
    )
    assert created.status_code == 201, created.text
    return created.json()["id"], created.json()["secret"]


def test_a_key_revoked_on_one_server_is_refused_by_the_other_at_once(
    serve: Callable[..., Server],
    shared_database: str,
    shared_redis_url: tuple[str, str],
) -> None:
    first, second = _two(serve, shared_database, shared_redis_url)
    login = _login_headers(first, f"revoke-{shared_redis_url[1]}@example.com")
    key_id, secret = _key(first, login)
    with_key = {"Authorization": f"Bearer {secret}"}
    for server in (first, second, first, second):
        response = httpx.get(server.base_url + "/api/transactions", headers=with_key)
        assert response.status_code == 200, response.text

    revoked = httpx.delete(f"{first.base_url}/api/keys/{key_id}", headers=login)
    assert revoked.status_code == 204
    for server in (second, first):
        refused = httpx.get(server.base_url + "/api/transactions", headers=with_key)
        assert refused.status_code == 401, refused.text
        assert refused.json()["code"] == "unauthorized"
    # The secret appears in no log line of either server.
    for server in (first, second):
        assert secret not in server.stdout()
        assert secret not in server.stderr()


def test_two_servers_share_one_per_key_limit_through_redis(
    serve: Callable[..., Server],
    shared_database: str,
    shared_redis_url: tuple[str, str],
) -> None:
    first, second = _two(serve, shared_database, shared_redis_url, key_rate_limit_live="4/minute")
    login = _login_headers(first, f"limit-{shared_redis_url[1]}@example.com")
    _, secret = _key(first, login, mode="live")
    with_key = {"Authorization": f"Bearer {secret}"}
    answers = [
        httpx.get(server.base_url + "/api/transactions", headers=with_key)
        for server in (first, second, first, second)
    ]
    assert [r.status_code for r in answers] == [200] * 4
    assert [r.headers["ratelimit-remaining"] for r in answers] == ["3", "2", "1", "0"]
    for server in (second, first):
        over = httpx.get(server.base_url + "/api/transactions", headers=with_key)
        assert over.status_code == 429
        assert over.json()["code"] == "rate_limited"
        assert "retry-after" in over.headers
