"""Checkout session requests and responses (the contract's "Checkout sessions" shapes)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kassa.money import normalize_currency
from kassa.payments.schemas import Amount, Description, Metadata
from kassa.text import NoControl

MAX_URL_LENGTH = 2048
SESSION_ID_PLACEHOLDER = "{CHECKOUT_SESSION_ID}"
CheckoutStatus = Literal["open", "complete", "expired"]


def redirect_url(value: str) -> str:
    """An absolute http(s) address a customer's browser is sent to: no spaces, no control
    characters, no credentials (a URL with `user:pass@` is a classic phishing disguise)."""
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(f"must be at most {MAX_URL_LENGTH} characters")
    if any(ch.isspace() for ch in value):
        raise ValueError("must not contain spaces")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises for a port that is not a number)
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme.lower() not in {"http", "https"}:
        raise ValueError("must be an http or https URL")
    if not parts.hostname:
        raise ValueError("must name a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain credentials")
    return value


RedirectUrl = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description=(
            "An absolute http(s) URL; `{CHECKOUT_SESSION_ID}` in it is replaced by the session's id"
        ),
        examples=["https://shop.example/thanks?session={CHECKOUT_SESSION_ID}"],
    ),
    NoControl,
]

CREATE_EXAMPLE: dict[str, Any] = {
    "amount": 2500,
    "currency": "EUR",
    "description": "Order 1001",
    "success_url": "https://shop.example/thanks?session={CHECKOUT_SESSION_ID}",
    "cancel_url": "https://shop.example/cart",
    "metadata": {"order_id": "1001"},
}


class CreateCheckoutSessionRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [CREATE_EXAMPLE]}
    )

    amount: Amount
    currency: Annotated[str, Field(min_length=3, max_length=3, examples=["EUR"]), NoControl]
    success_url: RedirectUrl
    cancel_url: RedirectUrl
    description: Description | None = None
    capture: Literal["automatic", "manual"] = "automatic"
    metadata: Metadata | None = None

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return normalize_currency(value)

    @field_validator("success_url", "cancel_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return redirect_url(value)


class CheckoutSessionOut(BaseModel):
    id: uuid.UUID
    url: str = Field(description="kassa's page for this session: send the customer there")
    status: CheckoutStatus
    amount: int
    currency: str
    description: str | None
    capture: Literal["automatic", "manual"]
    metadata: dict[str, str]
    success_url: str
    cancel_url: str
    payment_id: uuid.UUID | None = Field(description="The payment that completed the session")
    livemode: bool
    created_at: datetime
    expires_at: datetime
    completed_at: datetime | None
