"""A JSON body that repeats a key, at any depth, is refused with a 400 problem document
(`duplicate_key`) before any route reads it: the payment of 1 that
`{"amount": 100, …, "amount": 1}` created is not created, on either database."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kassa.edge.jsondepth import repeated_key
from tests.conftest import Api, card_details, register_user

JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (b'{"a": 1, "a": 2}', "a"),
        (b'{"a": 1, "a": 1}', "a"),  # the same value twice is still two keys
        (b'{"a": {"b": [1, {"c": 1, "c": 2}]}}', "a.b.1.c"),
        (b'[{"x": 1}, {"y": 1, "y": 1}]', "1.y"),
        (b'{"m": {"4242424242424242": 1, "4242424242424242": 2}}', "m.*"),
        (b'{"a": 1, "b": {"a": 1}}', None),  # the same key in two objects
        (b'{"a": "\\"a\\": 1"}', None),
        (b"[1, 2, 3]", None),
        (b"not json", None),
        (b"", None),
    ],
)
def test_repeated_key_finds_the_path(body: bytes, path: str | None) -> None:
    assert repeated_key(body) == path


def _payment_body_text(amount_twice: bool) -> str:
    details = json.dumps(card_details())
    amount = '"amount": 100, ' + ('"amount": 1, ' if amount_twice else "")
    return (
        "{" + amount + '"currency": "USD", "payment_method": "credit_card", '
        f'"details": {details}' + "}"
    )


def _assert_duplicate_key(response: Any, field: str) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "duplicate_key"
    assert body["errors"] == [{"field": field, "message": "repeated key"}]


async def test_a_payment_with_a_repeated_amount_is_refused_and_not_created(api: Api) -> None:
    user = await register_user(api.client)
    response = await api.client.post(
        "/api/payments",
        content=_payment_body_text(amount_twice=True),
        headers={**user.headers, **JSON, "Idempotency-Key": "dup-1"},
    )
    _assert_duplicate_key(response, "amount")
    listed = await api.client.get("/api/events", headers=user.headers)
    assert [e for e in listed.json()["data"] if e["type"] == "payment.created"] == []
    # Nothing was kept under the idempotency key: the corrected body goes through with it.
    fixed = await api.client.post(
        "/api/payments",
        content=_payment_body_text(amount_twice=False),
        headers={**user.headers, **JSON, "Idempotency-Key": "dup-1"},
    )
    assert fixed.status_code == 201, fixed.text
    assert fixed.json()["amount"] == 100


@pytest.mark.parametrize(
    ("path", "text", "field"),
    [
        (
            "/api/auth/login",
            '{"email": "a@example.com", "email": "b@example.com", "password": "x"}',
            "email",
        ),
        (
            "/api/payments",
            '{"amount": 100, "currency": "USD", "payment_method": "credit_card", '
            '"details": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2099, '
            '"cvc": "123", "cvc": "999"}}',
            "details.cvc",
        ),
        (
            "/api/payments",
            '{"amount": 100, "currency": "USD", "payment_method": "digital_wallet", '
            '"details": {"wallet": "paypal", "token": "t"}, "metadata": {"k": "1", "k": "2"}}',
            "metadata.k",
        ),
        ("/api/payments/process", '{"payment_id": "a", "payment_id": "b"}', "payment_id"),
        ("/api/webhooks", '{"url": "https://a.example", "events": ["*"], "events": []}', "events"),
    ],
)
async def test_a_repeated_key_anywhere_in_any_body_is_a_400(
    api: Api, path: str, text: str, field: str
) -> None:
    user = await register_user(api.client)
    response = await api.client.post(path, content=text, headers={**user.headers, **JSON})
    _assert_duplicate_key(response, field)


async def test_every_body_route_declares_the_400_problem_codes(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    with_bodies = [
        (path, operation)
        for path, operations in spec["paths"].items()
        for operation in operations.values()
        if "requestBody" in operation
    ]
    assert len(with_bodies) >= 8
    for path, operation in with_bodies:
        declared = operation["responses"].get("400", {}).get("description", "")
        for code in ("duplicate_key", "malformed_json", "json_too_deep"):
            assert code in declared, (path, code)
