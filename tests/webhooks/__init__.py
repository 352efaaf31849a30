"""Helpers shared by the event and webhook tests: a real HTTP receiver on loopback, a clock
tests move by hand, and a resolver whose answers tests choose."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from tests.conftest import User


class MovableClock:
    """Real time at first; then only what `advance` adds (to skip backoff and leases)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        # Strictly increasing, so rows written one after another sort in that order.
        self.now += timedelta(microseconds=1)
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta

    def catch_up(self) -> None:
        """Not behind real time (for work other processes did on the real clock)."""
        self.now = max(self.now, datetime.now(UTC))


class FakeResolver:
    """DNS answers chosen by the test; unknown names do not resolve."""

    def __init__(self, answers: dict[str, Sequence[str]] | None = None) -> None:
        self.answers: dict[str, Sequence[str]] = dict(answers or {})

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        if host not in self.answers:
            raise OSError(f"{host} does not resolve")
        return self.answers[host]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 in a thread. Answers `statuses` in turn (then 200);
    while `hold` is set, each request waits for `release` before answering."""

    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    requests: list[Received] = field(default_factory=list)
    hold: bool = False
    release: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks?source=kassa"

    def bodies(self) -> list[bytes]:
        with self.lock:
            return [r.body for r in self.requests]

    def ids(self) -> list[str]:
        with self.lock:
            return [r.headers["webhook-id"] for r in self.requests]

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.requests.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.arrived.set()
                if receiver.hold:
                    receiver.release.wait(timeout=60)
                if receiver.delay:
                    threading.Event().wait(receiver.delay)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


async def create_webhook(
    client: httpx.AsyncClient, user: User, url: str, events: list[str] | None = None
) -> dict[str, Any]:
    response = await client.post(
        "/api/webhooks", json={"url": url, "events": events or ["*"]}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def list_events(client: httpx.AsyncClient, user: User, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/api/events", params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def list_attempts(
    client: httpx.AsyncClient, user: User, webhook_id: str, **params: Any
) -> list[dict[str, Any]]:
    response = await client.get(
        f"/api/webhooks/{webhook_id}/deliveries", params=params, headers=user.headers
    )
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def until(condition: Callable[[], bool], within: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def login_again(client: httpx.AsyncClient, user: User) -> User:
    """`user` with fresh tokens: the ones it had expire when a test moves the clock on."""
    response = await client.post(
        "/api/auth/login", json={"email": user.email, "password": user.password}
    )
    assert response.status_code == 200, response.text
    tokens = response.json()
    return replace(user, access_token=tokens["access_token"], refresh_token=tokens["refresh_token"])
