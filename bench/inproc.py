"""CPU per request, in process: kassa's app and the lean reference driven through ASGI.

wrk and uvicorn add noise (the machine's other load, HTTP parsing, two workers sharing two
cores); this drives each app's ASGI callable directly, in one process on uvloop, with the
benchmark's lifecycle (create → process, a status read every 2nd, a refund every 4th) at a
fixed concurrency, and reads the process's CPU time. What it measures is the app's own
CPU — routing, validation, auth, limits, idempotency, SQL, logging — on the real PostgreSQL
and Redis. `--profile` adds cProfile over kassa's run and prints where the time went.

    .venv/bin/python -m bench.inproc [--lifecycles 400] [--concurrency 8] [--profile]

A diagnostic for whoever works on kassa's data path; not part of `make test` or `make bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import io
import os
import pstats
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import uvloop

from bench.openloop import PAYMENT, REFUND
from bench.reference import checks as reference_checks

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PASSWORD = "bench-password-123"

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


async def call(
    app: App, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, bytes]:
    """One request through the app's ASGI callable; its status and body."""
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if body:
        raw.append((b"content-type", b"application/json"))
        raw.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


class Lifespan:
    """Runs an ASGI app's lifespan startup and shutdown."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        self.task: asyncio.Future[None] | None = None

    async def __aenter__(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self.task = asyncio.ensure_future(self.app(scope, self.inbox.get, self.outbox.put))
        await self.inbox.put({"type": "lifespan.startup"})
        answer = await self.outbox.get()
        if answer["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"startup: {answer}")

    async def __aexit__(self, *_: object) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        await self.outbox.get()
        if self.task is not None:
            await self.task


async def lifecycles(app: App, tokens: list[str], count: int, concurrency: int) -> int:
    """count lifecycles over `concurrency` users; the number of requests made."""
    requests = 0
    nonce = uuid.uuid4().hex[:8]
    queue = iter(range(count))

    async def user(token: str) -> None:
        nonlocal requests
        auth = {"authorization": f"Bearer {token}"}
        for index in queue:
            key = f"{nonce}-{index}"
            status, body = await call(
                app, "POST", "/api/payments", {**auth, "idempotency-key": f"{key}-c"}, PAYMENT
            )
            if status != 201:
                raise RuntimeError(f"create {status}: {body[:300]!r}")
            payment = orjson.loads(body)["id"]
            status, body = await call(
                app,
                "POST",
                "/api/payments/process",
                {**auth, "idempotency-key": f"{key}-p"},
                orjson.dumps({"payment_id": payment}),
            )
            if status != 200:
                raise RuntimeError(f"process {status}: {body[:300]!r}")
            requests += 2
            if index % 2 == 1:
                status, body = await call(app, "GET", f"/api/payments/{payment}/status", auth)
                if status != 200:
                    raise RuntimeError(f"status {status}: {body[:300]!r}")
                requests += 1
            if index % 4 == 3:
                status, body = await call(
                    app,
                    "POST",
                    f"/api/payments/{payment}/refund",
                    {**auth, "idempotency-key": f"{key}-r"},
                    REFUND,
                )
                if status != 201:
                    raise RuntimeError(f"refund {status}: {body[:300]!r}")
                requests += 1

    await asyncio.gather(*(user(tokens[i % len(tokens)]) for i in range(concurrency)))
    return requests


async def measure(
    name: str, app: App, tokens: list[str], count: int, concurrency: int, profile: bool
) -> None:
    await lifecycles(app, tokens, max(20, count // 10), concurrency)  # warm up
    profiler = cProfile.Profile() if profile else None
    cpu, wall = time.process_time(), time.perf_counter()
    if profiler is not None:
        profiler.enable()
    made = await lifecycles(app, tokens, count, concurrency)
    if profiler is not None:
        profiler.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    say(
        f"{name:10} {count} lifecycles, {made} requests in {wall:.2f} s: "
        f"CPU {1000 * cpu / count:.2f} ms/lifecycle, {1000 * cpu / made:.3f} ms/request"
    )
    if profiler is not None:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.dump_stats(os.environ.get("INPROC_PSTATS", "/dev/null"))
        stats.sort_stats("tottime").print_stats(45)
        stats.sort_stats("cumulative").print_stats(80)
        say(out.getvalue())


def say(text: str) -> None:
    """Results go to stderr: kassa's JSON log lines go to stdout (send them to a file)."""
    print(text, file=sys.stderr, flush=True)


