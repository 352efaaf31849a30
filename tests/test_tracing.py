"""OpenTelemetry tracing: off (nothing set up) without an OTLP endpoint; with one, requests,
statements, outgoing HTTP and processor calls become spans that never carry card data,
tokens or bodies. Spans are caught by the SDK's in-memory exporter, handed to
`setup_tracing`; the real OTLP export is covered by the acceptance test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from kassa.app import create_app
from kassa.observability.tracing import Tracing, setup_tracing, tracing_configured
from tests.acceptance.conftest import free_port
from tests.conftest import Api, User, card_details, payment_body, register_user

CARD = "4111111111111111"
CVC = "987"
OTEL_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


@dataclass
class Traced:
    client: httpx.AsyncClient
    exporter: InMemorySpanExporter
    tracing: Tracing

    def spans(self) -> list[ReadableSpan]:
        self.tracing.provider.force_flush()
        return list(self.exporter.get_finished_spans())

    def server_span(self, name: str) -> ReadableSpan:
        found = [s for s in self.spans() if s.kind is SpanKind.SERVER and s.name == name]
        assert len(found) == 1, [s.name for s in self.spans() if s.kind is SpanKind.SERVER]
        return found[0]


@pytest.fixture
async def traced(api: Api) -> AsyncIterator[Traced]:
    """The app over the test database, traced into memory (no OTEL_* variable is set in
    tests: the exporter is what turns tracing on)."""
    exporter = InMemorySpanExporter()
    app = create_app(container=api.container)
    tracing = setup_tracing(app=app, db=api.container.db, exporter=exporter)
    assert tracing is not None
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("203.0.113.9", 50000)),
        base_url="http://kassa.test",
    )
    try:
        yield Traced(client, exporter, tracing)
    finally:
        await client.aclose()
        tracing.shutdown()


async def create_and_process(traced: Traced) -> tuple[User, str]:
    user = await register_user(traced.client)
    created = await traced.client.post(
        "/api/payments",
        json=payment_body(details=card_details(CARD, cvc=CVC, holder_name="Sam Cardholder")),
        headers=user.headers,
    )
    assert created.status_code == 201, created.text
    payment_id: str = created.json()["id"]
    processed = await traced.client.post(
        "/api/payments/process", json={"payment_id": payment_id}, headers=user.headers
    )
    assert processed.status_code == 200, processed.text
    assert processed.json()["status"] == "completed"
    return user, payment_id


def status_code(span: ReadableSpan) -> object:
    attributes = span.attributes or {}
    return attributes.get("http.response.status_code", attributes.get("http.status_code"))


def everything_said(spans: list[ReadableSpan]) -> str:
    """Every name, attribute, event and status message of the spans, and their resource."""
    said: list[str] = []
    for span in spans:
        said.append(span.name)
        said.extend(f"{k}={v}" for k, v in (span.attributes or {}).items())
        for event in span.events:
            said.append(event.name)
            said.extend(f"{k}={v}" for k, v in (event.attributes or {}).items())
        said.append(span.status.description or "")
        said.extend(f"{k}={v}" for k, v in span.resource.attributes.items())
    return "\n".join(said)


# Off --------------------------------------------------------------------------------------


@pytest.fixture
def no_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*OTEL_VARIABLES, "OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_otel_variables")
def test_tracing_is_off_without_an_otlp_endpoint() -> None:
    assert not tracing_configured()
    assert setup_tracing() is None


@pytest.mark.parametrize("name", OTEL_VARIABLES)
def test_either_otlp_endpoint_variable_turns_tracing_on(name: str) -> None:
    assert tracing_configured({name: "http://collector:4318"})
    assert not tracing_configured({name: "  "})
    assert not tracing_configured({name: "http://collector:4318", "OTEL_SDK_DISABLED": "true"})
    assert not tracing_configured({name: "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"})


_OFF_PROBE = """
import asyncio, json, sys
import httpx
from kassa.app import create_app
from kassa.migrate import upgrade
from kassa.observability import tracing
from kassa.settings import load_settings

