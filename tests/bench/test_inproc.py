"""bench/inproc.py: an app's ASGI callable driven directly, with its lifespan, through the
benchmark's lifecycle — the requests it sends, the answers it insists on."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from fastapi import FastAPI, Request, Response

from bench.inproc import Lifespan, call, lifecycles


def lifecycle_app(events: list[str], *, refund_status: int = 201) -> FastAPI:
    """A stand-in for the four endpoints the lifecycle uses, recording what it was sent."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    app = FastAPI(lifespan=lifespan)
    made = Counter[str]()

    @app.post("/api/payments")
    async def create(request: Request) -> Response:
        body = orjson.loads(await request.body())
        assert body["amount"] == 2500
        made["payment"] += 1
        events.append(f"create {request.headers['idempotency-key']}")
        return Response(orjson.dumps({"id": f"p{made['payment']}"}), status_code=201)

    @app.post("/api/payments/process")
    async def process(request: Request) -> Response:
        body = orjson.loads(await request.body())
        events.append(f"process {body['payment_id']} {request.headers['authorization']}")
        return Response(b"{}", status_code=200)

    @app.get("/api/payments/{payment_id}/status")
    async def status(payment_id: str) -> Response:
        events.append(f"status {payment_id}")
        return Response(b"{}", status_code=200)

    @app.post("/api/payments/{payment_id}/refund")
    async def refund(payment_id: str) -> Response:
        events.append(f"refund {payment_id}")
        return Response(b"{}", status_code=refund_status)

    return app


def test_call_sends_the_request_and_collects_the_answer() -> None:
    async def run() -> tuple[int, bytes]:
        app = lifecycle_app([])
        return await call(app, "GET", "/api/payments/p9/status", {})

    assert asyncio.run(run()) == (200, b"{}")


def test_lifespan_starts_and_stops_the_app() -> None:
    events: list[str] = []

    async def run() -> None:
        async with Lifespan(lifecycle_app(events)):
            assert events == ["startup"]

    asyncio.run(run())
    assert events == ["startup", "shutdown"]


def test_lifecycles_follow_the_benchmark_pattern() -> None:
    events: list[str] = []

    async def run() -> int:
        return await lifecycles(lifecycle_app(events), ["t1"], count=4, concurrency=1)

    made = asyncio.run(run())
    # 4 creates and processes, a status every 2nd lifecycle, a refund every 4th.
    assert made == 4 * 2 + 2 + 1
    kinds = Counter(event.split()[0] for event in events)
    assert kinds == {"create": 4, "process": 4, "status": 2, "refund": 1}
    assert "process p1 Bearer t1" in events
    keys = [event.split()[1] for event in events if event.startswith("create")]
    assert len(set(keys)) == 4  # a fresh Idempotency-Key for every create


def test_an_unexpected_answer_stops_the_run() -> None:
    async def run() -> Any:
        app = lifecycle_app([], refund_status=409)
        return await lifecycles(app, ["t1"], count=4, concurrency=1)

    with pytest.raises(RuntimeError, match="refund 409"):
        asyncio.run(run())
