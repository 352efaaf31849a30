from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request, status

from kassa.auth.deps import CurrentPrincipal, requires_scope
from kassa.idempotency.deps import HeldKeyDep
from kassa.idempotency.service import AnswerFor, CommittedAnswer
from kassa.payments.errors import PaymentNotFound
from kassa.refunds.schemas import RefundOut, RefundRequest
from kassa.refunds.service import RefundService
from kassa.web import path_id, problem_responses, reject_unknown_query

router = APIRouter(
    prefix="/api/payments",
    tags=["refunds"],
    dependencies=[reject_unknown_query, requires_scope("refunds")],
)


async def get_refund_service(request: Request) -> RefundService:
    service: RefundService = request.app.state.container.refunds
    return service


@router.post(
    "/{payment_id}/refund",
    operation_id="payments_refund",
    status_code=status.HTTP_201_CREATED,
    response_model=RefundOut,
    responses=problem_responses(400, 401, 404, 409, 422),
)
async def refund_payment(
    payment_id: Annotated[uuid.UUID, path_id("payment_id", PaymentNotFound)],
    principal: CurrentPrincipal,
    refunds: Annotated[RefundService, Depends(get_refund_service)],
    held: HeldKeyDep,
    body: Annotated[RefundRequest | None, Body()] = None,
) -> Any:
    """Refund part or all of a completed payment; with no amount, refund what is left."""
    request = body or RefundRequest()
    refund = await refunds.refund(
        principal.user_id, payment_id, request.amount, request.reason, held
    )
    return RefundOut.model_validate(refund, from_attributes=True)


def committed_answers(refunds: RefundService) -> dict[str, AnswerFor]:
    """A retried keyed refund whose refund committed is answered with that refund as it
    stands: 201, `pending` until the processor's outcome is known."""

    async def refunded(user_id: uuid.UUID, refund_id: uuid.UUID) -> CommittedAnswer | None:
        refund = await refunds.find(user_id, refund_id)
        if refund is None:
            return None
        body = RefundOut.model_validate(refund, from_attributes=True).model_dump_json().encode()
        return CommittedAnswer(status.HTTP_201_CREATED, body, final=refund.status != "pending")

    return {"refund": refunded}
