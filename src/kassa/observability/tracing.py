"""OpenTelemetry tracing, off unless an OTLP endpoint is configured.

Operators turn it on with the standard variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (the
collector's base URL, `/v1/traces` is appended) or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the
full URL); spans go there as OTLP over HTTP/protobuf. The SDK reads the rest itself
(`OTEL_EXPORTER_OTLP_HEADERS`, `..._TIMEOUT`, `OTEL_TRACES_SAMPLER`, `OTEL_RESOURCE_ATTRIBUTES`);
`OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` keep it off; `OTEL_SERVICE_NAME`
defaults to `kassa`.

When it is off, nothing here imports OpenTelemetry: no provider, no instrumentation, no cost
on a request. When it is on, each serving process builds its own provider (uvicorn's workers
each build their app, so the export thread never crosses a fork) and traces:
- incoming requests, one server span named by method and route template
  (`POST /api/payments/{payment_id}/refund`), never the raw path; not /metrics or the probes;
- database statements, recorded with their placeholders, never their parameters;
- outgoing HTTP (the Stripe connector, webhook deliveries), and every call to the payment
  processor (`processor.charge`, `processor.prepare`, `processor.refund`).

No span carries a request or response body, or a header that could hold a credential. As a
last guard every span name, attribute, event and status message passes through the log
redaction before it is exported (card numbers, bearer tokens, JWTs, secrets). Export runs on a
background thread with a bounded queue: a collector that is down or slow loses spans, never
delays or fails a request.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

from fastapi.telemetry import TelemetryConfig

from kassa.observability.logging import redact_text, redact_value

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer

    from kassa.db import Database

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
DEFAULT_SERVICE_NAME = "kassa"
# Scrapes and probes: frequent, and nothing to learn from their traces.
UNTRACED_URLS = r"^[A-Za-z]+://[^/]+/(?:metrics|healthz|readyz)/?$"
# Never recorded, even when an operator asks the instrumentation to capture headers.
SENSITIVE_HEADERS = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "idempotency-key",
    ".*token.*",
    ".*secret.*",
    ".*api-key.*",
    "webhook-signature",
]
SHUTDOWN_TIMEOUT_SECONDS = 5.0
# FastAPI's own telemetry stays off, whatever the environment: requests are traced by the
# instrumentation below, whose spans are redacted; FastAPI's would duplicate them, add logs of
# validation failures and exception messages, and could export them by itself
# (FASTAPI_OTEL_AUTO_CONFIGURE), past the redaction.
FASTAPI_TELEMETRY: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
    "auto_configure": False,
}

# The tracer of the process's provider, for the spans kassa makes itself; None while off.
_tracer: Tracer | None = None


def tracing_configured(environ: Mapping[str, str] | None = None) -> bool:
    """True when an OTLP traces endpoint is set (and neither the SDK nor trace export is
    disabled: `OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none`)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(env.get(name, "").strip() for name in ENDPOINT_VARIABLES)


@dataclass(frozen=True, slots=True)
class Tracing:
    """A running tracer provider; `shutdown` removes the database and HTTP instrumentation,
    exports what is queued (for a few seconds at most) and stops the export thread."""

    provider: TracerProvider
    tracer: Tracer
    instrumentors: tuple[Any, ...]

    def shutdown(self) -> None:
        global _tracer
        if _tracer is self.tracer:
            _tracer = None
        for instrumentor in self.instrumentors:
            if instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.uninstrument()
        # The SDK waits up to 30 s for a last export; a collector that is down must not hold
        # up the end of the process that long (the thread dies with the process).
        stopping = threading.Thread(
            target=self.provider.shutdown, name="kassa-tracing-shutdown", daemon=True
        )
        stopping.start()
        stopping.join(SHUTDOWN_TIMEOUT_SECONDS)


