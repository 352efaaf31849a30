"""A JSON body that repeats a key, at any depth, is refused with a 400 problem document
(`duplicate_key`) before any route reads it: the payment of 1 that
`{"amount": 100, …, "amount": 1}` created is not created, on either database."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kassa.edge.jsondepth import repeated_key, repeats_no_key
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


@pytest.mark.parametrize(
    ("body", "clean"),
    [
        (b'{"a": 1, "b": {"c": 2}}', True),
        (b'{"a": "b:", "c" : [1, {"d": 1, "e": "\\":"}]}', True),  # colons inside strings
        (b'{"k\\"": 1, "k": 2}', True),  # an escaped quote ends no key
        (b'{"a"\n :\t1, "a" : 2}', False),  # whitespace before the colon
        (b'{"a": {"b": 1, "b": 2}}', False),
        (b'{"\\u0061": 1, "a": 2}', False),  # two spellings of one key
        (b"[1, 2]", True),
        (b'{"a": NaN}', False),  # the routes' parser takes it; the slow reading decides
        (b'{"a": 123456789012345678901234567890, "a": 1}', False),
        (b"not json", False),
    ],
)
def test_the_quick_check_passes_only_bodies_without_a_repeat(body: bytes, clean: bool) -> None:
    """A body the quick check passes has no repeated key by the slow reading; one it does
    not pass goes to the slow reading, which has the last word."""
    assert repeats_no_key(body) is clean
    if clean:
        assert repeated_key(body) is None


def _json_text(draw: st.DrawFn, depth: int = 0) -> str:
    """JSON text whose objects may repeat keys (which `json.dumps` of a dict cannot write)."""
    kind = draw(st.sampled_from(["scalar", "array", "object"] if depth < 3 else ["scalar"]))
    if kind == "scalar":
        return json.dumps(draw(st.one_of(st.integers(), st.text(max_size=6), st.booleans())))
    items = draw(st.integers(min_value=0, max_value=4))
    if kind == "array":
        return "[" + ", ".join(_json_text(draw, depth + 1) for _ in range(items)) + "]"
    keys = st.sampled_from(["a", "b", 'q"', "a:", "\\"])
    pairs = (
        f"{json.dumps(draw(keys))}{draw(st.sampled_from([':', ' :', ': ']))}"
        f"{_json_text(draw, depth + 1)}"
        for _ in range(items)
    )
    return "{" + ", ".join(pairs) + "}"


@given(st.composite(_json_text)())
def test_the_quick_check_and_the_slow_reading_agree(text: str) -> None:
    body = text.encode()
    if repeats_no_key(body):
        assert repeated_key(body) is None
    else:
        assert repeated_key(body) is not None


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
