"""Payment requests and responses.

Requests are strict: amounts are JSON integers (no floats, strings or booleans), unknown
fields are refused, and card data is checked (Luhn, expiry, CVC) before anything is stored.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    field_validator,
    model_validator,
)

from kassa.errors import FieldError, ValidationFailed
from kassa.money import normalize_currency
from kassa.payments.states import CHARGED, PaymentStatus
from kassa.text import NoControl, NoControlNoCardNumber, ProseNoCardNumber
from kassa.vault.cards import card_expired, detect_brand, normalize_card_number, validate_cvc

if TYPE_CHECKING:
    from kassa.payments.models import Payment

PaymentMethod = Literal["credit_card", "debit_card", "digital_wallet"]
CaptureMode = Literal["automatic", "manual"]
WalletName = Literal["apple_pay", "google_pay", "paypal"]
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=40), NoControlNoCardNumber]
MetadataValue = Annotated[str, StringConstraints(max_length=500), ProseNoCardNumber]
Metadata = Annotated[dict[MetadataKey, MetadataValue], Field(max_length=20)]
Description = Annotated[str, StringConstraints(max_length=500), ProseNoCardNumber]
Amount = Annotated[int, Field(gt=0, description="Minor units of the currency (1050 = 10.50 USD)")]
ReturnUrl = Annotated[str, StringConstraints(max_length=2048), NoControlNoCardNumber]


# Examples /docs sends as they stand ("Try it out"): the simulator's test card that succeeds,
# with an expiry far enough ahead that the committed document stays valid for decades.
CARD_PAYMENT_EXAMPLE: dict[str, Any] = {
    "amount": 1050,
    "currency": "USD",
    "payment_method": "credit_card",
    "details": {
        "number": "4242424242424242",
        "exp_month": 12,
        "exp_year": 2099,
        "cvc": "123",
        "holder_name": "Sam Cardholder",
    },
    "description": "Order 1001",
    "metadata": {"order_id": "1001"},
}
WALLET_PAYMENT_EXAMPLE: dict[str, Any] = {
    "amount": 1050,
    "currency": "USD",
    "payment_method": "digital_wallet",
    "details": {"wallet": "apple_pay", "token": "tok_wallet_example"},
}
PAYMENT_ID_EXAMPLE = "00000000-0000-4000-8000-000000000000"


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CardDetailsIn(StrictBody):
    number: Annotated[
        str, Field(max_length=64, description="12–19 digits; spaces/dashes allowed"), NoControl
    ]
    exp_month: Annotated[int, Field(ge=1, le=12)]
    exp_year: Annotated[int, Field(ge=1000, le=9999, description="Four digits")]
    cvc: Annotated[str, Field(max_length=8, description="3 or 4 digits"), NoControl]
    holder_name: Annotated[str, StringConstraints(max_length=100), NoControlNoCardNumber] | None = (
        None
    )

    @field_validator("number")
    @classmethod
    def _number(cls, value: str) -> str:
        return normalize_card_number(value)

    @model_validator(mode="after")
    def _expiry_and_cvc(self) -> CardDetailsIn:
        if card_expired(self.exp_month, self.exp_year, datetime.now(UTC)):
            raise ValueError("card has expired")
        validate_cvc(self.cvc, detect_brand(self.number))
        return self

    def __repr__(self) -> str:
        return "CardDetailsIn(<redacted>)"


class WalletDetailsIn(StrictBody):
    wallet: WalletName
    token: Annotated[str, StringConstraints(min_length=1, max_length=4096), NoControl]

    def __repr__(self) -> str:
        return f"WalletDetailsIn(wallet={self.wallet!r}, token=<redacted>)"


class _PaymentFields(StrictBody):
    amount: Amount
    currency: Annotated[str, Field(min_length=3, max_length=3, examples=["USD"]), NoControl]
    description: Description | None = None
    metadata: Metadata | None = None
    # No default in the schema (so generated clients keep it optional): absent is automatic.
    capture: CaptureMode | None = Field(
        default=None,
        description="automatic (the default): process charges; manual: process authorizes, "
        "and capture charges later",
    )

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return normalize_currency(value)


class CardPaymentRequest(_PaymentFields):
    model_config = ConfigDict(json_schema_extra={"examples": [CARD_PAYMENT_EXAMPLE]})

    payment_method: Literal["credit_card", "debit_card"]
    details: CardDetailsIn


class WalletPaymentRequest(_PaymentFields):
    model_config = ConfigDict(json_schema_extra={"examples": [WALLET_PAYMENT_EXAMPLE]})

    payment_method: Literal["digital_wallet"]
    details: WalletDetailsIn


def _payment_method_tag(value: Any) -> str | None:
    """Which model validates the body. Both card methods share one model; the tags are the
    names `kassa.errors` leaves out of field paths."""
    if isinstance(value, dict):
        method = value.get("payment_method")
    else:
        method = getattr(value, "payment_method", None)
    if method in ("credit_card", "debit_card"):
        return "credit_card"
    if method == "digital_wallet":
        return "digital_wallet"
    return None


# A callable discriminator, so that an unknown method is refused with a fixed message:
# pydantic's own echoes the client's value, which may be anything (even a card number).
CreatePaymentRequest = Annotated[
    Annotated[CardPaymentRequest, Tag("credit_card")]
    | Annotated[WalletPaymentRequest, Tag("digital_wallet")],
    Discriminator(
        _payment_method_tag,
        custom_error_type="payment_method_invalid",
        custom_error_message="payment_method must be credit_card, debit_card or digital_wallet",
        custom_error_context={"discriminator": "'payment_method'"},
    ),
]


class ProcessPaymentRequest(StrictBody):
    model_config = ConfigDict(json_schema_extra={"examples": [{"payment_id": PAYMENT_ID_EXAMPLE}]})

    payment_id: Annotated[str, NoControl] | None = Field(
        default=None, description="The id of a pending payment (from create's answer)"
    )
    paymentId: Annotated[str, NoControl] | None = None  # noqa: N815  (the seed's clients send camelCase)
    return_url: ReturnUrl | None = Field(
        default=None,
        description="Where the customer returns after authenticating (3-D Secure); https "
        "outside development",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ProcessPaymentRequest:
        if (self.payment_id is None) == (self.paymentId is None):
            raise ValueError("give exactly one of payment_id and paymentId")
        return self

    @field_validator("return_url")
    @classmethod
    def _return_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
            raise ValueError("must be an absolute http(s) URL")
        return value

    @property
    def target(self) -> str:
        value = self.payment_id if self.payment_id is not None else self.paymentId
        assert value is not None
        return value


class CapturePaymentRequest(StrictBody):
    model_config = ConfigDict(json_schema_extra={"examples": [{"amount": 800}, {}]})

    amount: Amount | None = Field(
        default=None, description="At most the authorized amount; none captures all of it"
    )


class NextActionOut(BaseModel):
    type: Literal["redirect_to_url"]
    url: str = Field(description="Send the customer here to authenticate (3-D Secure)")
    return_url: str | None = Field(description="Where the customer comes back afterwards")


# The schema's enum of statuses; the field stays `str` (describing only).
_STATUS = Field(json_schema_extra={"enum": [s.value for s in PaymentStatus]})


class PaymentOut(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    status: Annotated[str, _STATUS]
    amount: int
    amount_captured: int = Field(description="What the charge took (0 until it is captured)")
    amount_refunded: int
    currency: str
    capture: CaptureMode
    next_action: NextActionOut | None = Field(description="With requires_action")
    payment_method: PaymentMethod
    details: dict[str, Any] = Field(
        description="Cards: {brand, last4, exp_month, exp_year, holder_name}; wallets: {wallet}"
    )
    description: str | None
    metadata: dict[str, str]
    failure_code: str | None
    failure_message: str | None
    livemode: bool = Field(description="Whether this is a live-mode object (false: test mode)")
    created_at: datetime
    updated_at: datetime


class PaymentStatusOut(BaseModel):
    id: uuid.UUID
    status: Annotated[str, _STATUS]
    amount: int
    amount_captured: int
    amount_refunded: int
    currency: str
    updated_at: datetime


def amount_captured(payment: Payment) -> int:
    """What the payment's charge took: nothing until it is charged."""
    return payment.captured_amount() if PaymentStatus(payment.status) in CHARGED else 0


