"""The generated Python client (clients/python, package `kassa_client`) walks a payment's
life against `kassa serve` as a merchant's back end would: a login token only to create an
API key, then everything with `Authorization: Bearer sk_test_…`; and a webhook that
`kassa worker` really delivers is verified with the `standardwebhooks` library, as the
README shows."""

from __future__ import annotations

import html
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx
import pytest
from kassa_client import AuthenticatedClient, Client
from kassa_client.api.auth import auth_login, auth_profile, auth_register
from kassa_client.api.keys import keys_create
from kassa_client.api.payments import (
    payments_capture,
    payments_create,
    payments_get,
    payments_list,
    payments_process,
)
from kassa_client.api.refunds import payments_refund
from kassa_client.api.transactions import transactions_list
from kassa_client.api.webhooks import webhooks_create, webhooks_delete, webhooks_list
from kassa_client.models import (
    ApiKeyScope,
    CaptureMethod,
    CapturePaymentRequest,
    CardDetailsIn,
    CardPaymentRequest,
    CardPaymentRequestPaymentMethod,
    CreatedKeyOut,
    CreatedWebhookOut,
    CreateKeyRequest,
    CreateWebhookRequest,
    LoginRequest,
    Mode,
    NextActionOut,
    PaymentList,
    PaymentOut,
    PaymentStatus,
    Problem,
    ProblemCode,
    ProcessPaymentRequest,
    RefundOut,
    RefundRequest,
    RegisterRequest,
    TokenOut,
    TransactionList,
    TransactionType,
    UserOut,
    WebhookList,
)
from kassa_client.types import UNSET, Unset
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.acceptance.conftest import Server
from tests.clients.conftest import a_real_delivery, readme_examples
from tests.webhooks import Receiver

pytestmark = pytest.mark.acceptance


@contextmanager
def log_in(server: Server, *scopes: ApiKeyScope) -> Iterator[AuthenticatedClient]:
    """A new merchant's back end: registered, logged in once only to create a test-mode API
    key (with `scopes`, or all of them), and from then on a client holding that key."""
    with Client(base_url=server.base_url, raise_on_unexpected_status=True) as anonymous:
        tokens, user = register(anonymous)
    with AuthenticatedClient(
        base_url=server.base_url, token=tokens.access_token, raise_on_unexpected_status=True
    ) as dashboard:
        key = keys_create.sync(
            client=dashboard,
            body=CreateKeyRequest(
                name="back end", mode=Mode.TEST, scopes=list(scopes) if scopes else UNSET
            ),
        )
    assert isinstance(key, CreatedKeyOut), key
    assert key.secret.startswith("sk_test_")
    assert (key.mode, key.livemode) == (Mode.TEST, False)
    with AuthenticatedClient(
        base_url=server.base_url, token=key.secret, raise_on_unexpected_status=True
    ) as kassa:
        profile = auth_profile.sync(client=kassa)
        assert isinstance(profile, UserOut)
        assert profile.id == user.id
        yield kassa


def register(anonymous: Client) -> tuple[TokenOut, UserOut]:
    email = f"py-{uuid.uuid4().hex}@example.com"
    password = f"walk {uuid.uuid4().hex}"
    user = auth_register.sync(
        client=anonymous,
        body=RegisterRequest(name="Sam Cardholder", email=email, password=password),
    )
    assert isinstance(user, UserOut), user
    tokens = auth_login.sync(client=anonymous, body=LoginRequest(email=email, password=password))
    assert isinstance(tokens, TokenOut), tokens
    return tokens, user


@pytest.fixture(scope="module")
def kassa(live: Server) -> Iterator[AuthenticatedClient]:
    with log_in(live) as client:
        yield client


THREE_D_SECURE_CARD = "4000 0027 6000 3184"  # the simulator asks, and completing succeeds
RETURN_URL = "https://shop.example/orders/1042/paid"


