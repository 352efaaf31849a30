"""Amounts reach Stripe in Stripe's minor unit, exactly: the same number as kassa's for most
currencies, converted where Stripe's unit is not ISO 4217's (docs.stripe.com/currencies)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

import pytest
import stripe

from kassa.processors.base import ChargeDeclined, FailureCode, Outcome, RefundRequest
from kassa.processors.customers import MemoryCustomerStore
from kassa.processors.stripe import StripeProcessor, stripe_amount
from tests.processors.test_stripe_declines import INTENT, Answer, ScriptedStripe, charge_request

REFUNDS = "/v1/refunds"


class RecordingStripe(ScriptedStripe):
    """The scripted Stripe, keeping the form body of every POST by path."""

    def __init__(self, script: Mapping[tuple[str, str], Answer | Exception]) -> None:
        super().__init__(script)
        self.posted: dict[str, dict[str, list[str]]] = {}

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        if method == "post" and post_data:
            body = post_data.decode() if isinstance(post_data, bytes) else str(post_data)
            self.posted[url.split("://", 1)[-1].split("/", 1)[-1]] = parse_qs(body)
        return await super().request_async(method, url, headers, post_data)


def recording_connector() -> tuple[StripeProcessor, RecordingStripe]:
    http = RecordingStripe(
        {
            ("get", REFUNDS): (200, {"object": "list", "data": [], "has_more": False}),
            ("post", REFUNDS): (
                200,
                {"id": "re_1", "object": "refund", "status": "succeeded", "metadata": {}},
            ),
        }
    )
    client = stripe.StripeClient("sk_test_scripted", http_client=http, max_network_retries=0)
    return StripeProcessor(client, MemoryCustomerStore(), http), http


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (1050, "EUR", 1050),
        (500, "JPY", 500),
        (1230, "KWD", 1230),
        (500, "ISK", 50_000),  # 500 krónur: two decimals at Stripe, none in ISO 4217
        (1500, "MGA", 15),  # 15.00 ariary: zero-decimal at Stripe, two decimals in ISO 4217
        (1550, "MGA", None),  # 15.50 ariary cannot be said in Stripe's unit: never rounded
        (1500, "mga", 15),
    ],
)
def test_amounts_are_converted_to_stripes_minor_unit_exactly(
    amount: int, currency: str, expected: int | None
) -> None:
    assert stripe_amount(amount, currency) == expected


@pytest.mark.parametrize(("amount", "currency", "sent"), [(1050, "EUR", "1050"), (7, "ISK", "700")])
async def test_the_payment_intent_carries_stripes_amount(
    amount: int, currency: str, sent: str
) -> None:
    processor, http = recording_connector()
    request = dataclasses.replace(charge_request(prepared=False), amount=amount, currency=currency)
    assert await processor.prepare_charge(request) == INTENT
    assert http.posted["v1/payment_intents"]["amount"] == [sent]
    assert http.posted["v1/payment_intents"]["currency"] == [currency.lower()]


async def test_an_amount_stripe_cannot_express_is_declined_before_any_request() -> None:
    processor, http = recording_connector()
    request = dataclasses.replace(charge_request(prepared=False), amount=1550, currency="MGA")
    with pytest.raises(ChargeDeclined) as declined:
        await processor.prepare_charge(request)
    assert declined.value.result.failure_code is FailureCode.PROCESSING_ERROR
    assert http.calls == []


async def test_a_refund_carries_stripes_amount() -> None:
    processor, http = recording_connector()
    reference = f"kassa_refund_{uuid.uuid4().hex}"
    result = await processor.refund(RefundRequest(reference, INTENT, 300, "ISK"))
    assert result.outcome is Outcome.SUCCEEDED
    assert http.posted["v1/refunds"]["amount"] == ["30000"]


async def test_a_refund_stripe_cannot_express_fails_without_refunding() -> None:
    processor, http = recording_connector()
    reference = f"kassa_refund_{uuid.uuid4().hex}"
    result = await processor.refund(RefundRequest(reference, INTENT, 150, "MGA"))
    assert result.outcome is Outcome.FAILED
    assert http.calls == []