def next_action_out(payment: Payment) -> NextActionOut | None:
    if payment.status != PaymentStatus.REQUIRES_ACTION.value or not payment.next_action_url:
        return None
    return NextActionOut(
        type="redirect_to_url", url=payment.next_action_url, return_url=payment.return_url
    )


def payment_status_out(payment: Payment) -> PaymentStatusOut:
    return PaymentStatusOut(
        id=payment.id,
        status=payment.status,
        amount=payment.amount,
        amount_captured=amount_captured(payment),
        amount_refunded=payment.amount_refunded,
        currency=payment.currency,
        updated_at=payment.updated_at,
    )


def payment_out(payment: Payment) -> PaymentOut:
    """A payment as the API shows it (card data reduced to brand, last4 and expiry)."""
    return PaymentOut(
        id=payment.id,
        user_id=payment.user_id,
        status=payment.status,
        amount=payment.amount,
        amount_captured=amount_captured(payment),
        amount_refunded=payment.amount_refunded,
        currency=payment.currency,
        capture="manual" if payment.capture_method == "manual" else "automatic",
        next_action=next_action_out(payment),
        payment_method=payment.payment_method,
        details=payment.details,
        description=payment.description,
        metadata=payment.metadata_,
        failure_code=payment.failure_code,
        failure_message=payment.failure_message,
        livemode=payment.livemode,
        created_at=payment.created_at,
        updated_at=payment.updated_at,
    )