def card_payment(
    amount: int,
    number: str = "4242 4242 4242 4242",
    capture: CaptureMethod | Unset = UNSET,
) -> CardPaymentRequest:
    return CardPaymentRequest(
        amount=amount,
        currency="eur",
        payment_method=CardPaymentRequestPaymentMethod.CREDIT_CARD,
        details=CardDetailsIn(number=number, exp_month=12, exp_year=2099, cvc="123"),
        capture=capture,
    )


def paid(kassa: AuthenticatedClient, amount: int) -> PaymentOut:
    payment = payments_create.sync(client=kassa, body=card_payment(amount))
    assert isinstance(payment, PaymentOut), payment
    processed = payments_process.sync(
        client=kassa, body=ProcessPaymentRequest(payment_id=str(payment.id))
    )
    assert isinstance(processed, PaymentOut), processed
    assert processed.status == PaymentStatus.COMPLETED
    return processed


def test_a_retry_with_the_same_idempotency_key_replays_the_payment(
    kassa: AuthenticatedClient,
) -> None:
    key = str(uuid.uuid4())
    first = payments_create.sync_detailed(
        client=kassa, body=card_payment(1050), idempotency_key=key
    )
    retry = payments_create.sync_detailed(
        client=kassa, body=card_payment(1050), idempotency_key=key
    )

    assert first.status_code == retry.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert isinstance(first.parsed, PaymentOut)
    assert isinstance(retry.parsed, PaymentOut)
    assert retry.parsed == first.parsed
    assert (first.parsed.status, first.parsed.currency) == (PaymentStatus.PENDING, "EUR")


def test_a_processed_payment_is_refunded_in_part(kassa: AuthenticatedClient) -> None:
    payment = paid(kassa, 2000)
    refund = payments_refund.sync(
        str(payment.id),
        client=kassa,
        body=RefundRequest(amount=500, reason="requested by customer"),
    )
    assert isinstance(refund, RefundOut), refund
    assert (refund.amount, refund.currency, refund.payment_id) == (500, "EUR", payment.id)

    after = payments_get.sync(str(payment.id), client=kassa)
    assert isinstance(after, PaymentOut)
    assert (after.status, after.amount_refunded) == (PaymentStatus.PARTIALLY_REFUNDED, 500)


def test_transactions_are_listed_page_by_page_with_a_cursor(live: Server) -> None:
    with log_in(live) as merchant:  # a merchant of its own, so the list is only this test's
        payments = [paid(merchant, amount) for amount in (100, 200, 300)]
        payments_refund.sync(str(payments[0].id), client=merchant, body=RefundRequest())
        pages: list[TransactionList] = []
        cursor: str | None = None
        while not pages or pages[-1].has_more:
            page = transactions_list.sync(client=merchant, limit=3, cursor=cursor)
            assert isinstance(page, TransactionList), page
            pages.append(page)
            cursor = page.next_cursor

    assert [len(page.data) for page in pages] == [3, 1]
    listed = [(t.type_, t.amount) for page in pages for t in page.data]
    charge, refund = TransactionType.CHARGE, TransactionType.REFUND
    assert listed == [(refund, 100), (charge, 300), (charge, 200), (charge, 100)]
    assert pages[-1].next_cursor is None


