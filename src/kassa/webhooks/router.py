from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response, status

from kassa.auditlog.deps import RequestActor
from kassa.auth.deps import CurrentPrincipal
from kassa.web import guarded, path_id, problem_responses
from kassa.webhooks.errors import WebhookNotFound
from kassa.webhooks.models import WebhookAttempt, WebhookEndpoint
from kassa.webhooks.schemas import (
    AttemptList,
    AttemptOut,
    CreatedWebhookOut,
    CreateWebhookRequest,
    WebhookList,
    WebhookOut,
)
from kassa.webhooks.service import WebhookService

router = APIRouter(
    prefix="/api/webhooks",
    tags=["webhooks"],
    dependencies=[guarded("webhooks")],
)


async def get_webhook_service(request: Request) -> WebhookService:
    service: WebhookService = request.app.state.container.webhooks
    return service


WebhookServiceDep = Annotated[WebhookService, Depends(get_webhook_service)]
WebhookId = Annotated[uuid.UUID, path_id("webhook_id", WebhookNotFound)]


def webhook_out(endpoint: WebhookEndpoint) -> WebhookOut:
    return WebhookOut(
        id=endpoint.id,
        url=endpoint.url,
        events=endpoint.events,
        status="enabled" if endpoint.enabled else "disabled",
        disabled_at=endpoint.disabled_at,
        livemode=endpoint.livemode,
        created_at=endpoint.created_at,
    )


def attempt_out(attempt: WebhookAttempt) -> AttemptOut:
    return AttemptOut.model_validate(attempt, from_attributes=True)


@router.post(
    "",
    operation_id="webhooks_create",
    status_code=status.HTTP_201_CREATED,
    response_model=CreatedWebhookOut,
    responses=problem_responses(400, 401, 422),
)
async def create_webhook(
    body: Annotated[CreateWebhookRequest, Body()],
    principal: CurrentPrincipal,
    webhooks: WebhookServiceDep,
    actor: RequestActor,
) -> Any:
    """Register a URL for the caller's events. The answer holds the signing secret — the only
    time it is shown. Deliveries are signed per Standard Webhooks with it."""
    created = await webhooks.create(
        principal.user_id, body.url, body.events, actor, livemode=principal.livemode
    )
    return CreatedWebhookOut(**webhook_out(created.endpoint).model_dump(), secret=created.secret)


@router.get(
    "",
    operation_id="webhooks_list",
    response_model=WebhookList,
    responses=problem_responses(401, 422),
)
async def list_webhooks(principal: CurrentPrincipal, webhooks: WebhookServiceDep) -> Any:
    """The caller's webhook endpoints (never their secrets)."""
    return WebhookList(
        data=[
            webhook_out(e)
            for e in await webhooks.list(principal.user_id, livemode=principal.livemode)
        ]
    )


@router.get(
    "/{webhook_id}",
    operation_id="webhooks_get",
    response_model=WebhookOut,
    responses=problem_responses(401, 404, 422),
)
async def get_webhook(
    webhook_id: WebhookId, principal: CurrentPrincipal, webhooks: WebhookServiceDep
) -> Any:
    """One of the caller's webhook endpoints (never its secret)."""
    return webhook_out(
        await webhooks.get(principal.user_id, webhook_id, livemode=principal.livemode)
    )


@router.delete(
    "/{webhook_id}",
    operation_id="webhooks_delete",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(401, 404, 422),
)
async def delete_webhook(
    webhook_id: WebhookId,
    principal: CurrentPrincipal,
    webhooks: WebhookServiceDep,
    actor: RequestActor,
) -> Response:
    """Delete an endpoint: nothing more is sent to it."""
    await webhooks.delete(principal.user_id, webhook_id, actor, livemode=principal.livemode)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{webhook_id}/deliveries",
    operation_id="webhooks_deliveries_list",
    response_model=AttemptList,
    responses=problem_responses(401, 404, 422),
)
async def list_deliveries(
    webhook_id: WebhookId,
    principal: CurrentPrincipal,
    webhooks: WebhookServiceDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Any:
    """Every delivery attempt made to the endpoint, newest first, with cursor pagination."""
    page = await webhooks.list_attempts(
        principal.user_id, webhook_id, livemode=principal.livemode, limit=limit, cursor=cursor
    )
    return AttemptList(
        data=[attempt_out(a) for a in page.data],
        has_more=page.has_more,
        next_cursor=page.next_cursor,
    )