def payment_object(payment: Payment) -> dict[str, Any]:
    """The payment exactly as the API returns it, as JSON-ready data (event payloads)."""
    return payment_out(payment).model_dump(mode="json")


# --- Lists ----------------------------------------------------------------------------------

PaymentStatusName = Literal[
    "pending",
    "processing",
    "requires_action",
    "requires_capture",
    "completed",
    "failed",
    "canceled",
    "partially_refunded",
    "refunded",
]
MAX_BIGINT = 2**63 - 1


def _in_utc(value: datetime) -> datetime:
    """The instant in UTC; one that UTC cannot write (an offset past year 1 or 9999) is a
    validation error, not a failure of the query."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("date is out of range") from None


def _currency_filter(value: str) -> str:
    return normalize_currency(value)


# Query parameters of GET /api/payments (the route declares them with these types).
CurrencyFilter = Annotated[str, AfterValidator(_currency_filter)]
InstantFilter = Annotated[AwareDatetime, AfterValidator(_in_utc)]
AmountFilter = Annotated[int, Field(ge=1, le=MAX_BIGINT)]


class PaymentList(BaseModel):
    data: list[PaymentOut]
    has_more: bool
    next_cursor: str | None


MAX_METADATA_FILTERS = 20


def metadata_filter(raw: dict[str, str]) -> dict[str, str]:
    """`metadata[KEY]=VALUE` filters checked like metadata itself: at most 20 keys of 1–40
    characters, values of at most 500 (their text was checked with the query string)."""
    errors: list[FieldError] = []
    if len(raw) > MAX_METADATA_FILTERS:
        errors.append(FieldError("metadata", f"at most {MAX_METADATA_FILTERS} keys"))
    if any(not 1 <= len(key) <= 40 for key in raw):
        errors.append(FieldError("metadata", "key: must be 1 to 40 characters"))
    if any(len(value) > 500 for value in raw.values()):
        errors.append(FieldError("metadata", "value: must be at most 500 characters"))
    if errors:
        raise ValidationFailed(errors)
    return raw