def test_a_3d_secure_payment_asks_for_action_and_settles_once_the_customer_completes_it(
    kassa: AuthenticatedClient,
) -> None:
    created = payments_create.sync(
        client=kassa, body=card_payment(3100, number=THREE_D_SECURE_CARD)
    )
    assert isinstance(created, PaymentOut), created
    asked = payments_process.sync(
        client=kassa,
        body=ProcessPaymentRequest(payment_id=str(created.id), return_url=RETURN_URL),
    )
    assert isinstance(asked, PaymentOut), asked
    assert asked.status == PaymentStatus.REQUIRES_ACTION
    assert isinstance(asked.next_action, NextActionOut)
    assert (asked.next_action.type_, asked.next_action.return_url) == (
        "redirect_to_url",
        RETURN_URL,
    )

    # The customer's browser, over plain HTTP: the page, then its "Complete" form's POST.
    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        page = browser.get(asked.next_action.url)
        assert page.status_code == 200, page.text
        form = re.search(
            r'<form method="post" action="([^"]+)">\s*<button[^>]*>Complete<', page.text
        )
        assert form, page.text
        done = browser.post(urljoin(asked.next_action.url, html.unescape(form[1])))
    assert done.status_code == 303
    back = urlsplit(done.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == RETURN_URL
    assert dict(parse_qsl(back.query)) == {
        "payment_id": str(created.id),
        "redirect_status": "succeeded",
    }

    settled = payments_get.sync(str(created.id), client=kassa)
    assert isinstance(settled, PaymentOut), settled
    assert (settled.status, settled.amount_captured, settled.next_action) == (
        PaymentStatus.COMPLETED,
        3100,
        None,
    )


def test_a_manual_capture_payment_is_captured_in_part_and_refunded_from_what_was_captured(
    kassa: AuthenticatedClient,
) -> None:
    created = payments_create.sync(
        client=kassa, body=card_payment(1000, capture=CaptureMethod.MANUAL)
    )
    assert isinstance(created, PaymentOut), created
    authorized = payments_process.sync(
        client=kassa, body=ProcessPaymentRequest(payment_id=str(created.id))
    )
    assert isinstance(authorized, PaymentOut), authorized
    assert (authorized.status, authorized.amount_captured) == (PaymentStatus.REQUIRES_CAPTURE, 0)

    captured = payments_capture.sync(
        str(created.id), client=kassa, body=CapturePaymentRequest(amount=600)
    )
    assert isinstance(captured, PaymentOut), captured
    assert (captured.status, captured.amount_captured) == (PaymentStatus.COMPLETED, 600)

    refund = payments_refund.sync(str(created.id), client=kassa, body=RefundRequest(amount=250))
    assert isinstance(refund, RefundOut), refund
    too_much = payments_refund.sync(str(created.id), client=kassa, body=RefundRequest(amount=351))
    assert isinstance(too_much, Problem)
    assert (too_much.status, too_much.code) == (422, ProblemCode.AMOUNT_EXCEEDS_REFUNDABLE)
    after = payments_get.sync(str(created.id), client=kassa)
    assert isinstance(after, PaymentOut)
    assert (after.status, after.amount_captured, after.amount_refunded) == (
        PaymentStatus.PARTIALLY_REFUNDED,
        600,
        250,
    )

    again = payments_capture.sync(str(created.id), client=kassa, body=CapturePaymentRequest())
    assert isinstance(again, Problem)
    assert (again.status, again.code) == (409, ProblemCode.INVALID_STATE)


def test_payments_are_listed_with_a_small_limit_following_next_cursor_to_the_end(
    live: Server,
) -> None:
    with log_in(live) as merchant:  # a merchant of its own, so the list is only this test's
        created = [paid(merchant, amount) for amount in (101, 102, 103, 104, 105)]
        pages: list[PaymentList] = []
        cursor: str | None = None
        while not pages or pages[-1].has_more:
            page = payments_list.sync(client=merchant, limit=2, cursor=cursor)
            assert isinstance(page, PaymentList), page
            pages.append(page)
            cursor = page.next_cursor

    listed = [payment.id for page in pages for payment in page.data]
    assert [len(page.data) for page in pages] == [2, 2, 1]
    assert len(set(listed)) == len(listed)
    assert listed == [payment.id for payment in reversed(created)]  # newest first
    assert all(not payment.livemode for page in pages for payment in page.data)
    assert pages[-1].next_cursor is None


def test_a_webhook_endpoint_receives_deliveries_standardwebhooks_verifies(
    kassa: AuthenticatedClient,
) -> None:
    receiver = Receiver().start()
    try:
        endpoint = webhooks_create.sync(
            client=kassa, body=CreateWebhookRequest(url=receiver.url, events=["payment.completed"])
        )
        assert isinstance(endpoint, CreatedWebhookOut), endpoint
        payment = paid(kassa, 4200)
        deadline = time.monotonic() + 20
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert receiver.requests, "kassa worker delivered nothing"
        delivery = receiver.requests[0]

        # What a merchant's endpoint does with the body and headers it was sent:
        event = Webhook(endpoint.secret).verify(delivery.body, delivery.headers)
        assert event["type"] == "payment.completed"
        assert event["id"] == delivery.headers["webhook-id"]
        assert event["data"]["object"]["id"] == str(payment.id)
        with pytest.raises(WebhookVerificationError):
            Webhook(endpoint.secret).verify(
                delivery.body.replace(b"4200", b"4201"), delivery.headers
            )

        listed = webhooks_list.sync(client=kassa)
        assert isinstance(listed, WebhookList)
        assert [w.id for w in listed.data] == [endpoint.id]
        deleted = webhooks_delete.sync_detailed(str(endpoint.id), client=kassa)
        assert deleted.status_code == 204
        after = webhooks_list.sync(client=kassa)
        assert isinstance(after, WebhookList)
        assert after.data == []
    finally:
        receiver.stop()


def test_problems_are_typed_and_carry_their_code(kassa: AuthenticatedClient) -> None:
    unknown = payments_get.sync_detailed(str(uuid.uuid4()), client=kassa)
    assert unknown.status_code == 404
    assert unknown.headers["Content-Type"] == "application/problem+json"
    assert isinstance(unknown.parsed, Problem)
    assert unknown.parsed.code is ProblemCode.PAYMENT_NOT_FOUND

    bad = payments_create.sync(client=kassa, body=card_payment(-5))
    assert isinstance(bad, Problem)
    assert (bad.status, bad.code) == (422, ProblemCode.VALIDATION_ERROR)
    assert [error.field for error in bad.errors or []] == ["amount"]

    twice = payments_process.sync(
        client=kassa, body=ProcessPaymentRequest(payment_id=str(paid(kassa, 900).id))
    )
    assert isinstance(twice, Problem)
    assert (twice.status, twice.code) == (409, ProblemCode.INVALID_STATE)


def test_a_key_without_the_scope_an_operation_needs_gets_a_typed_insufficient_scope(
    live: Server,
) -> None:
    with log_in(live, ApiKeyScope.READ) as reader:
        refused = payments_create.sync_detailed(client=reader, body=card_payment(700))
        listed = payments_list.sync(client=reader, limit=1)

    assert refused.status_code == 403
    assert isinstance(refused.parsed, Problem)
    assert refused.parsed.code is ProblemCode.INSUFFICIENT_SCOPE
    assert isinstance(listed, PaymentList)  # reading is what the key may do
    assert listed.data == []


def test_a_key_cannot_create_keys(kassa: AuthenticatedClient) -> None:
    refused = keys_create.sync(client=kassa, body=CreateKeyRequest(name="more", mode=Mode.TEST))
    assert isinstance(refused, Problem)
    assert (refused.status, refused.code) == (403, ProblemCode.FORBIDDEN)


def test_the_readme_examples_run_as_shown(live: Server, kassa: AuthenticatedClient) -> None:
    pay, verify = readme_examples("python")
    namespace: dict[str, Any] = {"api_key": kassa.token}
    # The README's own text, run as a merchant would paste it (only the address differs).
    exec(pay.replace('"http://127.0.0.1:8000"', repr(live.base_url)), namespace)  # noqa: S102
    assert isinstance(namespace["payment"], PaymentOut), namespace["payment"]
    assert namespace["payment"].status == PaymentStatus.COMPLETED

    delivery = a_real_delivery(live)
    namespace = {"endpoint_secret": delivery.secret}
    exec(verify, namespace)  # noqa: S102
    event = namespace["receive"](delivery.body, delivery.headers)
    assert event["type"] == "payment.completed"
    with pytest.raises(WebhookVerificationError):
        namespace["receive"](
            delivery.body.replace(b'"amount":2500', b'"amount":1'), delivery.headers
        )
