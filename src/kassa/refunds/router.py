from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request, status

from kassa.auth.deps import CurrentPrincipal
from kassa.refunds.schemas import RefundOut, RefundRequest
from kassa.refunds.service import RefundService
from kassa.web import problem_responses, reject_unknown_query

router = APIRouter(
    prefix="/api/payments",
    tags=["refunds"],
    dependencies=[reject_unknown_query],
    redirect_slashes=False,
)


async def get_refund_service(request: Request) -> RefundService:
    service: RefundService = request.app.state.container.refunds
    return service


@router.post(
    "/{payment_id}/refund",
    status_code=status.HTTP_201_CREATED,
    response_model=RefundOut,
    responses=problem_responses(400, 401, 404, 409, 422),
)
async def refund_payment(
    payment_id: str,
    principal: CurrentPrincipal,
    refunds: Annotated[RefundService, Depends(get_refund_service)],
    body: Annotated[RefundRequest | None, Body()] = None,
) -> Any:
    """Refund part or all of a completed payment; with no amount, refund what is left."""
    request = body or RefundRequest()
    refund = await refunds.refund(principal.user_id, payment_id, request.amount, request.reason)
    return RefundOut.model_validate(refund, from_attributes=True)
