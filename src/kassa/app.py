"""create_app(): middleware order, routers, lifespan — nothing else."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from kassa.apikeys.router import router as keys_router
from kassa.auditlog.router import router as audit_router
from kassa.auth.middleware import AuthenticationMiddleware
from kassa.auth.router import router as auth_router
from kassa.challenge.router import returns as returns_router
from kassa.challenge.router import router as challenge_router
from kassa.checkout.pages import router as checkout_pages
from kassa.checkout.router import router as checkout_router
from kassa.container import Container, build_container
from kassa.dashboard.pages import router as dashboard_pages
from kassa.edge.cors import ProblemCORSMiddleware, cors_options
from kassa.edge.headers import HeaderLimitMiddleware
from kassa.edge.held import HeldConnectionMiddleware
from kassa.edge.jsondepth import JsonDepthMiddleware
from kassa.edge.pages import STATIC_PATH, static_files
from kassa.errors import UnhandledErrorMiddleware, install_error_handlers
from kassa.events.router import router as events_router
from kassa.idempotency.middleware import IdempotencyMiddleware
from kassa.observability.bodylimit import BodySizeLimitMiddleware
from kassa.observability.logging import configure_logging, log_file_of
from kassa.observability.middleware import RequestContextMiddleware
from kassa.observability.tracing import FASTAPI_TELEMETRY, setup_tracing
from kassa.openapi import install_openapi
from kassa.payments.router import committed_answers as payment_answers
from kassa.payments.router import router as payments_router
from kassa.ratelimit.limiter import RateLimiter
from kassa.ratelimit.middleware import RateLimitMiddleware
from kassa.refunds.router import committed_answers as refund_answers
from kassa.refunds.router import lists_router as refund_lists_router
from kassa.refunds.router import router as refunds_router
from kassa.service_routes import docs_static
from kassa.service_routes import router as service_router
from kassa.settings import Settings, load_settings
from kassa.transactions.router import router as transactions_router
from kassa.webhooks.router import router as webhooks_router

DESCRIPTION = """
kassa is a payment gateway: register, log in, create payments by card or wallet, process
them, refund them in whole or in part, and list transactions.

Amounts are integers in the currency's minor unit (1050 = 10.50 USD). Errors are RFC 9457
problem documents with a stable `code`. Log in at `/api/auth/login`, then press
**Authorize** and paste the `access_token`; or create an API key at `/api/keys` and paste
its `secret` (`sk_test_…`) under ApiKey. A key acts in its own mode; a login token acts in
test mode unless the request carries `Kassa-Mode: live`.
"""


def create_app(settings: Settings | None = None, container: Container | None = None) -> FastAPI:
    settings = settings or (container.settings if container else load_settings())
    configure_logging(settings.log_level, settings.log_format, log_file_of(settings))
    container = container or build_container(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if tracing is not None:
                tracing.shutdown()
            await container.aclose()

    app = FastAPI(
        title="kassa",
        version="0.1.0",
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        telemetry=FASTAPI_TELEMETRY,
        # Starlette would answer `/api/payments/` with a redirect built from the request's
        # Host header and scheme (an open redirect, and a downgrade to http behind a TLS
        # proxy that a client re-sends its card to). A path is served as written or is a 404.
        redirect_slashes=False,
    )
    app.state.container = container
    install_error_handlers(app)
    install_openapi(app)
    app.include_router(service_router)
    app.mount("/docs-static", docs_static(), name="docs-static")
    app.include_router(auth_router)
    app.include_router(keys_router)
    app.include_router(payments_router)
    app.include_router(refunds_router)
    app.include_router(refund_lists_router)
    app.include_router(transactions_router)
    app.include_router(events_router)
    app.include_router(webhooks_router)
    app.include_router(challenge_router)
    app.include_router(returns_router)
    app.include_router(checkout_router)
    app.mount(STATIC_PATH, static_files(), name="static")
    app.include_router(checkout_pages)
    app.include_router(dashboard_pages)
    app.include_router(audit_router)
    # Added last = runs first: request id, access log and security headers wrap everything,
    # then CORS (a preflight is answered before it spends any limit), the request's held
    # database connection (its statements share one checkout), authentication (once:
    # every later layer and route reads its outcome), the rate limits (so every
    # /api answer, 413, 431 and 500 included, counts and carries RateLimit-*), the header,
    # body-size and JSON-nesting caps, and idempotency just outside the routes. A crash in a
    # route becomes a 500 problem document innermost, so idempotency and the outer layers see
    # an ordinary response; a crash in a middleware is caught just inside the request context.
    app.add_middleware(UnhandledErrorMiddleware)
    app.add_middleware(
        IdempotencyMiddleware,
        service=container.idempotency,
        answers={**payment_answers(container.payments), **refund_answers(container.refunds)},
    )
    app.add_middleware(JsonDepthMiddleware)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(HeaderLimitMiddleware)
    app.add_middleware(
        RateLimitMiddleware,
        limiter=container.limiter,
        trusted=settings.trusted_proxy_networks,
        user_limiter=RateLimiter(container.limits, settings.user_rate_limit, name="user"),
        key_limiters=(
            RateLimiter(container.limits, settings.key_rate_limit_test, name="key"),
            RateLimiter(container.limits, settings.key_rate_limit_live, name="key"),
        ),
    )
    app.add_middleware(AuthenticationMiddleware, auth=container.auth, keys=container.keys)
    app.add_middleware(HeldConnectionMiddleware, db=container.db)
    if settings.cors_origin_list:
        app.add_middleware(ProblemCORSMiddleware, **cors_options(settings.cors_origin_list))
    app.add_middleware(UnhandledErrorMiddleware)
    app.add_middleware(RequestContextMiddleware, trusted=settings.trusted_proxy_networks)
    # Off unless OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set; outermost when on. Each uvicorn
    # worker builds its own app, so each gets its own tracer provider.
    tracing = setup_tracing(app=app, db=container.db)
    return app


def create_app_from_env() -> FastAPI:
    """The factory `kassa serve` hands to uvicorn (each worker process builds its own app)."""
    app = create_app()
    # The OpenAPI document (served at /openapi.json, and the route templates that name the
    # metrics of requests an outer layer answered) is built now, not by the first such
    # request: building it costs a worker about half a second of CPU.
    app.openapi()
    # What start-up built (modules, the app, mappers, compiled schemas) lives as long as the
    # worker: frozen, the collector stops walking it on every full collection.
    gc.collect()
    gc.freeze()
    return app
