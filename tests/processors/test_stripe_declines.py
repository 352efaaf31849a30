"""Every documented Stripe decline maps to one of the contract's failure codes, and every
other Stripe error to the right kind of answer.

Stripe's answers are scripted at the HTTP layer with the error payloads Stripe documents
(docs.stripe.com/api/errors, docs.stripe.com/declines/codes), so the SDK builds its own
error objects from them exactly as it does in production; the connector sees nothing else.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import stripe

import kassa.processors.stripe as stripe_connector
from kassa.processors.base import (
    FAILURE_MESSAGES,
    CardData,
    ChargeDeclined,
    ChargeRequest,
    FailureCode,
    Outcome,
    ProcessorUnavailable,
    WalletData,
)
from kassa.processors.customers import MemoryCustomerStore
from kassa.processors.stripe import StripeProcessor, failure_code_for

CARD = FailureCode.CARD_DECLINED
FUNDS = FailureCode.INSUFFICIENT_FUNDS
EXPIRED = FailureCode.EXPIRED_CARD
CVC = FailureCode.INCORRECT_CVC
PROCESSING = FailureCode.PROCESSING_ERROR

# docs.stripe.com/declines/codes: every card decline code, and what kassa answers for it.
DECLINE_CODES: dict[str, FailureCode] = {
    "authentication_required": CARD,
    "approve_with_id": CARD,
    "call_issuer": CARD,
    "card_not_supported": CARD,
    "card_velocity_exceeded": FUNDS,
    "currency_not_supported": CARD,
    "do_not_honor": CARD,
    "do_not_try_again": CARD,
    "duplicate_transaction": CARD,
    "expired_card": EXPIRED,
    "fraudulent": CARD,
    "generic_decline": CARD,
    "incorrect_number": CARD,
    "incorrect_cvc": CVC,
    "incorrect_pin": CARD,
    "incorrect_zip": CARD,
    "insufficient_funds": FUNDS,
    "invalid_account": CARD,
    "invalid_amount": CARD,
    "invalid_cvc": CVC,
    "invalid_expiry_month": EXPIRED,
    "invalid_expiry_year": EXPIRED,
    "invalid_number": CARD,
    "invalid_pin": CARD,
    "issuer_not_available": PROCESSING,
    "lost_card": CARD,
    "merchant_blacklist": CARD,
    "new_account_information_available": CARD,
    "no_action_taken": CARD,
    "not_permitted": CARD,
    "offline_pin_required": CARD,
    "online_or_offline_pin_required": CARD,
    "pickup_card": CARD,
    "pin_try_exceeded": CARD,
    "processing_error": PROCESSING,
    "reenter_transaction": PROCESSING,
    "restricted_card": CARD,
    "revocation_of_all_authorizations": CARD,
    "revocation_of_authorization": CARD,
    "security_violation": CARD,
    "service_not_allowed": CARD,
    "stolen_card": CARD,
    "stop_payment_order": CARD,
    "testmode_decline": CARD,
    "transaction_not_allowed": CARD,
    "try_again_later": PROCESSING,
    "withdrawal_count_exceeded": FUNDS,
}
# docs.stripe.com/error-codes: card errors that come with a `code` and no decline code.
CARD_ERROR_CODES: dict[str, FailureCode] = {
    "card_declined": CARD,
    "expired_card": EXPIRED,
    "incorrect_cvc": CVC,
    "incorrect_number": CARD,
    "incorrect_zip": CARD,
    "invalid_cvc": CVC,
    "invalid_expiry_month": EXPIRED,
    "invalid_expiry_year": EXPIRED,
    "invalid_number": CARD,
    "processing_error": PROCESSING,
    "card_decline_rate_limit_exceeded": CARD,
    "authentication_required": CARD,
}

INTENT = "pi_3ScriptedIntent"
METHOD = "pm_1ScriptedMethod"
CUSTOMER = "cus_Scripted"


def card_error(code: str, decline_code: str | None = None) -> dict[str, Any]:
    """Stripe's documented card error payload (HTTP 402)."""
    error: dict[str, Any] = {
        "type": "card_error",
        "code": code,
        "message": "Your card was declined.",
        "doc_url": f"https://docs.stripe.com/error-codes/{code.replace('_', '-')}",
        "request_log_url": "https://dashboard.stripe.com/test/logs/req_scripted",
        "charge": "ch_3Scripted",
        "payment_method": {"id": METHOD, "object": "payment_method", "type": "card"},
    }
    if decline_code is not None:
        error["decline_code"] = decline_code
        error["advice_code"] = "do_not_try_again"
    return {"error": error}


