"""`/api/keys`: a logged-in person's API keys. A key itself is refused here (403
`forbidden`): a leaked key cannot make, list or revoke keys."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status

from kassa.apikeys.errors import ApiKeyNotFound
from kassa.apikeys.schemas import (
    CreatedKeyOut,
    CreateKeyRequest,
    KeyList,
    key_out,
)
from kassa.apikeys.service import ApiKeyService
from kassa.auditlog.deps import RequestActor
from kassa.auth.deps import LoginPrincipal
from kassa.web import id_or_not_found, problem_responses, reject_unknown_query

router = APIRouter(prefix="/api/keys", tags=["keys"], dependencies=[reject_unknown_query])


async def get_key_service(request: Request) -> ApiKeyService:
    service: ApiKeyService = request.app.state.container.keys
    return service


ApiKeyServiceDep = Annotated[ApiKeyService, Depends(get_key_service)]
_FORBIDDEN = {403: ["forbidden"]}


@router.post(
    "",
    operation_id="keys_create",
    status_code=status.HTTP_201_CREATED,
    response_model=CreatedKeyOut,
    responses=problem_responses(400, 401, 403, 422, codes=_FORBIDDEN),
)
async def create_key(
    body: CreateKeyRequest, principal: LoginPrincipal, keys: ApiKeyServiceDep, actor: RequestActor
) -> Any:
    """Create a secret key of one mode. Its `secret` is shown only in this answer: kassa keeps
    a keyed hash of it, never the secret."""
    created = await keys.create(
        principal.user_id, body.name, body.mode == "live", body.scopes, actor
    )
    return CreatedKeyOut(**key_out(created.key).model_dump(), secret=created.secret)


@router.get(
    "",
    operation_id="keys_list",
    response_model=KeyList,
    responses=problem_responses(401, 403, codes=_FORBIDDEN),
)
async def list_keys(principal: LoginPrincipal, keys: ApiKeyServiceDep) -> Any:
    """The caller's keys that are not revoked, newest first, without their secrets."""
    return KeyList(data=[key_out(key) for key in await keys.list(principal.user_id)])


@router.delete(
    "/{key_id}",
    operation_id="keys_revoke",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 422, codes=_FORBIDDEN),
)
async def revoke_key(
    key_id: str, principal: LoginPrincipal, keys: ApiKeyServiceDep, actor: RequestActor
) -> Response:
    """Revoke a key: from the next request on, on every process and host, it is refused."""
    parsed: uuid.UUID = id_or_not_found(key_id, ApiKeyNotFound)
    await keys.revoke(principal.user_id, parsed, actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
