"""Stripe refusing kassa's own request (HTTP 400): an integration fault, not a decline.

Stock localstripe 1.15 is the real-world case: it answers the PaymentIntent the current SDK
makes with 400 `invalid_request_error` ("Unexpected allowed_payment_method_types") and
`code: null`. kassa fails that payment with `processor_error` (the card was not charged, and
it is not the customer's decline) and logs Stripe's type and message for the operator.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from kassa.observability.logging import configure_logging
from kassa.processors.base import CardData, ChargeDeclined, ChargeRequest, FailureCode, WalletData
from kassa.processors.customers import MemoryCustomerStore
from kassa.processors.stripe import _Refused
from tests.conftest import card_details, create_payment, register_user
from tests.processors.conftest import LOCALSTRIPE_SCRIPT, stripe_processor


@pytest.fixture(scope="module")
def stock_localstripe_url() -> Iterator[str]:
    """localstripe with its API as released (state in memory only)."""
    process = subprocess.Popen(
        [sys.executable, str(LOCALSTRIPE_SCRIPT), "--port", "0", "--as-released"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("PORT "), line
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


@pytest.fixture
def logged(capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """kassa's log lines as configure_logging() renders them on stdout: configured here into
    a buffer (capsys holds stdout only once the test runs), or again by a test that builds
    an app, into capsys; call it for the `stripe_request_refused` events."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        configure_logging("INFO", "json")

    def refusals() -> list[dict[str, Any]]:
        out = buffer.getvalue() + capsys.readouterr().out
        events = [json.loads(line) for line in out.splitlines() if line.strip()]
        return [e for e in events if e.get("event") == "stripe_request_refused"]

    yield refusals
    # capsys closes its buffer after the test; park the handler until logging is set again.
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.stream = io.StringIO()


async def test_a_refused_request_fails_with_processor_error_and_logs_stripes_words(
    stock_localstripe_url: str, logged: Any
) -> None:
    processor = stripe_processor(stock_localstripe_url, MemoryCustomerStore())
    request = ChargeRequest(
        reference="pay_refused_1",
        amount=1050,
        currency="EUR",
        customer_id="user-refused-1",
        card=CardData("4242424242424242", 12, 2099, "123"),
    )
    try:
        with pytest.raises(ChargeDeclined) as declined:
            await processor.prepare_charge(request)
    finally:
        await processor.aclose()
    result = declined.value.result
    assert result.failure_code is FailureCode.PROCESSOR_ERROR
    assert "not a decline" in (result.failure_message or "")
    [refusal] = logged()
    assert refusal["level"] == "error"
    assert refusal["operation"] == "create_payment_intent"
    assert refusal["status"] == 400
    assert refusal["type"] == "invalid_request_error"
    assert refusal["message"] == "Unexpected allowed_payment_method_types"
    assert refusal["code"] is None


async def test_the_user_sees_a_failed_payment_with_processor_error_not_a_decline(
    api_factory: Any, stock_localstripe_url: str, logged: Any
) -> None:
    processor = stripe_processor(stock_localstripe_url, MemoryCustomerStore())
    api = await api_factory(processor=processor, log_level="INFO")
    user = await register_user(api.client)
    payment = await create_payment(api.client, user, details=card_details())
    response = await api.client.post(
        "/api/payments/process", json={"payment_id": payment["id"]}, headers=user.headers
    )
    await processor.aclose()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "failed"
    assert body["failure_code"] == "processor_error"
    assert body["failure_code"] != "card_declined"
    [refusal] = logged()
    assert refusal["message"] == "Unexpected allowed_payment_method_types"
    transactions = await api.client.get("/api/transactions", headers=user.headers)
    [charge] = [t for t in transactions.json()["data"] if t["payment_id"] == payment["id"]]
    assert charge["status"] == "failed"


@pytest.mark.parametrize(
    ("status", "code", "failure"),
    [
        (400, None, FailureCode.PROCESSOR_ERROR),
        (400, "parameter_unknown", FailureCode.PROCESSOR_ERROR),
        (400, "parameter_missing", FailureCode.PROCESSOR_ERROR),
        (400, "resource_missing", FailureCode.PROCESSING_ERROR),  # an id the client gave
        (400, "payment_intent_unexpected_state", FailureCode.PROCESSING_ERROR),
        (404, "resource_missing", FailureCode.PROCESSING_ERROR),
        (None, None, FailureCode.PROCESSING_ERROR),  # kassa's own refusal (a bad token)
    ],
)
def test_only_a_400_about_kassas_request_is_a_processor_error(
    status: int | None, code: str | None, failure: FailureCode
) -> None:
    assert _Refused(code, status).failure is failure


async def test_an_unknown_wallet_token_stays_processing_error_and_is_logged_as_a_warning(
    localstripe_url: str, logged: Any
) -> None:
    processor = stripe_processor(localstripe_url, MemoryCustomerStore())
    request = ChargeRequest(
        reference="pay_refused_2",
        amount=1050,
        currency="EUR",
        customer_id="user-refused-2",
        wallet=WalletData("google_pay", "pm_nobody_made_this"),
    )
    try:
        with pytest.raises(ChargeDeclined) as declined:
            await processor.prepare_charge(request)
    finally:
        await processor.aclose()
    assert declined.value.result.failure_code is FailureCode.PROCESSING_ERROR
    [refusal] = logged()
    assert refusal["level"] == "warning"
    assert refusal["operation"] == "retrieve_payment_method"
    assert refusal["status"] == 404
    assert refusal["message"]
    assert "pm_nobody_made_this" not in str(refusal)
