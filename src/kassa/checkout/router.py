from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request, status

from kassa.auth.deps import CurrentPrincipal
from kassa.checkout.errors import CheckoutSessionNotFound
from kassa.checkout.schemas import CheckoutSessionOut, CreateCheckoutSessionRequest
from kassa.checkout.service import CheckoutService
from kassa.web import guarded, path_id, problem_responses

router = APIRouter(
    prefix="/api/checkout/sessions",
    tags=["checkout"],
    dependencies=[guarded("checkout")],
)


async def get_checkout_service(request: Request) -> CheckoutService:
    service: CheckoutService = request.app.state.container.checkout
    return service


CheckoutServiceDep = Annotated[CheckoutService, Depends(get_checkout_service)]
SessionId = Annotated[uuid.UUID, path_id("session_id", CheckoutSessionNotFound)]


def public_base(request: Request) -> str:
    """Where customers reach kassa: KASSA_PUBLIC_URL, else the address this request came to."""
    configured: str | None = request.app.state.container.settings.public_url
    return configured or str(request.base_url)


@router.post(
    "",
    operation_id="checkout_sessions_create",
    status_code=status.HTTP_201_CREATED,
    response_model=CheckoutSessionOut,
    responses=problem_responses(400, 401, 422),
)
async def create_checkout_session(
    body: Annotated[CreateCheckoutSessionRequest, Body()],
    principal: CurrentPrincipal,
    checkout: CheckoutServiceDep,
    request: Request,
) -> Any:
    """Open a checkout session: send the customer to its `url`, a page served by kassa where
    they pay (the card never reaches your server). kassa then sends them to `success_url`
    and records `checkout.session.completed`; they may leave for `cancel_url` instead."""
    session = await checkout.create(principal, body, public_base(request))
    return checkout.out(session)


@router.get(
    "/{session_id}",
    operation_id="checkout_sessions_get",
    response_model=CheckoutSessionOut,
    responses=problem_responses(401, 404, 422),
)
async def get_checkout_session(
    session_id: SessionId, principal: CurrentPrincipal, checkout: CheckoutServiceDep
) -> Any:
    """One of the caller's checkout sessions: `open`, `complete` (with `payment_id`) or
    `expired`."""
    return checkout.out(await checkout.get(principal, session_id))