async def admin(dsn: str, sql: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def kassa_tokens(app: App, count: int) -> list[str]:
    """`count` users registered and logged in through kassa's own API (its ASGI callable)."""
    tokens = []
    for index in range(count):
        email = f"inproc-{uuid.uuid4().hex[:8]}-{index}@example.com"
        registration = {"name": "bench", "email": email, "password": PASSWORD}
        status, body = await call(app, "POST", "/api/auth/register", {}, orjson.dumps(registration))
        if status != 201:
            raise RuntimeError(f"register {status}: {body[:300]!r}")
        login = {"email": email, "password": PASSWORD}
        status, body = await call(app, "POST", "/api/auth/login", {}, orjson.dumps(login))
        tokens.append(orjson.loads(body)["access_token"])
    return tokens


async def kassa_run(url: str, args: argparse.Namespace) -> None:
    from kassa.app import create_app_from_env

    app = create_app_from_env()
    async with Lifespan(app):
        tokens = await kassa_tokens(app, args.concurrency)
        await measure("kassa", app, tokens, args.lifecycles, args.concurrency, args.profile)


async def reference_run(dsn: str, redis_url: str, prefix: str, args: argparse.Namespace) -> None:
    from bench.reference.app import Config, create_app

    config = Config(
        dsn=dsn,
        redis_url=redis_url,
        redis_prefix=f"{prefix}-ref",
        jwt_secret=secrets.token_urlsafe(48),
        card_key=secrets.token_bytes(32),
    )
    app = create_app(config)  # its access lines go to stdout, as kassa's do
    async with Lifespan(app):
        tokens = await reference_checks.seed_tokens(dsn, config.jwt_secret, args.concurrency)
        await measure(
            "reference", app, tokens, args.lifecycles, args.concurrency, args.profile_reference
        )


def kassa_environment(
    url: str, redis_url: str, prefix: str, *, cheap_passwords: bool = True
) -> dict[str, str]:
    """kassa's settings for a benchmark: limits out of the way, JSON log lines at INFO as
    served, and (`cheap_passwords`, for users made through the API in process) cheap
    password hashes."""
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    settings = {
        "KASSA_DATABASE_URL": url,
        "KASSA_REDIS_URL": redis_url,
        "KASSA_REDIS_KEY_PREFIX": prefix,
        "KASSA_RATE_LIMIT": "10000000/minute",
        "KASSA_USER_RATE_LIMIT": "10000000/minute",
        "KASSA_JWT_SECRET": secrets.token_urlsafe(48),
        "KASSA_VAULT_KEYS": f"bench:{key}",
        "KASSA_LOG_LEVEL": "INFO",
        "KASSA_LOG_FORMAT": "json",
    }
    if cheap_passwords:
        settings |= {"KASSA_ARGON2_MEMORY_KIB": "8", "KASSA_ARGON2_TIME_COST": "1"}
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lifecycles", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--profile", action="store_true", help="cProfile kassa's run")
    parser.add_argument("--profile-reference", action="store_true")
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args(argv)
    admin_dsn = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    tag = uuid.uuid4().hex[:8]
    kassa_db, lean_db = f"kassa_inproc_{tag}", f"kassa_inproc_{tag}_lean"
    base = admin_dsn.rsplit("/", 1)[0]
    url = f"{base}/{kassa_db}".replace("postgresql://", "postgresql+asyncpg://", 1)
    os.environ.update(kassa_environment(url, redis_url, f"kassa-inproc-{tag}"))
    asyncio.run(admin(admin_dsn, f'CREATE DATABASE "{kassa_db}"'))
    asyncio.run(admin(admin_dsn, f'CREATE DATABASE "{lean_db}"'))
    try:
        subprocess.run([str(BIN / "kassa"), "migrate"], check=True, capture_output=True)
        uvloop.run(kassa_run(url, args))
        if not args.skip_reference:
            lean_dsn = f"{base}/{lean_db}"
            asyncio.run(reference_checks.apply_schema(lean_dsn))
            uvloop.run(reference_run(lean_dsn, redis_url, f"kassa-inproc-{tag}", args))
    finally:
        for name in (kassa_db, lean_db):
            asyncio.run(admin(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return 0


if __name__ == "__main__":
    sys.exit(main())
