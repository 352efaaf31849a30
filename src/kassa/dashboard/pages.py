"""The merchant dashboard at /dashboard: server-rendered pages over the same services the API
uses (ownership, modes, idempotency, limits), with CSRF-protected forms and no script.

Every form that changes something answers 303 (POST, redirect, GET), with a notice named by
a fixed code, never text taken from the request. Money a merchant types ("12.50") is read
in the currency's own minor units (ISO 4217 exponent): no float anywhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from starlette.responses import Response

from kassa.apikeys.errors import ApiKeyNotFound
from kassa.apikeys.schemas import CreateKeyRequest
from kassa.apikeys.service import CreatedKey
from kassa.auditlog.service import Actor
from kassa.auth.errors import InvalidCredentials, TooManyAttempts
from kassa.auth.service import SCOPES
from kassa.container import Container
from kassa.dashboard.session import (
    CSRF_COOKIE,
    MODE_COOKIE,
    PATH,
    SESSION_COOKIE,
    SignInRequired,
    Visitor,
    forget,
    keep,
    signed_in,
)
from kassa.db import parse_id
from kassa.edge.pages import FormGuard, FormRefused, read_form, render, see_other
from kassa.errors import KassaError
from kassa.events.models import Event
from kassa.idempotency.service import ClaimKind, HeldKey
from kassa.money import UnsupportedCurrency, currency_exponent, normalize_currency
from kassa.payments.errors import PaymentNotFound
from kassa.payments.lists import PaymentFilters
from kassa.payments.models import Payment
from kassa.payments.service import refundable_amount
from kassa.payments.states import PaymentStatus
from kassa.webhooks.errors import WebhookNotFound

router = APIRouter(prefix=PATH, include_in_schema=False)
LOGIN_BINDING = "dashboard-login"
PAGE_SIZE = 25
TIMELINE_SCAN = 500  # the newest events looked through for one payment's timeline
NOTICES = {
    "refunded": "Refund created.",
    "canceled": "Payment canceled.",
    "captured": "Payment captured.",
    "webhook_added": "Webhook endpoint added.",
    "webhook_deleted": "Webhook endpoint deleted.",
    "redelivered": "The event is queued for delivery again.",
    "signed_out": "You are signed out.",
    "mode": "Mode switched.",
    "key_revoked": "API key revoked: it stops working at once.",
}


def _container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(_container)]


def _page(
    request: Request,
    container: Container,
    visitor: Visitor,
    template: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
) -> Response:
    notice = NOTICES.get(request.query_params.get("notice", ""))
    full = {
        **context,
        "principal": visitor.principal,
        "live": visitor.principal.livemode,
        "csrf": container.forms.token(visitor.csrf_nonce, visitor.binding),
        "notice": context.get("notice") or notice,
    }
    response = render(request, template, full, status_code=status_code)
    return keep(response, visitor, container.auth, container.forms)


async def _visitor(request: Request, container: Container) -> Visitor:
    return await signed_in(request, container.auth, container.forms)


def _to_sign_in() -> Response:
    return forget(see_other(f"{PATH}/login"))


async def _checked_form(
    request: Request, container: Container, visitor: Visitor
) -> dict[str, str] | None:
    """The posted form when its token is this sign-in's; None when it is not."""
    try:
        form = await read_form(request)
    except FormRefused:
        return None
    nonce = request.cookies.get(CSRF_COOKIE)
    if not container.forms.valid(request, nonce, form.get("csrf"), visitor.binding):
        return None
    return form


def _refused(request: Request) -> Response:
    return render(request, "dashboard/refused.html", {}, status_code=403)


# Sign-in, sign-out, mode -------------------------------------------------------------------


@router.get("")
async def home() -> Response:
    return see_other(f"{PATH}/payments")


