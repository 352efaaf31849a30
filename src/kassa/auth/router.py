from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from kassa.auditlog.deps import RequestActor
from kassa.auth.deps import AuthServiceDep, CheckedInFirstRead, LoginPrincipal
from kassa.auth.schemas import (
    LoginRequest,
    PasswordChangeRequest,
    RefreshRequest,
    RegisterRequest,
    TokenOut,
    UserOut,
)
from kassa.web import problem_responses, reject_unknown_query

router = APIRouter(
    prefix="/api/auth",
    tags=["auth"],
    dependencies=[reject_unknown_query],
)


@router.post(
    "/register",
    operation_id="auth_register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    responses=problem_responses(400, 409, 422),
)
async def register(body: RegisterRequest, auth: AuthServiceDep) -> Any:
    """Create an account. Emails compare case-insensitively."""
    user = await auth.register(body.name, str(body.email), body.password)
    return UserOut.model_validate(user, from_attributes=True)


# The per-IP limit's 429 is `rate_limited`; the per-email lockout's `too_many_attempts`.
_LOCKED = {429: ["too_many_attempts", "rate_limited"]}


@router.post(
    "/login",
    operation_id="auth_login",
    response_model=TokenOut,
    responses=problem_responses(400, 401, 422, 429, codes=_LOCKED),
)
async def login(body: LoginRequest, auth: AuthServiceDep, actor: RequestActor) -> Any:
    """Exchange an email and password for an access token and a refresh token."""
    issued = await auth.login(body.email, body.password, actor)
    return TokenOut(
        access_token=issued.access_token,
        expires_in=issued.expires_in,
        refresh_token=issued.refresh_token,
    )


@router.get(
    "/profile",
    operation_id="auth_profile",
    response_model=UserOut,
    responses=problem_responses(401),
)
async def profile(caller: CheckedInFirstRead, auth: AuthServiceDep) -> Any:
    """The authenticated user."""
    return UserOut(**await auth.profile(caller.principal, caller.session))


@router.post(
    "/refresh",
    operation_id="auth_refresh",
    response_model=TokenOut,
    responses=problem_responses(400, 401, 422),
)
async def refresh(body: RefreshRequest, auth: AuthServiceDep) -> Any:
    """Rotate a refresh token. Presenting a spent refresh token again ends the session."""
    issued = await auth.refresh(body.refresh_token)
    return TokenOut(
        access_token=issued.access_token,
        expires_in=issued.expires_in,
        refresh_token=issued.refresh_token,
    )


@router.post(
    "/logout",
    operation_id="auth_logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, codes={403: ["forbidden"]}),
)
async def logout(principal: LoginPrincipal, auth: AuthServiceDep) -> Response:
    """End this session: its access and refresh tokens stop working."""
    await auth.logout(principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/password",
    operation_id="auth_change_password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(400, 401, 403, 422, 429, codes={**_LOCKED, 403: ["forbidden"]}),
)
async def change_password(
    body: PasswordChangeRequest,
    principal: LoginPrincipal,
    auth: AuthServiceDep,
    actor: RequestActor,
) -> Response:
    """Change the password; every other session ends. After 10 wrong current passwords
    within 15 minutes, password changes are refused for 30 minutes (429)."""
    await auth.change_password(principal, body.current_password, body.new_password, actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
