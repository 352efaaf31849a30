from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from kassa.auditlog.schemas import AuditEventList, AuditEventOut
from kassa.auditlog.service import AuditAction, AuditLog
from kassa.auth.deps import CurrentPrincipal
from kassa.web import guarded, problem_responses

router = APIRouter(prefix="/api", tags=["audit"], dependencies=[guarded("read")])


async def get_audit_log(request: Request) -> AuditLog:
    audit: AuditLog = request.app.state.container.audit_log
    return audit


@router.get(
    "/audit-events",
    operation_id="audit_events_list",
    response_model=AuditEventList,
    responses=problem_responses(401, 422),
)
async def list_audit_events(
    principal: CurrentPrincipal,
    audit: Annotated[AuditLog, Depends(get_audit_log)],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[AuditAction | None, Query()] = None,
) -> Any:
    """What was done in the caller's account — logins and failed logins, password changes,
    API keys, refunds, webhook endpoints — newest first, with cursor pagination."""
    page = await audit.list(
        principal.user_id, principal.livemode, action=action, limit=limit, cursor=cursor
    )
    return AuditEventList(
        data=[AuditEventOut.model_validate(e, from_attributes=True) for e in page.data],
        has_more=page.has_more,
        next_cursor=page.next_cursor,
    )