def _login_page(
    request: Request, guard: FormGuard, *, error: str | None = None, status_code: int = 200
) -> Response:
    nonce = request.cookies.get(CSRF_COOKIE) or guard.new_nonce()
    response = render(
        request,
        "dashboard/login.html",
        {
            "csrf": guard.token(nonce, LOGIN_BINDING),
            "error": error,
            "notice": NOTICES.get(request.query_params.get("notice", "")),
        },
        status_code=status_code,
    )
    if request.cookies.get(CSRF_COOKIE) != nonce:
        guard.set_cookie(response, CSRF_COOKIE, nonce, PATH)
    return response


@router.get("/login")
async def login_page(request: Request, container: ContainerDep) -> Response:
    return _login_page(request, container.forms)


@router.post("/login")
async def login(request: Request, container: ContainerDep) -> Response:
    guard, auth = container.forms, container.auth
    try:
        form = await read_form(request)
    except FormRefused:
        return _refused(request)
    if not guard.valid(request, request.cookies.get(CSRF_COOKIE), form.get("csrf"), LOGIN_BINDING):
        return _refused(request)
    email, password = form.get("email", "")[:320], form.get("password", "")[:1024]
    try:
        state = request.scope.get("state", {})
        actor = Actor(
            None,
            ip=state.get("client_ip") or (request.client.host if request.client else None),
            request_id=state.get("request_id"),
        )
        tokens = await auth.login(email, password, actor)
    except InvalidCredentials:
        return _login_page(
            request, guard, error="The email or password is not right.", status_code=401
        )
    except TooManyAttempts:
        return _login_page(
            request,
            guard,
            error="Too many failed sign-ins for this email; try again later.",
            status_code=429,
        )
    response = see_other(f"{PATH}/payments")
    guard.set_cookie(response, SESSION_COOKIE, tokens.access_token, PATH)
    # A new sign-in gets a new form nonce (no fixation of a token planted before).
    guard.set_cookie(response, CSRF_COOKIE, guard.new_nonce(), PATH)
    return response


@router.post("/logout")
async def logout(request: Request, container: ContainerDep) -> Response:
    try:
        visitor = await _visitor(request, container)
    except SignInRequired:
        return _to_sign_in()
    if await _checked_form(request, container, visitor) is None:
        return _refused(request)
    await container.auth.logout(visitor.principal)
    return forget(see_other(f"{PATH}/login?notice=signed_out"))


@router.post("/mode")
async def switch_mode(request: Request, container: ContainerDep) -> Response:
    try:
        visitor = await _visitor(request, container)
    except SignInRequired:
        return _to_sign_in()
    form = await _checked_form(request, container, visitor)
    if form is None:
        return _refused(request)
    response = see_other(f"{PATH}/payments?notice=mode")
    container.forms.set_cookie(
        response, MODE_COOKIE, "live" if form.get("mode") == "live" else "test", PATH
    )
    return response


# Payments ----------------------------------------------------------------------------------


PAYMENT_STATUSES = tuple(status.value for status in PaymentStatus)
PAYMENT_METHODS = ("credit_card", "debit_card", "digital_wallet")


def _day(raw: str) -> datetime | None:
    """A `YYYY-MM-DD` date as its first instant, UTC."""
    try:
        return datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=UTC) if raw else None
    except ValueError:
        return None


def _filters(query: Mapping[str, str]) -> tuple[PaymentFilters, dict[str, str]]:
    """The list filters the form asked for (what is not understood is left out) and the
    form's values to show again."""
    shown = {name: query.get(name, "").strip()[:40] for name in _FILTER_FIELDS}
    currency = shown["currency"].upper()
    try:
        currency = normalize_currency(currency) if currency else ""
    except UnsupportedCurrency:
        currency = ""
    since, until = _day(shown["created_from"]), _day(shown["created_to"])

    def amount(raw: str) -> int | None:
        return minor_units(raw, currency) if raw and currency else None

    filters = PaymentFilters(
        status=shown["status"] if shown["status"] in PAYMENT_STATUSES else None,
        currency=currency or None,
        payment_method=shown["method"] if shown["method"] in PAYMENT_METHODS else None,
        created_gte=since,
        created_lt=until + timedelta(days=1) if until else None,
        amount_gte=amount(shown["amount_from"]),
        amount_lte=amount(shown["amount_to"]),
    )
    return filters, shown


