"""Service endpoints: health, readiness, metrics and the offline Swagger UI."""

from __future__ import annotations

import asyncio
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy import literal, select
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from kassa.edge.csp import html_page_policy
from kassa.observability.metrics import render_metrics

router = APIRouter(include_in_schema=False)
SWAGGER_STATIC = Path(fastapi_offline.__file__).parent / "static"
READY_TIMEOUT_SECONDS = 2.0
_PING = select(literal(1))


def docs_static() -> StaticFiles:
    return StaticFiles(directory=SWAGGER_STATIC)


@router.get("/healthz")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    container = request.app.state.container
    checks: dict[str, str] = {}

    async def database() -> None:
        await container.db.scalar(_PING)

    try:
        await asyncio.wait_for(database(), READY_TIMEOUT_SECONDS)
        checks["database"] = "ok"
    except Exception:  # any failure means not ready; the reason is not the client's business
        checks["database"] = "unavailable"
    if container.settings.redis_url:
        # Bounded by the Redis timeout, and answered at once while the limits' breaker is
        # open: a hung Redis makes readiness fail fast, not slow.
        checks["redis"] = "ok" if await container.limits.check() else "unavailable"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics")
async def metrics() -> Response:
    body, content_type = render_metrics()
    return Response(body, media_type=content_type)


@router.get("/docs")
async def docs(request: Request) -> HTMLResponse:
    page = get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="kassa — API docs",
        swagger_js_url="/docs-static/swagger-ui-bundle.js",
        swagger_css_url="/docs-static/swagger-ui.css",
        swagger_favicon_url="/docs-static/favicon.png",
        swagger_ui_parameters={"persistAuthorization": True, "displayRequestDuration": True},
    )
    page.headers["Content-Security-Policy"] = html_page_policy(bytes(page.body).decode())
    return page
