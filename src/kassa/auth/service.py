"""Registration, login, sessions and password changes."""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError

from kassa.auditlog.service import Actor, AuditLog
from kassa.auth import repository, sessions
from kassa.auth.errors import (
    EmailTaken,
    InvalidCredentials,
    InvalidRefreshToken,
    LoginTokenRequired,
    TooManyAttempts,
    WrongPassword,
)
from kassa.auth.models import AuthSession, User
from kassa.auth.passwords import Passwords
from kassa.auth.sessions import SessionCheck
from kassa.auth.tokens import InvalidToken, TokenCodec
from kassa.db import Database, new_id
from kassa.errors import Unauthorized
from kassa.observability.metrics import LOGIN_FAILURES
from kassa.ratelimit.limiter import LoginThrottle

log = structlog.get_logger("kassa.auth")


def email_key(email: str) -> str:
    """Emails compare case-insensitively and by NFKC form (a decomposed `ü` is the composed
    one); this is the form the unique index holds, computed alike at registration and login."""
    return unicodedata.normalize("NFKC", email.strip()).casefold()


SCOPES: tuple[str, ...] = ("read", "payments", "refunds", "webhooks", "checkout")


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of a request: a login session (`session_id`) or an API key
    (`key_id`), never both."""

    user_id: uuid.UUID
    session_id: uuid.UUID | None
    # The mode the request acts in: every object it reads, writes or lists is of this mode.
    livemode: bool = False
    key_id: uuid.UUID | None = None
    # What the caller may do (see SCOPES); a login token, and a key made without scopes,
    # may do everything.
    scopes: frozenset[str] = frozenset(SCOPES)

    @property
    def is_key(self) -> bool:
        return self.key_id is not None

    def with_mode(self, livemode: bool) -> Principal:
        return replace(self, livemode=livemode)


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int


class AuthService:
    def __init__(
        self,
        db: Database,
        tokens: TokenCodec,
        throttle: LoginThrottle,
        clock: Callable[[], datetime],
        *,
        passwords: Passwords | None = None,
        password_throttle: LoginThrottle | None = None,
    ) -> None:
        self._db = db
        self._tokens = tokens
        self._throttle = throttle
        # The current-password check of a password change is throttled per user like logins.
        self._password_throttle = password_throttle or LoginThrottle(
            throttle.store, scope="password"
        )
        self._clock = clock
        self._passwords = passwords or Passwords()

    async def register(self, name: str, email: str, password: str) -> User:
        now = self._clock()
        password_hash = await self._passwords.hash(password)
        user = User(
            id=new_id(),
            name=name,
            email=email,
            email_key=email_key(email),
            password_hash=password_hash,
            created_at=now,
            updated_at=now,
        )
        try:
            await repository.insert_user(self._db, user)
        except IntegrityError:
            raise EmailTaken from None
        log.info("user_registered", user_id=str(user.id))
        return user

    async def login(self, email: str, password: str, actor: Actor | None = None) -> IssuedTokens:
        """Tokens for a new session. Audited: `login` in the transaction that opens the
        session, `login_failed` (in the account's log when the email has one; never the
        password, nor the email) for a wrong password or an unknown email."""
        actor = actor or Actor(None)
        key = email_key(email)
        # The attempt is counted before the password is looked at, atomically, so a burst
        # cannot have more passwords checked than the lockout allows.
        lockout = await self._throttle.reserve(key)
        if lockout.locked:
            raise TooManyAttempts(lockout.retry_after)
        user = await repository.get_user_by_email_key(self._db, key)
        ok = await self._passwords.verify(user.password_hash if user else None, password)
        if user is None or not ok:
            LOGIN_FAILURES.inc()
            await AuditLog.record(
                self._db,
                actor,
                "login_failed",
                object_type="user",
                object_id=user.id if user is not None else None,
                at=self._clock(),
                user_id=user.id if user is not None else None,
            )
            lockout = await self._throttle.record_failure(key)
            log.info("login_failed", locked=lockout.locked)
            # This attempt failed like any other; the lock it may have set answers the next.
            raise InvalidCredentials
        await self._throttle.record_success(key)
        now = self._clock()
        auth_session = AuthSession(
            id=new_id(),
            user_id=user.id,
            refresh_generation=0,
            created_at=now,
            expires_at=now + self._tokens.refresh_ttl,
        )
        rehashed = None
        if self._passwords.needs_rehash(user.password_hash):
            # The hashing parameters changed since this hash was made: store one made with
            # the current ones, now that the password is known (hashed before the
            # transaction opens, so no transaction waits on Argon2).
            rehashed = await self._passwords.hash(password)
        # The session and its audit row commit together (an audit row is written in the
        # transaction of the change it records).
        async with self._db.transaction() as db:
            await repository.insert_session(db, auth_session)
            if rehashed is not None:
                await repository.replace_hash(db, user.id, user.password_hash, rehashed)
            await AuditLog.record(
                db,
                actor.as_user(user.id),
                "login",
                object_type="user",
                object_id=user.id,
                at=now,
            )
        log.info("login_succeeded", user_id=str(user.id))
        return self._issue(user.id, auth_session.id, generation=0, now=now)

    def _issue(
        self, user_id: uuid.UUID, session_id: uuid.UUID, *, generation: int, now: datetime
    ) -> IssuedTokens:
        return IssuedTokens(
            access_token=self._tokens.issue(
                "access", user_id=user_id, session_id=session_id, now=now
            ),
            refresh_token=self._tokens.issue(
                "refresh", user_id=user_id, session_id=session_id, now=now, generation=generation
            ),
            expires_in=int(self._tokens.access_ttl.total_seconds()),
        )

    def verify_token(self, access_token: str) -> tuple[Principal, SessionCheck]:
        """The principal of a login token whose signature and expiry hold, and the session
        check the request still owes (see `kassa.auth.sessions`); no database."""
        now = self._clock()
        try:
            claims = self._tokens.decode(access_token, "access", now=now)
        except InvalidToken:
            raise Unauthorized("The bearer token is invalid or expired.") from None
        principal = Principal(user_id=claims.user_id, session_id=claims.session_id)
        return principal, SessionCheck(claims.session_id, claims.user_id, now)

    async def confirm(self, check: SessionCheck | None) -> None:
        """Pay a request's session check with a statement of its own."""
        await sessions.confirm(self._db, check)

    async def authenticate(self, access_token: str) -> Principal:
        """A login token's principal, its session checked now."""
        principal, check = self.verify_token(access_token)
        await self.confirm(check)
        return principal

    async def profile(self, principal: Principal, check: SessionCheck | None) -> dict[str, Any]:
        """The caller's user (id, name, email, created_at); a login token's session check,
        when still owed, is paid by this same read."""
        if check is not None:
            return await sessions.session_user(self._db, check)
        user = await repository.get_user(self._db, principal.user_id)
        if user is None:
            raise Unauthorized()
        return {
            "id": user.id,
            "name": user.name,
            "email": user.email,
            "created_at": user.created_at,
        }

    def reissue_access(self, principal: Principal) -> str:
        """A fresh access token for the principal's session, which stays the one that can be
        revoked: a browser's sign-in slides while it is used, and ends with its session (or
        after one access-token lifetime idle)."""
        if principal.session_id is None:
            raise LoginTokenRequired
        return self._tokens.issue(
            "access", user_id=principal.user_id, session_id=principal.session_id, now=self._clock()
        )

    async def display_name(self, user_id: uuid.UUID) -> str | None:
        """The name a user registered with, as pages show them to their customers."""
        user = await repository.get_user(self._db, user_id)
        return None if user is None else user.name

    async def refresh(self, refresh_token: str) -> IssuedTokens:
        now = self._clock()
        try:
            claims = self._tokens.decode(refresh_token, "refresh", now=now)
        except InvalidToken:
            raise InvalidRefreshToken from None
        spent = await repository.advance_refresh_generation(
            self._db, claims.session_id, claims.generation, now
        )
        if not spent:
            # A valid signature on a generation that is not current is a replayed token:
            # whoever holds the session's tokens may be an attacker, so end it for everyone.
            await repository.revoke_session(self._db, claims.session_id, now)
            log.warning("refresh_token_reuse", session_id=str(claims.session_id))
            raise InvalidRefreshToken
        return self._issue(
            claims.user_id, claims.session_id, generation=claims.generation + 1, now=now
        )

    async def logout(self, principal: Principal) -> None:
        if principal.session_id is None:
            raise LoginTokenRequired
        await repository.revoke_session(self._db, principal.session_id, self._clock())
        log.info("logout", user_id=str(principal.user_id))

    async def change_password(
        self,
        principal: Principal,
        current_password: str,
        new_password: str,
        actor: Actor | None = None,
    ) -> None:
        """Audited (`password_changed`) in the transaction that stores the new hash."""
        if principal.session_id is None:
            raise LoginTokenRequired
        key = str(principal.user_id)
        lockout = await self._password_throttle.reserve(key)
        if lockout.locked:
            raise TooManyAttempts(
                lockout.retry_after,
                "Too many wrong current passwords for this account; try again later.",
            )
        user = await repository.get_user(self._db, principal.user_id)
        if user is None or not await self._passwords.verify(user.password_hash, current_password):
            await self._password_throttle.record_failure(key)
            raise WrongPassword
        await self._password_throttle.record_success(key)
        new_hash = await self._passwords.hash(new_password)
        now = self._clock()
        async with self._db.transaction() as db:
            if not await repository.set_password_hash(db, principal.user_id, new_hash, now):
                raise WrongPassword
            await repository.revoke_other_sessions(db, principal.user_id, principal.session_id, now)
            await AuditLog.record(
                db,
                actor or Actor(principal.user_id),
                "password_changed",
                object_type="user",
                object_id=principal.user_id,
                at=now,
            )
        log.info("password_changed", user_id=str(principal.user_id))