def intent(status: str, last_payment_error: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": INTENT,
        "object": "payment_intent",
        "amount": 1050,
        "currency": "eur",
        "customer": CUSTOMER,
        "payment_method": METHOD,
        "status": status,
        "last_payment_error": last_payment_error,
        "metadata": {},
    }


Answer = tuple[int, dict[str, Any]]


class ScriptedStripe(stripe.HTTPClient):
    """Answers the SDK's HTTP requests from a script: (method, path) -> (status, JSON body).
    Anything not scripted gets the answer of a plain successful flow."""

    name = "scripted"

    def __init__(self, script: Mapping[tuple[str, str], Answer | Exception]) -> None:
        super().__init__()
        self.script = dict(script)
        self.calls: list[tuple[str, str]] = []

    def _default(self, method: str, path: str) -> Answer:
        if path == "/v1/customers":
            return 200, {"id": CUSTOMER, "object": "customer"}
        if path == "/v1/payment_methods":
            return 200, {"id": METHOD, "object": "payment_method", "customer": None}
        if path.endswith("/attach"):
            return 200, {"id": METHOD, "object": "payment_method", "customer": CUSTOMER}
        if path == "/v1/payment_intents" or (method == "get" and path.startswith("/v1/pay")):
            return 200, intent("requires_confirmation")
        if path.endswith("/confirm"):
            return 200, intent("succeeded")
        raise AssertionError(f"unscripted request {method.upper()} {path}")

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        path = urlsplit(url).path
        self.calls.append((method, path))
        answer = self.script.get((method, path)) or self._default(method, path)
        if isinstance(answer, Exception):
            raise answer
        status, body = answer
        return json.dumps(body).encode(), status, {"request-id": "req_scripted"}

    def request(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the connector only makes asynchronous requests")

    async def close_async(self) -> None:
        return None


def connector(script: Mapping[tuple[str, str], Answer | Exception]) -> StripeProcessor:
    http = ScriptedStripe(script)
    client = stripe.StripeClient("sk_test_scripted", http_client=http, max_network_retries=0)
    return StripeProcessor(client, MemoryCustomerStore(), http)


def charge_request(prepared: bool = True) -> ChargeRequest:
    return ChargeRequest(
        reference=f"kassa_charge_{uuid.uuid4().hex}",
        amount=1050,
        currency="EUR",
        customer_id=str(uuid.uuid4()),
        card=CardData("4242424242424242", 12, 2030, "123"),
        processor_reference=INTENT if prepared else None,
    )


CONFIRM = ("post", f"/v1/payment_intents/{INTENT}/confirm")
ATTACH = ("post", f"/v1/payment_methods/{METHOD}/attach")
RETRIEVE = ("get", f"/v1/payment_intents/{INTENT}")


# Declines ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("decline_code", "expected"), sorted(DECLINE_CODES.items()))
async def test_a_decline_on_confirming_maps_to_a_contract_failure_code(
    decline_code: str, expected: FailureCode
) -> None:
    processor = connector({CONFIRM: (402, card_error("card_declined", decline_code))})
    result = await processor.charge(charge_request())
    assert (result.outcome, result.failure_code) == (Outcome.FAILED, expected)
    assert result.failure_message == FAILURE_MESSAGES[expected]  # kassa's words, not Stripe's
    assert result.processor_reference == INTENT


@pytest.mark.parametrize(("decline_code", "expected"), sorted(DECLINE_CODES.items()))
async def test_a_decline_on_attaching_the_card_is_a_definite_answer_of_prepare(
    decline_code: str, expected: FailureCode
) -> None:
    processor = connector({ATTACH: (402, card_error("card_declined", decline_code))})
    with pytest.raises(ChargeDeclined) as declined:
        await processor.prepare_charge(charge_request(prepared=False))
    assert declined.value.result.failure_code is expected


@pytest.mark.parametrize(("decline_code", "expected"), sorted(DECLINE_CODES.items()))
async def test_a_decline_recorded_on_the_payment_intent_is_what_lookup_answers(
    decline_code: str, expected: FailureCode
) -> None:
    declined = card_error("card_declined", decline_code)["error"]
    processor = connector({RETRIEVE: (200, intent("requires_payment_method", declined))})
    result = await processor.lookup_charge(INTENT)
    assert result is not None
    assert (result.outcome, result.failure_code) == (Outcome.FAILED, expected)


@pytest.mark.parametrize(("code", "expected"), sorted(CARD_ERROR_CODES.items()))
async def test_card_error_codes_without_a_decline_code_map_too(
    code: str, expected: FailureCode
) -> None:
    processor = connector({CONFIRM: (402, card_error(code))})
    result = await processor.charge(charge_request())
    assert result.failure_code is expected


def test_a_decline_code_stripe_adds_later_is_card_declined() -> None:
    assert failure_code_for("card_declined", "some_future_reason") is CARD
    assert failure_code_for(None, None) is CARD


def test_every_mapped_code_is_a_contract_failure_code() -> None:
    contract = set(FailureCode)
    assert {failure_code_for("card_declined", code) for code in DECLINE_CODES} <= contract


def test_the_connector_never_special_cases_a_card_number() -> None:
    source = Path(stripe_connector.__file__).read_text(encoding="utf-8")
    assert re.findall(r"\d{12,19}", source) == []


# Other errors ------------------------------------------------------------------------------


def api_error(kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"type": kind, "code": code, "message": "Scripted."}}


