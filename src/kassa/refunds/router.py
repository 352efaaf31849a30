from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, status

from kassa.auditlog.deps import actor_of
from kassa.auth.deps import CheckedInFirstRead, CurrentPrincipal
from kassa.idempotency.deps import held_key_of
from kassa.idempotency.service import AnswerFor, CommittedAnswer
from kassa.pagination import Page
from kassa.payments.errors import PaymentNotFound
from kassa.refunds.lists import RefundLists
from kassa.refunds.models import Refund
from kassa.refunds.schemas import RefundList, RefundOut, RefundRequest
from kassa.refunds.service import RefundService
from kassa.web import guarded, path_id, problem_responses

router = APIRouter(
    prefix="/api/payments",
    tags=["refunds"],
    dependencies=[guarded("refunds")],
)


# GET /api/refunds, beside the payment routes' prefix.
lists_router = APIRouter(prefix="/api", tags=["refunds"], dependencies=[guarded("read")])


def refunds_of(request: Request) -> RefundService:
    service: RefundService = request.app.state.container.refunds
    return service


async def get_refund_lists(request: Request) -> RefundLists:
    lists: RefundLists = request.app.state.container.refund_lists
    return lists


RefundListsDep = Annotated[RefundLists, Depends(get_refund_lists)]
Limit = Annotated[int, Query(ge=1, le=100)]
PageCursor = Annotated[str | None, Query(max_length=200)]


def refund_list(page: Page[Refund]) -> RefundList:
    return RefundList(
        data=[RefundOut.model_validate(r, from_attributes=True) for r in page.data],
        has_more=page.has_more,
        next_cursor=page.next_cursor,
    )


@lists_router.get(
    "/refunds",
    operation_id="refunds_list",
    response_model=RefundList,
    responses=problem_responses(401, 422),
)
async def list_refunds(
    principal: CurrentPrincipal,
    lists: RefundListsDep,
    limit: Limit = 20,
    cursor: PageCursor = None,
) -> Any:
    """The caller's refunds (of the mode it acts in), newest first, with cursor pagination."""
    page = await lists.list(principal.user_id, principal.livemode, limit=limit, cursor=cursor)
    return refund_list(page)


@router.get(
    "/{payment_id}/refunds",
    operation_id="payments_refunds_list",
    response_model=RefundList,
    responses=problem_responses(401, 404, 422),
)
async def list_payment_refunds(
    payment_id: Annotated[uuid.UUID, path_id("payment_id", PaymentNotFound)],
    principal: CurrentPrincipal,
    lists: RefundListsDep,
    limit: Limit = 20,
    cursor: PageCursor = None,
) -> Any:
    """One payment's refunds, newest first, with cursor pagination."""
    page = await lists.list(
        principal.user_id, principal.livemode, limit=limit, cursor=cursor, payment_id=payment_id
    )
    return refund_list(page)


@router.post(
    "/{payment_id}/refund",
    operation_id="payments_refund",
    status_code=status.HTTP_201_CREATED,
    response_model=RefundOut,
    responses=problem_responses(400, 401, 404, 409, 422),
)
async def refund_payment(
    payment_id: Annotated[uuid.UUID, path_id("payment_id", PaymentNotFound)],
    caller: CheckedInFirstRead,
    request: Request,
    body: Annotated[RefundRequest | None, Body()] = None,
) -> Any:
    """Refund part or all of a completed payment; with no amount, refund what is left."""
    asked = body or RefundRequest()
    refund = await refunds_of(request).refund(
        caller.principal.user_id,
        payment_id,
        asked.amount,
        asked.reason,
        held_key_of(request),
        actor_of(request),
        livemode=caller.principal.livemode,
        session=caller.session,
    )
    return RefundOut.model_validate(refund, from_attributes=True)


def committed_answers(refunds: RefundService) -> dict[str, AnswerFor]:
    """A retried keyed refund whose refund committed is answered with that refund as it
    stands: 201, `pending` until the processor's outcome is known."""

    async def refunded(
        user_id: uuid.UUID, livemode: bool, refund_id: uuid.UUID
    ) -> CommittedAnswer | None:
        refund = await refunds.find(user_id, refund_id, livemode=livemode)
        if refund is None:
            return None
        body = RefundOut.model_validate(refund, from_attributes=True).model_dump_json().encode()
        return CommittedAnswer(status.HTTP_201_CREATED, body, final=refund.status != "pending")

    return {"refund": refunded}
