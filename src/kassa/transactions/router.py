from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from kassa.auth.deps import CurrentPrincipal
from kassa.transactions.schemas import (
    TransactionList,
    TransactionOut,
    TransactionStatus,
    TransactionType,
)
from kassa.transactions.service import TransactionService
from kassa.web import guarded, problem_responses

router = APIRouter(
    prefix="/api",
    tags=["transactions"],
    dependencies=[guarded("read")],
)


async def get_transaction_service(request: Request) -> TransactionService:
    service: TransactionService = request.app.state.container.transactions
    return service


@router.get(
    "/transactions",
    operation_id="transactions_list",
    response_model=TransactionList,
    responses=problem_responses(401, 422),
)
async def list_transactions(
    principal: CurrentPrincipal,
    service: Annotated[TransactionService, Depends(get_transaction_service)],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    type: Annotated[TransactionType | None, Query()] = None,
    status: Annotated[TransactionStatus | None, Query()] = None,
) -> Any:
    """The caller's charges and refunds, newest first, with cursor pagination."""
    page = await service.list(
        principal.user_id,
        livemode=principal.livemode,
        limit=limit,
        cursor=cursor,
        type_=type,
        status=status,
    )
    return TransactionList(
        data=[TransactionOut.model_validate(t, from_attributes=True) for t in page.data],
        has_more=page.has_more,
        next_cursor=page.next_cursor,
    )