_FILTER_FIELDS = (
    "status",
    "currency",
    "method",
    "created_from",
    "created_to",
    "amount_from",
    "amount_to",
)


@router.get("/payments")
async def payments_page(request: Request, container: ContainerDep) -> Response:
    try:
        visitor = await _visitor(request, container)
    except SignInRequired:
        return _to_sign_in()
    principal = visitor.principal
    query = request.query_params
    wanted = query.get("id", "").strip()
    if wanted:
        found = parse_id(wanted)
        if found is not None and await container.payment_lists.owns(
            principal.user_id, principal.livemode, found
        ):
            return keep(
                see_other(f"{PATH}/payments/{found}"), visitor, container.auth, container.forms
            )
        return _page(
            request,
            container,
            visitor,
            "dashboard/payments.html",
            {"rows": [], "shown": {}, "next": None, "missing": True},
            status_code=404,
        )
    filters, shown = _filters(query)
    cursor = query.get("cursor") or None
    try:
        page = await container.payment_lists.list(
            principal.user_id, principal.livemode, filters, limit=PAGE_SIZE, cursor=cursor
        )
    except (KassaError, ValueError):  # a cursor that is not ours: the first page
        page = await container.payment_lists.list(
            principal.user_id, principal.livemode, filters, limit=PAGE_SIZE, cursor=None
        )
    next_url = None
    if page.next_cursor:
        kept = {k: v for k, v in shown.items() if v}
        next_url = f"{PATH}/payments?" + urlencode({**kept, "cursor": page.next_cursor})
    return _page(
        request,
        container,
        visitor,
        "dashboard/payments.html",
        {
            "rows": page.data,
            "shown": shown,
            "statuses": PAYMENT_STATUSES,
            "methods": PAYMENT_METHODS,
            "next": next_url,
            "missing": False,
        },
    )


# Audit log ---------------------------------------------------------------------------------


@router.get("/audit")
async def audit_page(request: Request, container: ContainerDep) -> Response:
    try:
        visitor = await _visitor(request, container)
    except SignInRequired:
        return _to_sign_in()
    principal = visitor.principal
    cursor = request.query_params.get("cursor") or None
    try:
        page = await container.audit_log.list(
            principal.user_id, principal.livemode, action=None, limit=50, cursor=cursor
        )
    except (KassaError, ValueError):
        page = await container.audit_log.list(
            principal.user_id, principal.livemode, action=None, limit=50, cursor=None
        )
    next_url = (
        f"{PATH}/audit?" + urlencode({"cursor": page.next_cursor}) if page.next_cursor else None
    )
    return _page(
        request, container, visitor, "dashboard/audit.html", {"events": page.data, "next": next_url}
    )


def _actor(request: Request, visitor: Visitor) -> Actor:
    """The merchant acting through the dashboard, for the audit log."""
    state = request.scope.get("state", {})
    return Actor(
        user_id=visitor.principal.user_id,
        ip=state.get("client_ip") or (request.client.host if request.client else None),
        request_id=state.get("request_id"),
    )


def _about(event: Event, payment_id: uuid.UUID) -> bool:
    obj = event.data.get("object", {})
    return str(payment_id) in (str(obj.get("id")), str(obj.get("payment_id")))


async def _timeline(container: Container, user_id: uuid.UUID, payment: Payment) -> list[Event]:
    """The payment's events (its own, its refunds', its checkout session's), oldest first,
    from the newest `TIMELINE_SCAN` events of the merchant."""
    found: list[Event] = []
    cursor: str | None = None
    seen = 0
    while seen < TIMELINE_SCAN:
        page = await container.events.list(
            user_id, livemode=payment.livemode, limit=100, cursor=cursor, type_=None
        )
        seen += len(page.data)
        found += [event for event in page.data if _about(event, payment.id)]
        if not page.has_more or any(e.created_at < payment.created_at for e in page.data):
            break
        cursor = page.next_cursor
    return sorted(found, key=lambda event: event.created_at)