@pytest.mark.parametrize(
    "answer",
    [
        (500, api_error("api_error")),
        (502, api_error("api_error")),
        (503, api_error("api_error")),
        (429, api_error("invalid_request_error", "rate_limit")),
        (401, api_error("invalid_request_error", "api_key_expired")),
        (403, api_error("invalid_request_error", "secret_key_required")),
        (409, api_error("idempotency_error")),
        stripe.APIConnectionError("connection reset", should_retry=False),
    ],
    ids=["500", "502", "503", "429", "401", "403", "409", "network"],
)
async def test_an_unknown_or_transient_answer_on_confirming_is_processor_unavailable(
    answer: Answer | Exception,
) -> None:
    processor = connector({CONFIRM: answer})
    with pytest.raises(ProcessorUnavailable):
        await processor.charge(charge_request())


async def test_an_idempotency_error_is_not_taken_for_a_decline() -> None:
    processor = connector({CONFIRM: (400, api_error("idempotency_error"))})
    with pytest.raises(ProcessorUnavailable):
        await processor.charge(charge_request())


async def test_a_refused_confirm_is_settled_by_what_the_payment_intent_says() -> None:
    # The answer to an earlier confirm was lost; confirming again is refused because the
    # PaymentIntent already succeeded: that success is the answer, and nothing is charged twice.
    refused = (400, api_error("invalid_request_error", "payment_intent_unexpected_state"))
    processor = connector({CONFIRM: refused, RETRIEVE: (200, intent("requires_confirmation"))})
    processor_after = connector({CONFIRM: refused, RETRIEVE: (200, intent("succeeded"))})
    failed = await processor.charge(charge_request())
    assert (failed.outcome, failed.failure_code) == (Outcome.FAILED, PROCESSING)
    assert (await processor_after.charge(charge_request())).outcome is Outcome.SUCCEEDED


async def test_a_payment_intent_still_processing_is_an_unknown_outcome() -> None:
    processor = connector({RETRIEVE: (200, intent("processing"))})
    with pytest.raises(ProcessorUnavailable):
        await processor.lookup_charge(INTENT)
    with pytest.raises(ProcessorUnavailable):
        await processor.charge(charge_request())


async def test_a_stored_payment_intent_stripe_does_not_know_is_never_charged_again() -> None:
    missing = (404, api_error("invalid_request_error", "resource_missing"))
    processor = connector({RETRIEVE: missing})
    with pytest.raises(ProcessorUnavailable):
        await processor.lookup_charge(INTENT)
    with pytest.raises(ProcessorUnavailable):
        await processor.charge(charge_request())
    assert all(path != CONFIRM[1] for _, path in processor._http_client.calls)  # type: ignore[union-attr]


async def test_a_reference_that_is_no_payment_intent_was_never_charged() -> None:
    processor = connector({})
    assert await processor.lookup_charge("kassa_charge_0123") is None


async def test_a_payment_that_needs_3d_secure_is_canceled_and_fails() -> None:
    needs_action = intent("requires_action")
    canceled = intent("canceled")
    processor = connector(
        {
            CONFIRM: (200, needs_action),
            ("post", f"/v1/payment_intents/{INTENT}/cancel"): (200, canceled),
        }
    )
    result = await processor.charge(charge_request())
    assert (result.outcome, result.failure_code) == (
        Outcome.FAILED,
        FailureCode.AUTHENTICATION_FAILED,
    )


async def test_a_wallet_token_that_is_no_stripe_id_fails_without_making_a_payment_method() -> None:
    processor = connector({})
    request = ChargeRequest(
        reference="kassa_charge_w",
        amount=500,
        currency="USD",
        customer_id="u",
        wallet=WalletData("paypal", "EC-not-a-stripe-id"),
    )
    with pytest.raises(ChargeDeclined) as declined:
        await processor.prepare_charge(request)
    assert declined.value.result.failure_code is PROCESSING
    calls = processor._http_client.calls  # type: ignore[union-attr]
    assert all("payment_methods" not in path for _, path in calls)