settings = load_settings()
upgrade(settings.resolved_database_url)
app = create_app(settings)

async def requests():
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://kassa.test") as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/api/payments/x")).status_code == 401

asyncio.run(requests())
from opentelemetry import trace
print(json.dumps({
    "modules": sorted(
        m for m in sys.modules
        if m.startswith(("opentelemetry.sdk", "opentelemetry.instrumentation",
                         "opentelemetry.exporter"))
    ),
    "provider": type(trace.get_tracer_provider()).__name__,
    "httpx_wrapped": hasattr(httpx.AsyncHTTPTransport.handle_async_request, "__wrapped__"),
    "app_instrumented": bool(getattr(app, "_is_instrumented_by_opentelemetry", False)),
    "tracer": tracing._tracer is not None,
}))
"""


def test_nothing_of_opentelemetry_is_set_up_without_an_endpoint(tmp_path: Path) -> None:
    """In a fresh interpreter, as `kassa serve` runs: an app that served requests has loaded
    no SDK, instrumentation or exporter, and patched nothing (FastAPI itself imports the
    OpenTelemetry API, whose default provider does nothing)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KASSA_", "OTEL_", "FASTAPI_"))}
    env.update(
        KASSA_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'kassa.db'}",
        KASSA_LOG_LEVEL="WARNING",
    )
    result = subprocess.run(
        [sys.executable, "-c", _OFF_PROBE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout.splitlines()[-1])
    assert probe == {
        "modules": [],
        "provider": "ProxyTracerProvider",
        "httpx_wrapped": False,
        "app_instrumented": False,
        "tracer": False,
    }


# Requests, statements, processor calls ----------------------------------------------------


async def test_a_request_is_a_server_span_named_by_its_route_template(traced: Traced) -> None:
    await create_and_process(traced)
    created = traced.server_span("POST /api/payments")
    processed = traced.server_span("POST /api/payments/process")
    assert status_code(created) == 201
    assert status_code(processed) == 200
    assert (processed.attributes or {}).get("http.route") == "/api/payments/process"
    assert created.resource.attributes["service.name"] == "kassa"


async def test_a_path_with_an_id_is_named_by_its_template_never_the_id(traced: Traced) -> None:
    user, payment_id = await create_and_process(traced)
    response = await traced.client.get(f"/api/payments/{payment_id}", headers=user.headers)
    assert response.status_code == 200
    span = traced.server_span("GET /api/payments/{payment_id}")
    assert status_code(span) == 200
    assert all(payment_id not in s.name for s in traced.spans())


async def test_database_statements_are_spans_of_the_request(traced: Traced) -> None:
    await create_and_process(traced)
    processed = traced.server_span("POST /api/payments/process")
    statements = [
        s
        for s in traced.spans()
        if s.context is not None
        and processed.context is not None
        and s.context.trace_id == processed.context.trace_id
        and "db.statement" in (s.attributes or {})
    ]
    # The move to processing (on PostgreSQL, the first part of one statement of several).
    assert any(
        "UPDATE payment SET" in str((s.attributes or {})["db.statement"]) for s in statements
    )
    assert all(s.kind is SpanKind.CLIENT for s in statements)


async def test_the_processor_call_is_a_span_with_its_outcome(traced: Traced) -> None:
    await create_and_process(traced)
    processed = traced.server_span("POST /api/payments/process")
    charges = [s for s in traced.spans() if s.name == "processor.charge"]
    assert len(charges) == 1
    attributes = charges[0].attributes or {}
    assert attributes["kassa.processor"] == "simulator"
    assert attributes["kassa.processor.outcome"] == "succeeded"
    assert charges[0].context is not None
    assert processed.context is not None
    assert charges[0].context.trace_id == processed.context.trace_id


async def test_no_span_holds_card_data_tokens_passwords_or_statement_parameters(
    traced: Traced,
) -> None:
    user, payment_id = await create_and_process(traced)
    refund = await traced.client.post(f"/api/payments/{payment_id}/refund", headers=user.headers)
    assert refund.status_code == 201, refund.text
    said = everything_said(traced.spans())
    assert "db.statement" in said
    for secret in (CARD, user.access_token, user.refresh_token, user.password, user.email):
        assert secret not in said, secret
    assert "Bearer" not in said
    assert f"={CVC}" not in said


async def test_a_card_number_in_a_query_string_never_reaches_a_span(traced: Traced) -> None:
    user = await register_user(traced.client)
    response = await traced.client.get(
        "/api/transactions",
        params={"number": CARD, "token": user.access_token},
        headers=user.headers,
    )
    assert response.status_code == 422
    said = everything_said(traced.spans())
    assert "GET /api/transactions" in said
    assert CARD not in said
    assert user.access_token not in said


async def test_captured_headers_never_show_the_bearer_token(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An operator asking the instrumentation to record every request header.
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", ".*")
    exporter = InMemorySpanExporter()
    app = create_app(container=api.container)
    tracing = setup_tracing(app=app, db=api.container.db, exporter=exporter)
    assert tracing is not None
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://kassa.test"
        ) as client:
            user = await register_user(client)
            profile = await client.get(
                "/api/auth/profile", headers={**user.headers, "Cookie": "session=s3cr3t-cookie"}
            )
            assert profile.status_code == 200
        tracing.provider.force_flush()
        said = everything_said(list(exporter.get_finished_spans()))
    finally:
        tracing.shutdown()
    assert "http.request.header.user_agent" in said  # headers were captured...
    assert user.access_token not in said  # ...but not the credentials
    assert "s3cr3t-cookie" not in said


async def test_probes_and_metrics_are_not_traced(traced: Traced) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await traced.client.get(path)).status_code == 200
    await traced.client.get("/api/auth/profile")
    names = {s.name for s in traced.spans() if s.kind is SpanKind.SERVER}
    assert names == {"GET /api/auth/profile"}


