"""Small helpers for the checkout tests: open a session, read its page's form token."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.conftest import User

SHOP = "https://shop.example"
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')
_ATTEMPT = re.compile(r'name="attempt" value="(\d+)"')


def session_body(**overrides: Any) -> dict[str, Any]:
    return {
        "amount": 2500,
        "currency": "eur",
        "success_url": f"{SHOP}/thanks?session={{CHECKOUT_SESSION_ID}}",
        "cancel_url": f"{SHOP}/cart",
        **overrides,
    }


async def open_session(client: httpx.AsyncClient, user: User, **overrides: Any) -> dict[str, Any]:
    response = await client.post(
        "/api/checkout/sessions", json=session_body(**overrides), headers=user.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def form_of(html: str) -> dict[str, str]:
    """The hidden fields of the page's card form."""
    csrf, attempt = _CSRF.search(html), _ATTEMPT.search(html)
    assert csrf is not None, html
    assert attempt is not None, html
    return {"csrf": csrf.group(1), "attempt": attempt.group(1)}


def card_form(number: str = "4242424242424242", **overrides: str) -> dict[str, str]:
    return {
        "method": "card",
        "number": number,
        "expiry": "12/34",
        "cvc": "123",
        "holder_name": "Sam Cardholder",
        **overrides,
    }
