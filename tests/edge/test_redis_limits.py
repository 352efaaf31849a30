"""Rate limits kept in Redis, with real `kassa serve` processes: two servers share one count,
and an outage of Redis neither stops the service nor ends limiting for good."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.acceptance.conftest import Server
from tests.edge.conftest import OwnRedis

# Real server processes (two, some of them) on a possibly busy machine.
pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(300)]

LIMITED_PATH = "/api/auth/profile"  # answers 401 without a token, still rate limited
PASSWORD = "correct horse battery staple"


def get(server: Server, path: str = LIMITED_PATH, **kwargs: object) -> httpx.Response:
    return httpx.get(server.base_url + path, timeout=10.0, **kwargs)  # type: ignore[arg-type]


def log_events(server: Server) -> list[dict[str, object]]:
    return [json.loads(line) for line in server.stdout().splitlines() if line.strip()]


def metric(server: Server, name: str, labels: str) -> float:
    text = get(server, "/metrics").text
    for line in text.splitlines():
        series = f"{name}{{{labels}}}" if labels else name
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def two_servers(
    serve: Callable[..., Server], tmp_path: Path, redis_url: str, prefix: str, **settings: str
) -> tuple[Server, Server]:
    """Two servers over one SQLite file (so one user, one JWT key) and one Redis."""
    shared = tmp_path / "shared"
    shared.mkdir()
    common = {
        "redis_url": redis_url,
        "redis_key_prefix": prefix,
        "database_url": f"sqlite+aiosqlite:///{shared / 'kassa.db'}",
        # A busy test machine must not make a shared count fall back to per-process ones.
        "redis_timeout_ms": "1000",
        **settings,
    }
    return serve(**common), serve(**common)


def test_two_server_processes_share_one_ip_limit_through_redis(
    serve: Callable[..., Server], tmp_path: Path, shared_redis_url: tuple[str, str]
) -> None:
    url, prefix = shared_redis_url
    first, second = two_servers(serve, tmp_path, url, prefix, rate_limit="6/minute")
    responses = [get(first if i % 2 == 0 else second) for i in range(6)]
    assert [r.status_code for r in responses] == [401] * 6
    assert [r.headers["ratelimit-remaining"] for r in responses] == ["5", "4", "3", "2", "1", "0"]
    for server in (first, second):
        over = get(server)
        assert over.status_code == 429
        assert over.json()["code"] == "rate_limited"
        assert 1 <= int(over.headers["retry-after"]) <= 60


def test_two_server_processes_share_one_per_user_limit_through_redis(
    serve: Callable[..., Server], tmp_path: Path, shared_redis_url: tuple[str, str]
) -> None:
    url, prefix = shared_redis_url
    first, second = two_servers(serve, tmp_path, url, prefix, user_rate_limit="4/minute")
    email = f"shared-{prefix}@example.com"
    body = {"name": "Shared", "email": email, "password": PASSWORD}
    assert httpx.post(first.base_url + "/api/auth/register", json=body).status_code == 201
    login = httpx.post(
        first.base_url + "/api/auth/login", json={"email": email, "password": PASSWORD}
    )
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    statuses = [get(s, headers=headers).status_code for s in (first, second, first, second)]
    assert statuses == [200] * 4
    assert get(second, headers=headers).status_code == 429
    assert get(first, headers=headers).status_code == 429


def test_login_lockout_is_shared_by_two_server_processes(
    serve: Callable[..., Server], tmp_path: Path, shared_redis_url: tuple[str, str]
) -> None:
    url, prefix = shared_redis_url
    first, second = two_servers(serve, tmp_path, url, prefix)
    attempt = {"email": f"locked-{prefix}@example.com", "password": "wrong password 123"}
    for i in range(10):
        server = first if i % 2 == 0 else second
        assert httpx.post(server.base_url + "/api/auth/login", json=attempt).status_code == 401
    for server in (first, second):
        locked = httpx.post(server.base_url + "/api/auth/login", json=attempt)
        assert locked.status_code == 429
        assert locked.json()["code"] == "too_many_attempts"


def test_readyz_reports_redis_when_configured(
    serve: Callable[..., Server], shared_redis_url: tuple[str, str]
) -> None:
    url, prefix = shared_redis_url
    server = serve(redis_url=url, redis_key_prefix=prefix)
    response = get(server, "/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["redis"] == "ok"


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.2)


def redis_keys(redis: OwnRedis) -> int:
    with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as sock:
        sock.sendall(b"DBSIZE\r\n")
        return int(sock.recv(64).strip().lstrip(b":"))


def test_redis_outage_counts_in_process_and_shared_limiting_resumes_when_redis_returns(
    serve: Callable[..., Server], own_redis: OwnRedis
) -> None:
    server = serve(redis_url=own_redis.url, rate_limit="6/minute", redis_timeout_ms="1000")
    assert [get(server).status_code for _ in range(2)] == [401, 401]

    own_redis.kill()
    started = time.monotonic()
    during = [get(server) for _ in range(6)]
    # Served (the route's own 401), quickly, with the contract's headers still on, and
    # still limited: this process kept its own count all along (2 so far), and goes on.
    assert [r.status_code for r in during] == [401] * 4 + [429] * 2
    assert time.monotonic() - started < 10.0
    assert all("ratelimit-limit" in r.headers for r in during)
    ready = get(server, "/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"] == "unavailable"
    assert metric(server, "kassa_rate_limit_errors_total", 'limit="ip"') >= 1
    assert metric(server, "kassa_rate_limit_fallback_total", 'limit="ip"') >= 6
    assert metric(server, "kassa_ratelimit_degraded", "") == 1
    events = log_events(server)
    warnings = [e for e in events if e["event"] == "rate_limit_storage_unavailable"]
    assert len(warnings) == 1  # once for the outage, not once a request
    assert warnings[0]["level"] == "warning"

    own_redis.start()  # same port, empty: the shared count starts again
    assert redis_keys(own_redis) == 0
    wait_for(lambda: get(server, "/readyz").status_code == 200)
    wait_for(lambda: get(server).status_code == 429 and redis_keys(own_redis) > 0)
    assert metric(server, "kassa_ratelimit_degraded", "") == 0
    assert any(e["event"] == "rate_limit_storage_recovered" for e in log_events(server))