# Outgoing HTTP ----------------------------------------------------------------------------


@pytest.fixture
def http_target() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook?token=abc"
    finally:
        server.shutdown()
        server.server_close()


async def test_outgoing_http_is_a_client_span(traced: Traced, http_target: str) -> None:
    async with httpx.AsyncClient() as client:
        assert (await client.get(http_target)).status_code == 204
    outgoing = [s for s in traced.spans() if s.kind is SpanKind.CLIENT and s.name == "GET"]
    assert len(outgoing) == 1
    assert status_code(outgoing[0]) == 204


async def test_shutdown_removes_the_http_and_database_instrumentation(api: Api) -> None:
    tracing = setup_tracing(db=api.container.db, exporter=InMemorySpanExporter())
    assert tracing is not None
    assert hasattr(httpx.AsyncHTTPTransport.handle_async_request, "__wrapped__")
    tracing.shutdown()
    assert not hasattr(httpx.AsyncHTTPTransport.handle_async_request, "__wrapped__")


# A collector that is down ------------------------------------------------------------------


async def test_requests_succeed_and_shutdown_is_bounded_when_the_collector_is_down(
    api: Api,
) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}/v1/traces"  # nothing listens there
    app = create_app(container=api.container)
    tracing = setup_tracing(
        app=app,
        db=api.container.db,
        exporter=OTLPSpanExporter(endpoint=unreachable, timeout=2),
    )
    assert tracing is not None
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://kassa.test"
        ) as client:
            user = await register_user(client)
            for _ in range(5):
                created = await client.post(
                    "/api/payments", json=payment_body(), headers=user.headers
                )
                assert created.status_code == 201, created.text
    finally:
        started = time.monotonic()
        tracing.shutdown()
        assert time.monotonic() - started < 8