async def _deliveries(
    container: Container, user_id: uuid.UUID, livemode: bool, events: Sequence[Event]
) -> list[Any]:
    """Webhook attempts for these events, across the merchant's endpoints of their mode."""
    ids = {event.id for event in events}
    attempts: list[Any] = []
    for endpoint in await container.webhooks.list(user_id, livemode=livemode):
        page = await container.webhooks.list_attempts(
            user_id, endpoint.id, livemode=livemode, limit=100, cursor=None
        )
        attempts += [(endpoint, a) for a in page.data if a.event_id in ids]
    return sorted(attempts, key=lambda pair: pair[1].created_at)


@router.get("/payments/{payment_id}")
async def payment_page(payment_id: str, request: Request, container: ContainerDep) -> Response:
    try:
        visitor = await _visitor(request, container)
    except SignInRequired:
        return _to_sign_in()
    return await _payment_view(request, container, visitor, payment_id)


async def _payment_view(
    request: Request,
    container: Container,
    visitor: Visitor,
    raw_id: str,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    user_id = visitor.principal.user_id
    parsed = parse_id(raw_id)
    try:
        if parsed is None:
            raise PaymentNotFound
        payment = await container.payments.get(user_id, parsed, livemode=visitor.principal.livemode)
    except PaymentNotFound:
        return _page(request, container, visitor, "dashboard/missing.html", {}, status_code=404)
    events = await _timeline(container, user_id, payment)
    refunds = await container.refund_lists.list(
        user_id, visitor.principal.livemode, limit=100, cursor=None, payment_id=payment.id
    )
    return _page(
        request,
        container,
        visitor,
        "dashboard/payment.html",
        {
            "payment": payment,
            "events": events,
            "deliveries": await _deliveries(container, user_id, payment.livemode, events),
            "refunds": refunds.data,
            "refundable": refundable_amount(payment),
            "can_refund": payment.status in {"completed", "partially_refunded"},
            "can_cancel": payment.status in {"pending", "requires_action", "requires_capture"},
            "can_capture": payment.status == "requires_capture",
            "exponent": currency_exponent(payment.currency),
            "form_key": uuid.uuid4().hex,
            "error": error,
        },
        status_code=status_code,
    )


def minor_units(text: str, currency: str) -> int | None:
    """ "12.50" EUR → 1250; None for anything that is not a positive amount with at most the
    currency's decimals."""
    cleaned = text.strip().replace(",", "")
    if not cleaned or len(cleaned) > 24:
        return None
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    scaled = value.scaleb(currency_exponent(currency))
    if not value.is_finite() or scaled != scaled.to_integral_value() or scaled <= 0:
        return None
    return int(scaled)


async def _keyed(
    container: Container,
    visitor: Visitor,
    action: str,
    form_key: str,
    run: Callable[[HeldKey], Awaitable[uuid.UUID]],
) -> None:
    """Run a form's action once per rendered form: `form_key` (fresh in each form) is an
    Idempotency-Key of the merchant's through the API's own service, so a double submit
    does it once. The key holds `§`, which no client key can."""
    key = f"dashboard§{action}§{form_key[:64]}"
    fingerprint = container.idempotency.fingerprint(
        "POST", f"{PATH}/{action}", orjson.dumps({"key": key})
    )
    claim = await container.idempotency.claim(visitor.principal.user_id, key, fingerprint)
    if claim.kind is not ClaimKind.NEW or claim.record_id is None or claim.token is None:
        return  # done already, or being done
    try:
        effect = await run(HeldKey(claim.record_id, claim.token))
    except KassaError as refused:
        if 400 <= refused.status < 500:
            await container.idempotency.complete(
                claim.record_id, claim.token, refused.status, b"", "text/plain"
            )
        else:
            await container.idempotency.release(claim.record_id, claim.token)
        raise
    except BaseException:
        await container.idempotency.release(claim.record_id, claim.token)
        raise
    await container.idempotency.complete(
        claim.record_id, claim.token, 201, str(effect).encode(), "text/plain"
    )


async def _act_on_payment(
    request: Request,
    container: Container,
    visitor: Visitor,
    form: Mapping[str, str],
    payment_id: str,
    action: str,
    run: Callable[[HeldKey], Awaitable[uuid.UUID]],
    notice: str,
) -> Response:
    """Run a payment's action once per form (its key), then back to the payment's page: with
    `notice` when it was done, or the refusal's message and status when it was not."""
    try:
        await _keyed(container, visitor, action, form.get("key", ""), run)
    except KassaError as refused:
        return await _payment_view(
            request,
            container,
            visitor,
            payment_id,
            error=refused.detail,
            status_code=refused.status,
        )
    return keep(
        see_other(f"{PATH}/payments/{payment_id.lower()}?notice={notice}"),
        visitor,
        container.auth,
        container.forms,
    )


@router.post("/payments/{payment_id}/refund")
async def refund(payment_id: str, request: Request, container: ContainerDep) -> Response:
    try:
        visitor = await _visitor(request, container)
    except SignInRequired:
        return _to_sign_in()
    form = await _checked_form(request, container, visitor)
    if form is None:
        return _refused(request)
    user_id, parsed = visitor.principal.user_id, parse_id(payment_id)
    try:
        if parsed is None:
            raise PaymentNotFound
        payment = await container.payments.get(user_id, parsed, livemode=visitor.principal.livemode)
    except PaymentNotFound:
        return _page(request, container, visitor, "dashboard/missing.html", {}, status_code=404)
    raw = form.get("amount", "").strip()
    amount = minor_units(raw, payment.currency) if raw else None
    if raw and amount is None:
        return await _payment_view(
            request,
            container,
            visitor,
            payment_id,
            error="Enter the amount to refund, such as 12.50.",
            status_code=422,
        )
    reason = form.get("reason", "").strip()[:500] or None

    async def run(held: HeldKey) -> uuid.UUID:
        made = await container.refunds.refund(
            user_id,
            payment.id,
            amount,
            reason,
            held,
            _actor(request, visitor),
            livemode=payment.livemode,
        )
        return made.id

    return await _act_on_payment(
        request, container, visitor, form, payment_id, "refund", run, "refunded"
    )


@router.post("/payments/{payment_id}/cancel")
async def cancel(payment_id: str, request: Request, container: ContainerDep) -> Response:
    try:
        visitor = await _visitor(request, container)
    except SignInRequired:
        return _to_sign_in()
    form = await _checked_form(request, container, visitor)
    if form is None:
        return _refused(request)
    user_id, parsed = visitor.principal.user_id, parse_id(payment_id)
    if parsed is None:
        return _page(request, container, visitor, "dashboard/missing.html", {}, status_code=404)

    async def run(held: HeldKey) -> uuid.UUID:
        outcome = await container.payments.cancel(
            user_id,
            parsed,
            held,
            livemode=visitor.principal.livemode,
            actor=_actor(request, visitor),
        )
        return outcome.payment.id

    return await _act_on_payment(
        request, container, visitor, form, payment_id, "cancel", run, "canceled"
    )


@router.post("/payments/{payment_id}/capture")
async def capture(payment_id: str, request: Request, container: ContainerDep) -> Response:
    try:
        visitor = await _visitor(request, container)
    except SignInRequired:
        return _to_sign_in()
    form = await _checked_form(request, container, visitor)
    if form is None:
        return _refused(request)
    user_id, parsed = visitor.principal.user_id, parse_id(payment_id)
    try:
        if parsed is None:
            raise PaymentNotFound
        payment = await container.payments.get(user_id, parsed, livemode=visitor.principal.livemode)
    except PaymentNotFound:
        return _page(request, container, visitor, "dashboard/missing.html", {}, status_code=404)
    raw = form.get("amount", "").strip()
    amount = minor_units(raw, payment.currency) if raw else None
    if raw and amount is None:
        return await _payment_view(
            request,
            container,
            visitor,
            payment_id,
            error="Enter the amount to capture, such as 12.50.",
            status_code=422,
        )

    async def run(held: HeldKey) -> uuid.UUID:
        outcome = await container.payments.capture(
            user_id,
            payment.id,
            amount,
            held,
            livemode=payment.livemode,
            actor=_actor(request, visitor),
        )
        return outcome.payment.id

    return await _act_on_payment(
        request, container, visitor, form, payment_id, "capture", run, "captured"
    )


# API keys ----------------------------------------------------------------------------------


async def _keys_view(
    request: Request,
    container: Container,
    visitor: Visitor,
    *,
    created: CreatedKey | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    keys = await container.keys.list(visitor.principal.user_id)
    return _page(
        request,
        container,
        visitor,
        "dashboard/keys.html",
        {"keys": keys, "created": created, "error": error, "scopes": SCOPES},
        status_code=status_code,
    )


@router.get("/keys")
async def keys_page(request: Request, container: ContainerDep) -> Response:
    try:
        visitor = await _visitor(request, container)
    except SignInRequired:
        return _to_sign_in()
    return await _keys_view(request, container, visitor)


@router.post("/keys")
async def create_key(request: Request, container: ContainerDep) -> Response:
    try:
        visitor = await _visitor(request, container)
    except SignInRequired:
        return _to_sign_in()
    form = await _checked_form(request, container, visitor)
    if form is None:
        return _refused(request)
    chosen = [scope for scope in SCOPES if form.get(f"scope_{scope}") == "on"]
    try:
        # The API's own request model: the same rules for a key's name, mode and scopes.
        wanted = CreateKeyRequest.model_validate(
            {
                "name": form.get("name", "").strip(),
                "mode": "live" if form.get("mode") == "live" else "test",
                **({"scopes": chosen} if chosen else {}),
            }
        )
    except ValidationError:
        return await _keys_view(
            request,
            container,
            visitor,
            error="Give the key a name of 1 to 100 characters (no card numbers).",
            status_code=422,
        )
    created = await container.keys.create(
        visitor.principal.user_id, wanted.name, wanted.mode == "live", wanted.scopes
    )
    # The secret is on this one answer, never again.
    return await _keys_view(request, container, visitor, created=created)


@router.post("/keys/{key_id}/revoke")
async def revoke_key(key_id: str, request: Request, container: ContainerDep) -> Response:
    try:
        visitor = await _visitor(request, container)
    except SignInRequired:
        return _to_sign_in()
    if await _checked_form(request, container, visitor) is None:
        return _refused(request)
    parsed = parse_id(key_id)
    try:
        if parsed is None:
            raise ApiKeyNotFound
        await container.keys.revoke(visitor.principal.user_id, parsed)
    except ApiKeyNotFound:
        return _page(request, container, visitor, "dashboard/missing.html", {}, status_code=404)
    return keep(
        see_other(f"{PATH}/keys?notice=key_revoked"), visitor, container.auth, container.forms
    )


# Webhooks ----------------------------------------------------------------------------------


async def _webhooks_view(
    request: Request,
    container: Container,
    visitor: Visitor,
    *,
    secret: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    endpoints = await container.webhooks.list(
        visitor.principal.user_id, livemode=visitor.principal.livemode
    )
    return _page(
        request,
        container,
        visitor,
        "dashboard/webhooks.html",
        {"endpoints": endpoints, "secret": secret, "error": error},
        status_code=status_code,
    )


@router.get("/webhooks")
async def webhooks_page(request: Request, container: ContainerDep) -> Response:
    try:
        visitor = await _visitor(request, container)
    except SignInRequired:
        return _to_sign_in()
    return await _webhooks_view(request, container, visitor)


@router.post("/webhooks")
async def add_webhook(request: Request, container: ContainerDep) -> Response:
    try:
        visitor = await _visitor(request, container)
    except SignInRequired:
        return _to_sign_in()
    form = await _checked_form(request, container, visitor)
    if form is None:
        return _refused(request)
    events = [e.strip() for e in form.get("events", "*").split(",") if e.strip()] or ["*"]
    try:
        created = await container.webhooks.create(
            visitor.principal.user_id,
            form.get("url", "").strip(),
            events,
            actor=_actor(request, visitor),
            livemode=visitor.principal.livemode,
        )
    except KassaError as refused:
        message = refused.detail
        if refused.errors:
            message = "; ".join(f"{e.field} {e.message}" for e in refused.errors)
        return await _webhooks_view(
            request, container, visitor, error=message, status_code=refused.status
        )
    # The signing secret is shown on this one answer, never again.
    return await _webhooks_view(request, container, visitor, secret=created.secret)


@router.post("/webhooks/{endpoint_id}/delete")
async def delete_webhook(endpoint_id: str, request: Request, container: ContainerDep) -> Response:
    try:
        visitor = await _visitor(request, container)
    except SignInRequired:
        return _to_sign_in()
    if await _checked_form(request, container, visitor) is None:
        return _refused(request)
    parsed = parse_id(endpoint_id)
    try:
        if parsed is not None:
            await container.webhooks.delete(
                visitor.principal.user_id,
                parsed,
                _actor(request, visitor),
                livemode=visitor.principal.livemode,
            )
    except KassaError:
        pass  # already gone
    return keep(
        see_other(f"{PATH}/webhooks?notice=webhook_deleted"),
        visitor,
        container.auth,
        container.forms,
    )


@router.post("/webhooks/{endpoint_id}/rotate")
async def rotate_webhook_secret(
    endpoint_id: str, request: Request, container: ContainerDep
) -> Response:
    try:
        visitor = await _visitor(request, container)
    except SignInRequired:
        return _to_sign_in()
    if await _checked_form(request, container, visitor) is None:
        return _refused(request)
    parsed = parse_id(endpoint_id)
    try:
        if parsed is None:
            raise WebhookNotFound
        secret = await container.webhooks.rotate_secret(
            visitor.principal.user_id,
            parsed,
            livemode=visitor.principal.livemode,
            actor=_actor(request, visitor),
        )
    except WebhookNotFound:
        return _page(request, container, visitor, "dashboard/missing.html", {}, status_code=404)
    # The new secret is on this one answer, never again.
    return await _webhooks_view(request, container, visitor, secret=secret)


@router.get("/webhooks/{endpoint_id}")
async def webhook_page(endpoint_id: str, request: Request, container: ContainerDep) -> Response:
    try:
        visitor = await _visitor(request, container)
    except SignInRequired:
        return _to_sign_in()
    user_id, parsed = visitor.principal.user_id, parse_id(endpoint_id)
    try:
        if parsed is None:
            raise PaymentNotFound
        livemode = visitor.principal.livemode
        endpoint = await container.webhooks.get(user_id, parsed, livemode=livemode)
        attempts = await container.webhooks.list_attempts(
            user_id, parsed, livemode=livemode, limit=50, cursor=None
        )
    except KassaError:
        return _page(request, container, visitor, "dashboard/missing.html", {}, status_code=404)
    return _page(
        request,
        container,
        visitor,
        "dashboard/webhook.html",
        {"endpoint": endpoint, "attempts": attempts.data},
    )


@router.post("/events/{event_id}/redeliver")
async def redeliver(event_id: str, request: Request, container: ContainerDep) -> Response:
    try:
        visitor = await _visitor(request, container)
    except SignInRequired:
        return _to_sign_in()
    form = await _checked_form(request, container, visitor)
    if form is None:
        return _refused(request)
    parsed = parse_id(event_id)
    try:
        if parsed is None:
            raise PaymentNotFound
        await container.events.redeliver(
            visitor.principal.user_id, parsed, livemode=visitor.principal.livemode
        )
    except KassaError:
        return _page(request, container, visitor, "dashboard/missing.html", {}, status_code=404)
    back = form.get("back", "")
    safe = back.startswith(f"{PATH}/") and "//" not in back and "\\" not in back
    target = back if safe else f"{PATH}/webhooks"
    separator = "&" if "?" in target else "?"
    return keep(
        see_other(f"{target}{separator}notice=redelivered"),
        visitor,
        container.auth,
        container.forms,
    )
