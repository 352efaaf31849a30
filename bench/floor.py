"""The floor: a minimal FastAPI + asyncpg app issuing kassa's captured SQL.

No validation, no auth, no ledger or vault code, no middleware: each endpoint runs its
part of the captured plan (bench/sqlplan.py) on one pooled connection and answers a fixed
body. Whatever kassa costs beyond this is what its Python does per request.

    BENCH_PLAN=plan.json BENCH_DSN=postgresql://... uvicorn bench.floor:app --workers 2
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from fastapi import FastAPI, Request, Response

from bench.sqlplan import Plan, lifecycle_variables, run_part

PLAN = Plan.from_json(Path(os.environ["BENCH_PLAN"]).read_text())
DSN = os.environ["BENCH_DSN"]
POOL_SIZE = int(os.environ.get("BENCH_POOL_SIZE", "10"))
state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    state["pool"] = await asyncpg.create_pool(DSN, min_size=POOL_SIZE, max_size=POOL_SIZE)
    yield
    await state["pool"].close()


app = FastAPI(lifespan=lifespan)


async def _run(part: str, payment_id: str, status: int) -> Response:
    bound = lifecycle_variables(PLAN, payment_id)
    async with state["pool"].acquire() as connection:
        await run_part(connection, PLAN, part, bound)
    body = orjson.dumps({"id": payment_id, "status": "ok"})
    return Response(body, status_code=status, media_type="application/json")


@app.post("/api/payments")
async def create() -> Response:
    return await _run("create", str(uuid.uuid4()), 201)


@app.post("/api/payments/process")
async def process(request: Request) -> Response:
    payment_id = orjson.loads(await request.body())["payment_id"]
    return await _run("process", payment_id, 200)


@app.get("/api/payments/{payment_id}/status")
async def status(payment_id: str) -> Response:
    return await _run("status", payment_id, 200)


@app.post("/api/payments/{payment_id}/refund")
async def refund(payment_id: str) -> Response:
    return await _run("refund", payment_id, 201)
