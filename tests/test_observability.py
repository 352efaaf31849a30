"""Logs (one redacted JSON object a line on stdout, each request line with its request id)
and Prometheus metrics labelled by route template."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

import kassa.observability.logging as logging_module
from kassa.app import create_app
from kassa.observability.logging import REDACTED, redact_text, redact_value
from tests.conftest import Api, card_details, payment_body, register_user

CARD = "4111111111111111"
CVC = "987"
JWT_SECRET = "test-secret-" + "x" * 40  # what tests.conftest.make_settings configures


# Logs -------------------------------------------------------------------------------------


@pytest.fixture
def logs(
    api_factory: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> Iterator[Callable[[], Awaitable[Api]]]:
    """Builds an app (INFO, JSON logs) from inside the test, where capsys holds stdout:
    configure_logging() binds the handler to the sys.stdout of that moment."""

    async def build() -> Api:
        api: Api = await api_factory(log_level="INFO")
        capsys.readouterr()
        return api

    yield build
    # capsys closes its buffer after the test; park the root handler somewhere harmless
    # until the next create_app() configures logging again.
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.stream = io.StringIO()  # not setStream(): it flushes the closed buffer


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        value = json.loads(line)
        assert isinstance(value, dict), line
        parsed.append(value)
    return parsed


def all_values(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for item in value.values():
            yield from all_values(item)
    elif isinstance(value, list):
        for item in value:
            yield from all_values(item)
    else:
        yield value


async def walk_lifecycle(client: httpx.AsyncClient) -> dict[str, Any]:
    """Register, log in, create with a distinctive card, process, refund twice; also make a
    few requests that fail validation with the card in the body. Returns the secrets used."""
    user = await register_user(client)
    profile = await client.get("/api/auth/profile", headers=user.headers)
    assert profile.status_code == 200
    details = card_details(CARD, cvc=CVC, holder_name="Sam Cardholder")
    created = await client.post(
        "/api/payments",
        json=payment_body(amount=5000, details=details),
        headers={**user.headers, "X-Request-ID": "lifecycle-create"},
    )
    assert created.status_code == 201, created.text
    payment_id = created.json()["id"]
    processed = await client.post(
        "/api/payments/process", json={"payment_id": payment_id}, headers=user.headers
    )
    assert processed.json()["status"] == "completed"
    part = await client.post(
        f"/api/payments/{payment_id}/refund", json={"amount": 1000}, headers=user.headers
    )
    assert part.status_code == 201, part.text
    rest = await client.post(f"/api/payments/{payment_id}/refund", headers=user.headers)
    assert rest.status_code == 201, rest.text
    expired = card_details(CARD, cvc=CVC, exp_year=2001)
    invalid = await client.post(
        "/api/payments", json=payment_body(details=expired), headers=user.headers
    )
    assert invalid.status_code == 422
    assert CARD not in invalid.text
    unknown_field = await client.post(
        "/api/payments",
        json={**payment_body(details=details), "status": "completed"},
        headers=user.headers,
    )
    assert unknown_field.status_code == 422
    assert CARD not in unknown_field.text
    bad_token = await client.get(
        "/api/auth/profile", headers={"Authorization": f"Bearer {user.access_token}x"}
    )
    assert bad_token.status_code == 401
    wrong_password = await client.post(
        "/api/auth/login", json={"email": user.email, "password": user.password + "!"}
    )
    assert wrong_password.status_code == 401
    return {
        "password": user.password,
        "access_token": user.access_token,
        "refresh_token": user.refresh_token,
        "payment_id": payment_id,
    }


async def test_every_log_line_is_a_json_object(
    logs: Callable[[], Awaitable[Api]], capsys: pytest.CaptureFixture[str]
) -> None:
    logged = await logs()
    await walk_lifecycle(logged.client)
    captured = capsys.readouterr()
    lines = json_lines(captured.out)
    assert lines
    assert all("event" in line and "level" in line and "timestamp" in line for line in lines)


async def test_nothing_is_logged_to_stderr(
    logs: Callable[[], Awaitable[Api]], capsys: pytest.CaptureFixture[str]
) -> None:
    logged = await logs()
    await walk_lifecycle(logged.client)
    assert capsys.readouterr().err == ""


async def test_every_request_line_carries_its_request_id(
    logs: Callable[[], Awaitable[Api]], capsys: pytest.CaptureFixture[str]
) -> None:
    logged = await logs()
    await walk_lifecycle(logged.client)
    access = [line for line in json_lines(capsys.readouterr().out) if line["event"] == "request"]
    assert len(access) >= 10
    assert all(line.get("request_id") for line in access)
    assert all({"method", "route", "status", "duration_ms"} <= line.keys() for line in access)
    created = [line for line in access if line["request_id"] == "lifecycle-create"]
    assert len(created) == 1
    assert created[0]["route"] == "/api/payments"
    assert created[0]["status"] == 201


async def test_access_line_request_id_matches_the_response_header(
    logs: Callable[[], Awaitable[Api]], capsys: pytest.CaptureFixture[str]
) -> None:
    logged = await logs()
    response = await logged.client.get("/api/payments/does-not-exist")
    access = [line for line in json_lines(capsys.readouterr().out) if line["event"] == "request"]
    assert [line["request_id"] for line in access] == [response.headers["x-request-id"]]


async def test_logs_never_hold_the_card_number(
    logs: Callable[[], Awaitable[Api]], capsys: pytest.CaptureFixture[str]
) -> None:
    logged = await logs()
    await walk_lifecycle(logged.client)
    out = capsys.readouterr().out
    assert CARD not in out
    assert CARD not in out.replace(" ", "").replace("-", "")


async def test_logs_never_hold_the_cvc_as_a_value(
    logs: Callable[[], Awaitable[Api]], capsys: pytest.CaptureFixture[str]
) -> None:
    logged = await logs()
    await walk_lifecycle(logged.client)
    for line in json_lines(capsys.readouterr().out):
        assert CVC not in [str(v) for v in all_values(line)], line


async def test_logs_never_hold_password_tokens_or_jwt_secret(
    logs: Callable[[], Awaitable[Api]], capsys: pytest.CaptureFixture[str]
) -> None:
    logged = await logs()
    used = await walk_lifecycle(logged.client)
    out = capsys.readouterr().out
    for name in ("password", "access_token", "refresh_token"):
        assert used[name] not in out, name
    assert JWT_SECRET not in out
    assert "Bearer ey" not in out


async def test_unhandled_error_is_logged_with_request_id_and_redacted(
    logs: Callable[[], Awaitable[Api]], capsys: pytest.CaptureFixture[str]
) -> None:
    logged = await logs()
    app = create_app(container=logged.container)

    @app.get("/api/explode")
    async def explode() -> None:
        raise RuntimeError("SELECT * FROM card WHERE number = '" + CARD + "'")  # noqa: S608

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://kassa.test"
    ) as client:
        response = await client.get("/api/explode", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    out = capsys.readouterr().out
    errors = [line for line in json_lines(out) if line["event"] == "unhandled_error"]
    assert len(errors) == 1
    assert errors[0]["request_id"] == "boom-1"
    assert errors[0]["level"] == "error"
    assert "RuntimeError" in errors[0]["exception"]
    assert CARD not in out


@pytest.mark.parametrize(
    "text",
    [
        "card 4111111111111111 declined",
        "card 4111 1111 1111 1111 declined",
        "card 4111-1111-1111-1111 declined",
        "card 4111111111111111 12/2030",
        "pan=4242424242424242,exp=12",
        "amex 3782 822463 10005",
        "number:5555555555554444",
    ],
)
def test_redact_text_masks_luhn_valid_card_numbers(text: str) -> None:
    redacted = redact_text(text)
    assert REDACTED in redacted
    digits = "".join(ch for ch in redacted if ch.isdigit())
    for card in ("4111111111111111", "4242424242424242", "378282246310005", "5555555555554444"):
        assert card not in digits


@pytest.mark.parametrize(
    "text",
    [
        "order 1234567890123 shipped",
        "timestamp 2026-01-31 10:20:30",
        "amount 99999999",
        "id 4111111111111112",
        "short 4111 1111",
    ],
)
def test_redact_text_keeps_digit_runs_that_are_not_card_numbers(text: str) -> None:
    assert redact_text(text) == text


def test_redact_text_masks_bearer_tokens() -> None:
    redacted = redact_text("Authorization: Bearer abc.DEF-123_xyz~+/=")
    assert "abc.DEF" not in redacted
    assert REDACTED in redacted


def test_redact_text_masks_jwts_anywhere() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    redacted = redact_text(f"token was {jwt} in the message")
    assert jwt not in redacted
    assert "eyJ" not in redacted
    assert redacted.startswith("token was ")


def test_redact_text_masks_webhook_and_stripe_secrets() -> None:
    redacted = redact_text("secret whsec_abcDEF123 and key sk_live_ZZZ999")
    assert "whsec_abc" not in redacted
    assert "sk_live_ZZZ" not in redacted


def test_a_webhook_secret_is_redacted_whole_base64_and_all() -> None:
    secret = "whsec_MfKQ9r8GK+qrTwj/UPD8hh5oZg2y0=="
    redacted = redact_text(f"signing with {secret} now")
    assert redacted == "signing with [REDACTED] now"


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "current_password",
        "new_password",
        "cvc",
        "number",
        "access_token",
        "refresh_token",
        "Authorization",
        "jwt_secret",
        "secret",
    ],
)
def test_redact_value_masks_sensitive_keys(key: str) -> None:
    assert redact_value(key, "plain-value") == REDACTED


def test_redact_value_masks_nested_sensitive_keys() -> None:
    value = {"details": {"number": CARD, "cvc": CVC, "exp_month": 12}, "amount": 1050}
    assert redact_value("body", value) == {
        "details": {"number": REDACTED, "cvc": REDACTED, "exp_month": 12},
        "amount": 1050,
    }


def test_redact_value_masks_card_numbers_in_lists_and_plain_keys() -> None:
    assert redact_value("notes", ["ok", f"paid with {CARD}"]) == ["ok", f"paid with {REDACTED}"]
    assert redact_value("message", f"card {CARD}") == f"card {REDACTED}"


def test_redact_value_masks_a_card_number_given_as_an_integer() -> None:
    assert redact_value("pan", int(CARD)) == REDACTED


def test_redact_value_keeps_ordinary_values() -> None:
    assert redact_value("amount", 1050) == 1050
    assert redact_value("ok", True) is True
    assert redact_value("route", "/api/payments/{payment_id}") == "/api/payments/{payment_id}"
    assert redact_value("nothing", None) is None


# Metrics ----------------------------------------------------------------------------------


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return response.text


def sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def label_values(text: str, label: str) -> set[str]:
    return {
        s.labels[label]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if label in s.labels
    }


async def test_metrics_is_prometheus_text(api: Api) -> None:
    response = await api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert {"http_requests", "http_request_duration_seconds", "kassa_payments"} <= names


async def test_http_requests_total_counts_by_route_template_method_and_status(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment_id(api.client, user.headers)
    labels = {"route": "/api/payments/{payment_id}", "method": "GET", "status": "200"}
    before = sample(await scrape(api.client), "http_requests_total", **labels)
    for _ in range(3):
        response = await api.client.get(f"/api/payments/{payment}", headers=user.headers)
        assert response.status_code == 200
    after = sample(await scrape(api.client), "http_requests_total", **labels)
    assert after - before == 3


async def test_http_request_duration_is_observed_by_route_template_method_and_status(
    api: Api,
) -> None:
    user = await register_user(api.client)
    payment = await completed_payment_id(api.client, user.headers)
    labels = {"route": "/api/payments/{payment_id}/status", "method": "GET", "status": "200"}
    before = sample(await scrape(api.client), "http_request_duration_seconds_count", **labels)
    await api.client.get(f"/api/payments/{payment}/status", headers=user.headers)
    text = await scrape(api.client)
    assert sample(text, "http_request_duration_seconds_count", **labels) - before == 1
    assert sample(text, "http_request_duration_seconds_bucket", le="+Inf", **labels) >= 1


async def test_metrics_never_label_a_raw_id_or_path(api: Api) -> None:
    user = await register_user(api.client)
    payment = await completed_payment_id(api.client, user.headers)
    await api.client.get(f"/api/payments/{payment}", headers=user.headers)
    await api.client.get(f"/api/payments/{payment}/status", headers=user.headers)
    await api.client.get("/api/no-such-route/0123456789abcdef")
    text = await scrape(api.client)
    assert payment not in text
    assert "0123456789abcdef" not in text
    routes = label_values(text, "route")
    assert "/api/payments/{payment_id}" in routes
    assert all("{" in r or not any(ch.isdigit() for ch in r) for r in routes)


async def test_errors_are_counted_with_their_status(api: Api) -> None:
    labels = {"route": "/api/auth/profile", "method": "GET", "status": "401"}
    before = sample(await scrape(api.client), "http_requests_total", **labels)
    await api.client.get("/api/auth/profile")
    after = sample(await scrape(api.client), "http_requests_total", **labels)
    assert after - before == 1


async def test_payments_total_increases_after_create_and_process(api: Api) -> None:
    user = await register_user(api.client)
    pending = {"status": "pending", "payment_method": "credit_card", "currency": "EUR"}
    completed = {**pending, "status": "completed"}
    text = await scrape(api.client)
    pending_before = sample(text, "kassa_payments_total", **pending)
    completed_before = sample(text, "kassa_payments_total", **completed)
    created = await api.client.post(
        "/api/payments", json=payment_body(currency="eur"), headers=user.headers
    )
    assert created.status_code == 201
    after_create = await scrape(api.client)
    assert sample(after_create, "kassa_payments_total", **pending) - pending_before == 1
    processed = await api.client.post(
        "/api/payments/process", json={"payment_id": created.json()["id"]}, headers=user.headers
    )
    assert processed.json()["status"] == "completed"
    after_process = await scrape(api.client)
    assert sample(after_process, "kassa_payments_total", **completed) - completed_before == 1


async def test_payments_total_counts_failures_by_status(api: Api) -> None:
    user = await register_user(api.client)
    failed = {"status": "failed", "payment_method": "debit_card", "currency": "USD"}
    before = sample(await scrape(api.client), "kassa_payments_total", **failed)
    created = await api.client.post(
        "/api/payments",
        json=payment_body(method="debit_card", details=card_details("4000000000000002")),
        headers=user.headers,
    )
    await api.client.post(
        "/api/payments/process", json={"payment_id": created.json()["id"]}, headers=user.headers
    )
    after = sample(await scrape(api.client), "kassa_payments_total", **failed)
    assert after - before == 1


async def test_metrics_never_hold_card_data(api: Api) -> None:
    user = await register_user(api.client)
    await api.client.post(
        "/api/payments",
        json=payment_body(details=card_details(CARD, cvc=CVC)),
        headers=user.headers,
    )
    text = await scrape(api.client)
    assert CARD not in text
    assert CARD[-4:] not in label_values(text, "last4")


async def completed_payment_id(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    created = await client.post("/api/payments", json=payment_body(), headers=headers)
    assert created.status_code == 201, created.text
    payment_id: str = created.json()["id"]
    processed = await client.post(
        "/api/payments/process", json={"payment_id": payment_id}, headers=headers
    )
    assert processed.status_code == 200, processed.text
    return payment_id


async def test_db_pool_metrics_count_connections_in_use(api: Api) -> None:
    from prometheus_client import REGISTRY

    def in_use() -> float:
        return REGISTRY.get_sample_value("kassa_db_connections_in_use") or 0.0

    before = in_use()
    async with api.container.db.engine.connect():
        assert in_use() == before + 1
    assert in_use() == before
    assert (REGISTRY.get_sample_value("kassa_db_connections_opened_total") or 0) >= 1


def test_redaction_keeps_uuids_whose_digits_look_like_a_card() -> None:
    from kassa.observability.logging import redact_text

    ident = "bcff2569-0039-4766-80dd-805ae5fe6a08"
    assert redact_text(f"event {ident}") == f"event {ident}"
    assert "4111111111111111" not in redact_text(f"event {ident} card 4111111111111111")


def _redact_text_slowly(text: str) -> str:
    """The redaction without its shortcuts: every pattern, every value."""
    text = logging_module._BEARER.sub(r"\1 " + logging_module.REDACTED, text)
    text = logging_module._JWT.sub(logging_module.REDACTED, text)
    text = logging_module._SECRET_WORDS.sub(logging_module.REDACTED, text)
    return logging_module._mask_card_numbers(text)


_REDACTION_ALPHABET = "0123456789 -abcdefXYZ:/_."
_REDACTION_PIECES = st.sampled_from(
    [
        "4242424242424242",
        "4111 1111 1111 1111",
        "5555-5555-5555-4444",
        "Bearer abc.def",
        "bEaReR tok",
        "eyJhbGciOi.eyJzdWIi.sig",
        "whsec_abc123",
        "sk_test_abc",
        "rk_live_xyz",
        "2026-11-27T13:25:00.752499Z",
        "bcff2569-0039-4766-8012-123456789012",
    ]
)


@given(
    st.lists(st.one_of(st.text(_REDACTION_ALPHABET, max_size=30), _REDACTION_PIECES), max_size=6)
)
@settings(max_examples=400, deadline=None)
def test_the_fast_redaction_path_changes_nothing_the_full_one_would_not(parts: list[str]) -> None:
    text = "".join(parts)
    assert logging_module.redact_text(text) == _redact_text_slowly(text)