def setup_tracing(
    *,
    app: FastAPI | None = None,
    db: Database | None = None,
    exporter: SpanExporter | None = None,
) -> Tracing | None:
    """Trace this process when an OTLP endpoint is configured (or `exporter` is given, as
    tests do): requests to `app`, statements on `db`, outgoing HTTP and processor calls.
    None, having imported nothing, when tracing is off.

    Call it in the process that serves, before `app` answers its first request. One engine
    is traced per process: a later call moves the database and HTTP instrumentation to its
    own provider."""
    if exporter is None and not tracing_configured():
        return None
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # endpoint, headers, timeout: from OTEL_* variables
    provider = TracerProvider(resource=_resource())
    provider.add_span_processor(BatchSpanProcessor(_redacting(exporter)))
    if app is not None:
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=provider,
            excluded_urls=UNTRACED_URLS,
            exclude_spans=["receive", "send"],
            http_capture_headers_sanitize_fields=SENSITIVE_HEADERS,
        )
    instrumentors: list[Any] = []
    if db is not None:
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        instrumentors.append(
            _reinstrument(
                SQLAlchemyInstrumentor(),
                engine=db.engine.sync_engine,
                tracer_provider=provider,
                enable_commenter=False,  # no comment appended to the SQL sent
                # It declares SQLAlchemy < 2.1; the engine events it listens to are unchanged.
                skip_dep_check=True,
            )
        )
    instrumentors.append(_reinstrument(HTTPXClientInstrumentor(), tracer_provider=provider))
    tracer = provider.get_tracer("kassa")
    global _tracer
    _tracer = tracer
    return Tracing(provider=provider, tracer=tracer, instrumentors=tuple(instrumentors))


def _reinstrument(instrumentor: Any, **options: Any) -> Any:
    """Instrument (the instrumentors are process-wide singletons) with this provider."""
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    instrumentor.instrument(**options)
    return instrumentor


def _resource() -> Resource:
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource

    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    defaults: dict[str, str] = {}
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        defaults[SERVICE_NAME] = DEFAULT_SERVICE_NAME  # the SDK's own fallback otherwise
    if SERVICE_VERSION not in resource.attributes:
        with suppress(metadata.PackageNotFoundError):
            defaults[SERVICE_VERSION] = metadata.version("kassa")
    return resource.merge(Resource(defaults)) if defaults else resource


def _ignore_outcome(_outcome: str) -> None:
    return None


@contextmanager
def processor_span(processor: str, operation: str) -> Iterator[Callable[[str], None]]:
    """A client span around one call to the payment processor, when tracing is on. Yields a
    function that records the call's outcome (`succeeded`, `declined`, `unknown`, ...)."""
    tracer = _tracer
    if tracer is None:
        yield _ignore_outcome
        return
    from opentelemetry.trace import SpanKind

    with tracer.start_as_current_span(
        f"processor.{operation}",
        kind=SpanKind.CLIENT,
        attributes={"kassa.processor": processor, "kassa.processor.operation": operation},
    ) as span:
        yield lambda outcome: span.set_attribute("kassa.processor.outcome", outcome)


def _redacted_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    # The last part of a dotted key is what names its meaning: `http.request.header.cookie`.
    return {
        key: redact_value(key.rsplit(".", 1)[-1], value)
        for key, value in (attributes or {}).items()
    }


def _redacted(span: ReadableSpan) -> ReadableSpan:
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.trace import Status

    status = span.status
    if status.description:
        status = Status(status.status_code, redact_text(status.description))
    return ReadableSpan(
        name=redact_text(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_redacted_attributes(span.attributes),
        events=[
            Event(event.name, _redacted_attributes(event.attributes), event.timestamp)
            for event in span.events
        ],
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _redacting(inner: SpanExporter) -> SpanExporter:
    """The exporter, handed redacted copies of the spans (on the export thread)."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class RedactingExporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return inner.export([_redacted(span) for span in spans])

        def shutdown(self) -> None:
            inner.shutdown()

        def force_flush(self, timeout_millis: int = 30_000) -> bool:
            return inner.force_flush(timeout_millis)

    return RedactingExporter()
