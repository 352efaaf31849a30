from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response, status

from kassa.auditlog.deps import actor_of
from kassa.auth.deps import Caller, CheckedInFirstRead, CurrentPrincipal
from kassa.errors import KassaError
from kassa.idempotency.deps import HeldKeyDep, held_key_of
from kassa.idempotency.service import AnswerFor, CommittedAnswer
from kassa.payments.errors import PaymentNotFound
from kassa.payments.lists import PaymentFilters, PaymentLists
from kassa.payments.models import Payment
from kassa.payments.schemas import (
    AmountFilter,
    CapturePaymentRequest,
    CreatePaymentRequest,
    CurrencyFilter,
    InstantFilter,
    PaymentList,
    PaymentMethod,
    PaymentOut,
    PaymentStatusName,
    PaymentStatusOut,
    ProcessPaymentRequest,
    metadata_filter,
    payment_out,
    payment_status_out,
)
from kassa.payments.service import PaymentService
from kassa.payments.states import PaymentStatus
from kassa.web import (
    guarded,
    id_or_not_found,
    path_id,
    problem_responses,
    query_map,
    query_map_parameter,
)

router = APIRouter(
    prefix="/api/payments",
    tags=["payments"],
    dependencies=[guarded("payments")],
)


def payments_of(request: Request) -> PaymentService:
    service: PaymentService = request.app.state.container.payments
    return service


async def get_payment_service(request: Request) -> PaymentService:
    return payments_of(request)


async def get_payment_lists(request: Request) -> PaymentLists:
    lists: PaymentLists = request.app.state.container.payment_lists
    return lists


PaymentServiceDep = Annotated[PaymentService, Depends(get_payment_service)]
PaymentId = Annotated[uuid.UUID, path_id("payment_id", PaymentNotFound)]


@router.post(
    "",
    operation_id="payments_create",
    status_code=status.HTTP_201_CREATED,
    response_model=PaymentOut,
    responses=problem_responses(400, 401, 422),
)
async def create_payment(
    body: Annotated[CreatePaymentRequest, Body()],
    caller: CheckedInFirstRead,
    request: Request,
) -> Any:
    """Create a `pending` payment. Card numbers are checked (Luhn, expiry, CVC) and vaulted;
    only brand, last4 and expiry are ever returned."""
    principal = caller.principal
    payment = await payments_of(request).create(
        principal.user_id,
        body,
        held_key_of(request),
        livemode=principal.livemode,
        session=caller.session,
    )
    return payment_out(payment)


@router.get(
    "",
    operation_id="payments_list",
    response_model=PaymentList,
    responses=problem_responses(401, 422),
    openapi_extra=query_map_parameter(
        "metadata",
        "`metadata[KEY]=VALUE`: only payments whose metadata holds KEY with exactly VALUE "
        "(up to 20 keys, all must hold)",
    ),
)
async def list_payments(
    principal: CurrentPrincipal,
    lists: Annotated[PaymentLists, Depends(get_payment_lists)],
    metadata: Annotated[dict[str, str], query_map("metadata")],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[PaymentStatusName | None, Query()] = None,
    currency: Annotated[CurrencyFilter | None, Query(description="ISO 4217, any case")] = None,
    payment_method: Annotated[PaymentMethod | None, Query()] = None,
    created_gte: Annotated[InstantFilter | None, Query(description="Created at or after")] = None,
    created_lt: Annotated[InstantFilter | None, Query(description="Created before")] = None,
    amount_gte: Annotated[AmountFilter | None, Query(description="Minor units, at least")] = None,
    amount_lte: Annotated[AmountFilter | None, Query(description="Minor units, at most")] = None,
) -> Any:
    """The caller's payments (of the mode it acts in), newest first, with cursor pagination;
    every filter given must hold."""
    filters = PaymentFilters(
        status=status,
        currency=currency,
        payment_method=payment_method,
        created_gte=created_gte,
        created_lt=created_lt,
        amount_gte=amount_gte,
        amount_lte=amount_lte,
        metadata=metadata_filter(metadata),
    )
    page = await lists.list(
        principal.user_id, principal.livemode, filters, limit=limit, cursor=cursor
    )
    return PaymentList(
        data=[payment_out(p) for p in page.data],
        has_more=page.has_more,
        next_cursor=page.next_cursor,
    )


@router.post(
    "/process",
    operation_id="payments_process",
    response_model=PaymentOut,
    responses={
        202: {
            "model": PaymentOut,
            "description": "The processor's answer is unknown; the payment stays processing",
        },
        **problem_responses(400, 401, 404, 409, 422),
    },
)
async def process_payment(
    body: ProcessPaymentRequest,
    caller: CheckedInFirstRead,
    request: Request,
    response: Response,
) -> Any:
    """Ask the processor to charge a pending payment: 200 with `completed` or `failed` — or,
    with manual capture, `requires_capture` (authorized); `requires_action` with
    `next_action` when the card asks for 3-D Secure (send the customer to its `url`; they come
    back to `return_url`) — or 202 with `processing` when the outcome is not known yet
    (reconciliation settles it)."""
    principal = caller.principal
    payment_id = id_or_not_found(body.target, PaymentNotFound)
    outcome = await payments_of(request).process(
        principal.user_id,
        payment_id,
        held_key_of(request),
        body.return_url,
        livemode=principal.livemode,
        session=caller.session,
    )
    if not outcome.settled:
        response.status_code = status.HTTP_202_ACCEPTED
    return payment_out(outcome.payment)


