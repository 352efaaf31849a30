"""The checkout page a customer pays on: `/checkout/{id}`.

GET shows the session as it stands: the form (with the latest attempt's decline, if any),
"payment in progress", "paid" or "expired". POST pays the attempt the form was rendered
for, then answers 303: to the merchant's success URL when paid, back to the page
otherwise (so a reload never submits twice). Card data goes to `CheckoutService.pay` and
on to the vault; it is never written into a page, a log line or a cookie.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from starlette.responses import Response

from kassa.checkout.errors import CheckoutSessionClosed, CheckoutSessionNotFound
from kassa.checkout.service import (
    CheckoutService,
    CheckoutView,
    Outcome,
    PaymentSource,
    redirect_target,
)
from kassa.db import parse_id
from kassa.edge.pages import (
    FormGuard,
    FormRefused,
    origin_of,
    read_form,
    render,
    see_other,
)
from kassa.payments.schemas import CardDetailsIn, WalletDetailsIn

router = APIRouter(prefix="/checkout", include_in_schema=False)
COOKIE = "kassa_checkout"
WALLETS = (("apple_pay", "Apple Pay"), ("google_pay", "Google Pay"), ("paypal", "PayPal"))
DECLINES = {
    "card_declined": "Your card was declined. Try another card or payment method.",
    "insufficient_funds": "Your card has insufficient funds. Try another card.",
    "expired_card": "Your card has expired. Try another card.",
    "incorrect_cvc": "The security code is incorrect. Check it and try again.",
    "authentication_failed": "The card could not be authenticated. Try again or use another card.",
}
DECLINE_FALLBACK = "The payment could not be completed; you were not charged. Please try again."


async def get_checkout_service(request: Request) -> CheckoutService:
    service: CheckoutService = request.app.state.container.checkout
    return service


async def get_guard(request: Request) -> FormGuard:
    guard: FormGuard = request.app.state.container.forms
    return guard


CheckoutDep = Annotated[CheckoutService, Depends(get_checkout_service)]
GuardDep = Annotated[FormGuard, Depends(get_guard)]


def _session_id(raw: str) -> uuid.UUID:
    parsed = parse_id(raw)
    if parsed is None:
        raise CheckoutSessionNotFound
    return parsed


def _binding(session_id: uuid.UUID) -> str:
    return f"checkout:{session_id}"


def _page(
    request: Request,
    guard: FormGuard,
    view: CheckoutView,
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    holder_name: str = "",
    notice: str | None = None,
) -> Response:
    session = view.session
    nonce = request.cookies.get(COOKIE) or guard.new_nonce()
    declined = None
    last = view.last_payment
    if view.status == "open" and last is None and session.last_failure_code:
        declined = DECLINES.get(session.last_failure_code, DECLINE_FALLBACK)
    in_progress = (
        view.status == "open" and last is not None and last.status in {"pending", "processing"}
    )
    challenge = None
    if view.status == "open" and last is not None and last.status == "requires_action":
        challenge = last.next_action_url
    context: dict[str, Any] = {
        "session": session,
        "status": view.status,
        "merchant": view.merchant_name,
        "csrf": guard.token(nonce, _binding(session.id)),
        "attempt": session.attempt,
        "declined": declined,
        "in_progress": in_progress,
        "challenge": challenge,
        "errors": errors or {},
        "holder_name": holder_name,
        "notice": notice,
        "wallets": WALLETS if not session.livemode else (),
        "success_url": redirect_target(session.success_url, session.id),
        "cancel_url": redirect_target(session.cancel_url, session.id),
    }
    code = 410 if view.status == "expired" and status_code == 200 else status_code
    response = render(
        request,
        "checkout/page.html",
        context,
        status_code=code,
        form_targets=[session.success_url],
    )
    if request.cookies.get(COOKIE) != nonce:
        guard.set_cookie(response, COOKIE, nonce, f"/checkout/{session.id}")
    return response


def _not_found(request: Request) -> Response:
    return render(request, "checkout/missing.html", {}, status_code=404)


@router.get("/{session_id}")
async def checkout_page(
    session_id: str, request: Request, checkout: CheckoutDep, guard: GuardDep
) -> Response:
    try:
        view = await checkout.view(_session_id(session_id))
    except CheckoutSessionNotFound:
        return _not_found(request)
    return _page(request, guard, view)


def _expiry(raw: str) -> tuple[int, int] | None:
    """`MM/YY` or `MM/YYYY` (spaces allowed) as (month, four-digit year)."""
    month, slash, year = raw.replace(" ", "").partition("/")
    if not slash or not month.isdigit() or not year.isdigit() or len(year) not in (2, 4):
        return None
    return int(month), int(year) + (2000 if len(year) == 2 else 0)


def _card(
    number: str, expiry: str, cvc: str, holder_name: str
) -> tuple[CardDetailsIn | None, dict[str, str]]:
    """The card the form describes, or what is wrong with it (messages never repeat what was
    typed)."""
    errors: dict[str, str] = {}
    parsed = _expiry(expiry)
    if parsed is None:
        errors["expiry"] = "Enter the expiry date as MM/YY."
        parsed = (1, 2000)
    try:
        card = CardDetailsIn.model_validate(
            {
                "number": number,
                "exp_month": parsed[0],
                "exp_year": parsed[1],
                "cvc": cvc.strip(),
                "holder_name": holder_name.strip() or None,
            }
        )
    except ValidationError as invalid:
        for error in invalid.errors(include_input=False, include_context=False):
            field = str(error["loc"][0]) if error["loc"] else ""
            if field == "number":
                errors["number"] = "Enter a valid card number."
            elif field in {"exp_month", "exp_year"}:
                errors.setdefault("expiry", "Enter a valid expiry month and year.")
            elif field == "holder_name":
                errors["holder_name"] = "Enter the name as it is printed on the card."
            elif field == "cvc" or "cvc" in error["msg"].lower():
                errors["cvc"] = "Enter the 3 or 4 digit security code."
            elif "expired" in error["msg"]:
                errors.setdefault("expiry", "This card has expired.")
            else:
                errors.setdefault("number", "Check the card details.")
        return None, errors
    return (None, errors) if errors else (card, errors)


def _attempt(raw: str) -> int:
    return int(raw) if raw.isdigit() and len(raw) <= 6 else -1


@router.post("/{session_id}")
async def pay(
    session_id: str, request: Request, checkout: CheckoutDep, guard: GuardDep
) -> Response:
    try:
        sid = _session_id(session_id)
        view = await checkout.view(sid)
    except CheckoutSessionNotFound:
        return _not_found(request)
    try:
        form = await read_form(request)
    except FormRefused:
        form = {}
    if not form or not guard.valid(
        request, request.cookies.get(COOKIE), form.get("csrf"), _binding(sid)
    ):
        return render(request, "checkout/refused.html", {"session": view.session}, status_code=403)
    attempt, method, wallet = (
        _attempt(form.get("attempt", "")),
        form.get("method"),
        form.get("wallet", ""),
    )
    holder_name = form.get("holder_name", "")
    source: PaymentSource | None
    if method == "wallet":
        if wallet not in dict(WALLETS) or view.session.livemode or len(holder_name) > 100:
            return _page(request, guard, view, status_code=422, notice="Choose a wallet.")
        # The simulator's wallets take any token; a real wallet's token would come from its
        # own button (not offered in live mode until one is integrated).
        source = WalletDetailsIn(wallet=wallet, token=f"tok_checkout_{sid.hex}_{attempt}")  # type: ignore[arg-type]
    else:
        source, errors = _card(
            form.get("number", ""), form.get("expiry", ""), form.get("cvc", ""), holder_name
        )
        if source is None:
            return _page(
                request,
                guard,
                view,
                status_code=422,
                errors=errors,
                holder_name=holder_name if "holder_name" not in errors else "",
            )
    try:
        result = await checkout.pay(sid, attempt, source)
    except CheckoutSessionClosed:
        view = await checkout.view(sid)
        return _page(
            request,
            guard,
            view,
            status_code=409,
            notice="This checkout takes no more payments.",
        )
    if result.outcome is Outcome.COMPLETE:
        return see_other(redirect_target(result.session.success_url, sid))
    if result.outcome is Outcome.REQUIRES_ACTION and result.payment is not None:
        challenge = result.payment.next_action_url
        # Straight on when the challenge is kassa's own page; a processor's page elsewhere
        # is reached by a link on ours (a form's redirect may only go where its CSP's
        # form-action allows).
        if challenge and origin_of(challenge) == origin_of(result.session.url):
            return see_other(challenge)
    return see_other(f"/checkout/{sid}")


@router.get("/{session_id}/return")
async def back_from_authentication(
    session_id: str, request: Request, checkout: CheckoutDep
) -> Response:
    """Where the 3-D Secure challenge sends the customer: on to the shop when the payment
    went through, back to the form (with why) when it did not. What the challenge added to
    the query is not trusted: the session's own latest payment decides."""
    try:
        view = await checkout.view(_session_id(session_id))
    except CheckoutSessionNotFound:
        return _not_found(request)
    if view.status == "complete":
        # A page that refreshes to the shop, not a 303: this answer ends the redirects of the
        # challenge's form, and a form's redirects may only reach what the challenge page's
        # form-action allows (kassa), so the browser would refuse the shop there.
        return render(
            request,
            "checkout/returning.html",
            {
                "merchant": view.merchant_name,
                "success_url": redirect_target(view.session.success_url, view.session.id),
            },
        )
    return see_other(f"/checkout/{view.session.id}")
