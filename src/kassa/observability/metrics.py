"""Prometheus metrics; aggregated across worker processes when `PROMETHEUS_MULTIPROC_DIR` is set.

Routes are labelled by their template (`/api/payments/{payment_id}`), never the raw path,
so label cardinality stays bounded whatever clients send.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request, by route template, method and status.",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
HTTP_IN_FLIGHT = Gauge(
    "http_requests_in_flight",
    "HTTP requests being answered.",
    multiprocess_mode="livesum",
)
PAYMENTS = Counter(
    "kassa_payments_total",
    "Payments that reached a status, by status, payment method and currency.",
    ["status", "payment_method", "currency"],
)
PAYMENT_AMOUNT = Counter(
    "kassa_payment_amount_minor_total",
    "Sum of completed payment amounts in minor units, by currency.",
    ["currency"],
)
REFUNDS = Counter(
    "kassa_refunds_total",
    "Refunds by status and currency.",
    ["status", "currency"],
)
REFUND_AMOUNT = Counter(
    "kassa_refund_amount_minor_total",
    "Sum of succeeded refund amounts in minor units, by currency.",
    ["currency"],
)
PROCESSOR_CALLS = Histogram(
    "kassa_processor_call_duration_seconds",
    "Time the payment processor took to answer, by operation and outcome.",
    ["processor", "operation", "outcome"],
)
RATE_LIMITED = Counter(
    "kassa_rate_limited_total",
    "Requests refused by a rate limit, by limit name.",
    ["limit"],
)
IDEMPOTENT_REPLAYS = Counter(
    "kassa_idempotent_replays_total", "Responses replayed for a repeated Idempotency-Key."
)
LOGIN_FAILURES = Counter("kassa_login_failures_total", "Failed logins.")


def render_metrics() -> tuple[bytes, str]:
    """The exposition text: every worker's values when running multi-process."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