@router.get(
    "/{payment_id}",
    operation_id="payments_get",
    response_model=PaymentOut,
    responses=problem_responses(401, 404, 422),
)
async def get_payment(payment_id: PaymentId, caller: CheckedInFirstRead, request: Request) -> Any:
    """One of the caller's payments."""
    return payment_out(await _payment_of(caller, payment_id, request))


@router.get(
    "/{payment_id}/status",
    operation_id="payments_status",
    response_model=PaymentStatusOut,
    responses=problem_responses(401, 404, 422),
)
async def get_payment_status(
    payment_id: PaymentId, caller: CheckedInFirstRead, request: Request
) -> Any:
    """The status and amounts of one of the caller's payments."""
    return payment_status_out(await _payment_of(caller, payment_id, request))


async def _payment_of(caller: Caller, payment_id: uuid.UUID, request: Request) -> Payment:
    principal = caller.principal
    return await payments_of(request).get(
        principal.user_id, payment_id, livemode=principal.livemode, session=caller.session
    )


_UNKNOWN: dict[int | str, dict[str, Any]] = {
    202: {
        "model": PaymentOut,
        "description": "The processor's answer is unknown; the payment stays processing",
    }
}


@router.post(
    "/{payment_id}/capture",
    operation_id="payments_capture",
    response_model=PaymentOut,
    responses={**_UNKNOWN, **problem_responses(400, 401, 404, 409, 422)},
)
async def capture_payment(
    payment_id: PaymentId,
    principal: CurrentPrincipal,
    payments: PaymentServiceDep,
    response: Response,
    held: HeldKeyDep,
    request: Request,
    body: Annotated[CapturePaymentRequest | None, Body()] = None,
) -> Any:
    """Capture an authorized (`requires_capture`) payment, all of it or `amount` of it: 200
    `completed` with `amount_captured`, which refunds then apply to; the rest of the
    authorization is released. One capture per payment."""
    amount = body.amount if body is not None else None
    outcome = await payments.capture(
        principal.user_id,
        payment_id,
        amount,
        held,
        livemode=principal.livemode,
        actor=actor_of(request),
    )
    if not outcome.settled:
        response.status_code = status.HTTP_202_ACCEPTED
    return payment_out(outcome.payment)


@router.post(
    "/{payment_id}/cancel",
    operation_id="payments_cancel",
    response_model=PaymentOut,
    responses={**_UNKNOWN, **problem_responses(401, 404, 409, 422)},
)
async def cancel_payment(
    payment_id: PaymentId,
    principal: CurrentPrincipal,
    payments: PaymentServiceDep,
    response: Response,
    held: HeldKeyDep,
    request: Request,
) -> Any:
    """Cancel a `pending`, `requires_action` or `requires_capture` payment: 200 `canceled`
    (an authorization is voided at the processor); its vaulted card data is destroyed."""
    outcome = await payments.cancel(
        principal.user_id, payment_id, held, livemode=principal.livemode, actor=actor_of(request)
    )
    if not outcome.settled:
        response.status_code = status.HTTP_202_ACCEPTED
    return payment_out(outcome.payment)


def committed_answers(payments: PaymentService) -> dict[str, AnswerFor]:
    """How a retried keyed request whose effect committed is answered: with the payment as
    it stands, as its route would answer (202 while the charge's outcome is unknown)."""

    async def answer(
        user_id: uuid.UUID, livemode: bool, payment_id: uuid.UUID, status_code: int
    ) -> CommittedAnswer | None:
        try:
            payment = await payments.get(user_id, payment_id, livemode=livemode)
        except KassaError:
            return None
        processing = payment.status == PaymentStatus.PROCESSING.value
        if processing and status_code == status.HTTP_200_OK:
            status_code = status.HTTP_202_ACCEPTED
        body = payment_out(payment).model_dump_json().encode()
        return CommittedAnswer(status_code, body, final=not processing)

    async def created(
        user_id: uuid.UUID, livemode: bool, payment_id: uuid.UUID
    ) -> CommittedAnswer | None:
        return await answer(user_id, livemode, payment_id, status.HTTP_201_CREATED)

    async def processed(
        user_id: uuid.UUID, livemode: bool, payment_id: uuid.UUID
    ) -> CommittedAnswer | None:
        return await answer(user_id, livemode, payment_id, status.HTTP_200_OK)

    return {"create": created, "process": processed, "cancel": processed, "capture": processed}
