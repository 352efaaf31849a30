"""The 3-D Secure challenge page kassa serves for the simulator, like Stripe's test page:
"Complete" and "Fail" buttons, nothing loaded from the internet and no script at all
(`form_page_policy`), one page per payment (its unguessable token), single use, expiring.

A button posts; the simulator finishes the challenge at most once (of two tabs, a reload or
a double click, one wins and the others change nothing), the payment resumes from what the
simulator then says (`PaymentService.resume`, a conditional update: exactly once), and the
customer is sent on to the payment's `return_url` (303, with `payment_id` and
`redirect_status` added to its query, as Stripe adds its own) — a URL the merchant gave when
processing, never one taken from this request.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from kassa.db import parse_id
from kassa.edge.csp import form_page_policy
from kassa.money import currency_exponent
from kassa.payments.service import payment_of_reference
from kassa.processors.simulator import SimulatorProcessor
from kassa.processors.simulator_store import Challenge

log = structlog.get_logger("kassa.challenge")
router = APIRouter(prefix="/simulator/3ds", include_in_schema=False)
# The customer's way back from a processor's own page (kassa.payments.returns).
returns = APIRouter(include_in_schema=False)

TEMPLATES = Path(__file__).parents[1] / "templates"
_PAGES = Environment(
    loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]), auto_reload=False
)
_PAGE = _PAGES.get_template("challenge.html")
_STYLE = (TEMPLATES / "challenge.css").read_text()
_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,64}")
_MESSAGES = {
    "completed": "Authentication complete. You can close this page.",
    "failed": "Authentication failed. You can close this page.",
    "expired": "This authentication has expired.",
    "voided": "This payment was canceled.",
}


def _simulator(request: Request) -> SimulatorProcessor | None:
    processor = request.app.state.container.processor
    inner = getattr(processor, "inner", processor)  # under the fault injector of drills
    return inner if isinstance(inner, SimulatorProcessor) else None


def _amount(amount: int, currency: str) -> str:
    exponent = currency_exponent(currency)
    if exponent == 0:
        return str(amount)
    whole, cents = divmod(amount, 10**exponent)
    return f"{whole}.{cents:0{exponent}d}"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _page(challenge: Challenge | None, token: str, status_code: int = 200) -> Response:
    if challenge is None:
        context: dict[str, Any] = {"state": "unknown", "message": "There is no such page."}
        status_code = 404
    else:
        context = {
            "state": challenge.status,
            "message": _MESSAGES.get(challenge.status, ""),
            "amount": _amount(challenge.amount, challenge.currency),
            "currency": challenge.currency,
            "complete_action": f"{token}/complete",
            "fail_action": f"{token}/fail",
            "return_url": challenge.return_url if challenge.status != "open" else None,
        }
    html = _PAGE.render(style=_STYLE, **context)
    targets = [_origin(challenge.return_url)] if challenge and challenge.return_url else []
    return HTMLResponse(
        html,
        status_code=status_code,
        headers={
            "Content-Security-Policy": form_page_policy([_STYLE], targets),
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
        },
    )


def _return_to(challenge: Challenge, payment_id: uuid.UUID) -> str:
    assert challenge.return_url is not None
    parts = urlsplit(challenge.return_url)
    status = "succeeded" if challenge.status == "completed" else "failed"
    query = [
        *parse_qsl(parts.query, keep_blank_values=True),
        ("payment_id", str(payment_id)),
        ("redirect_status", status),
    ]
    return urlunsplit(parts._replace(query=urlencode(query)))


async def _challenge(request: Request, token: str) -> tuple[SimulatorProcessor, Challenge] | None:
    simulator = _simulator(request)
    if simulator is None or not _TOKEN.fullmatch(token):
        return None
    challenge = await simulator.challenge(token)
    return None if challenge is None else (simulator, challenge)


@router.get("/{token}")
async def challenge_page(request: Request, token: str) -> Response:
    found = await _challenge(request, token)
    # `/{token}/complete` relative to `/{token}`: the forms post under this page's path.
    return _page(found[1] if found else None, f"/simulator/3ds/{token}")


async def _finish(request: Request, token: str, *, authenticated: bool) -> Response:
    found = await _challenge(request, token)
    if found is None:
        return _page(None, token)
    simulator, _ = found
    answer = await simulator.finish_challenge(token, authenticated=authenticated)
    payment_id = payment_of_reference(found[1].reference)
    if answer is not None and payment_id is not None:
        try:
            await request.app.state.container.payments.resume(payment_id)
        except Exception:
            # The customer still goes back; reconciliation settles the payment from the
            # simulator's record, which the challenge already decided.
            log.exception("challenge_resume_failed", payment_id=str(payment_id))
    challenge = await simulator.challenge(token) or found[1]
    if challenge.return_url and challenge.status != "open" and payment_id is not None:
        return RedirectResponse(_return_to(challenge, payment_id), status_code=303)
    return _page(challenge, f"/simulator/3ds/{token}")


@returns.get("/payments/{payment_id}/return")
async def customer_returned(request: Request, payment_id: str, sig: str = "") -> Response:
    """The customer is back from a processor's own authentication page (Stripe's): resume
    the payment from what the processor says, then send them on to the merchant."""
    parsed = parse_id(payment_id)
    back = (
        None
        if parsed is None
        else await request.app.state.container.payments.customer_returned(parsed, sig)
    )
    if back is None:
        return _page(None, "")
    payment, return_url = back
    status = {
        "completed": "succeeded",
        "requires_capture": "succeeded",
        "failed": "failed",
        "canceled": "failed",
    }.get(payment.status, "processing")
    parts = urlsplit(return_url)
    query = [
        *parse_qsl(parts.query, keep_blank_values=True),
        ("payment_id", str(payment.id)),
        ("redirect_status", status),
    ]
    return RedirectResponse(urlunsplit(parts._replace(query=urlencode(query))), status_code=303)


@router.post("/{token}/complete")
async def complete(request: Request, token: str) -> Response:
    return await _finish(request, token, authenticated=True)


@router.post("/{token}/fail")
async def fail(request: Request, token: str) -> Response:
    return await _finish(request, token, authenticated=False)
