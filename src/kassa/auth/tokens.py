"""JWT access and refresh tokens: HS256 pinned, with exp, iat, sub, iss and aud checked."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt

ALGORITHM = "HS256"
ISSUER = "kassa"
AUDIENCE = "kassa-api"
# How far in the future `iat` may be: hosts' clocks differ by a little.
IAT_LEEWAY_SECONDS = 30
TokenType = Literal["access", "refresh"]
TOKEN_CACHE_SIZE = 4096  # verified tokens remembered per process


class InvalidToken(Exception):
    """The token is forged, expired, malformed or of the wrong type."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    generation: int
    issued_at: datetime
    expires_at: datetime


class TokenCodec:
    def __init__(self, secret: bytes, access_ttl: timedelta, refresh_ttl: timedelta) -> None:
        self._secret = secret
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        # Verifying a signature costs more than the rest of authentication's Python; exceptions
        # are not cached, so a bad token is checked afresh every time.
        self._verified = functools.lru_cache(maxsize=TOKEN_CACHE_SIZE)(self._verify)

    def issue(
        self,
        kind: TokenType,
        *,
        user_id: uuid.UUID,
        session_id: uuid.UUID,
        now: datetime,
        generation: int = 0,
    ) -> str:
        ttl = self.access_ttl if kind == "access" else self.refresh_ttl
        claims: dict[str, Any] = {
            "sub": str(user_id),
            "sid": str(session_id),
            "typ": kind,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
            "jti": uuid.uuid4().hex,
        }
        if kind == "refresh":
            claims["gen"] = generation
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def decode(self, token: str, kind: TokenType, *, now: datetime) -> TokenClaims:
        """Verify `token` as a `kind` token at `now`, the same clock that issued it (so an
        injected clock gives tokens that live exactly their TTL)."""
        typ, claims = self._verified(token)
        if typ != kind:
            raise InvalidToken
        timestamp = now.timestamp()
        issued, expires = claims.issued_at.timestamp(), claims.expires_at.timestamp()
        if expires <= timestamp or issued > timestamp + IAT_LEEWAY_SECONDS:
            raise InvalidToken
        return claims

    def _verify(self, token: str) -> tuple[str, TokenClaims]:
        """The token's type and claims once its signature and fixed claims check out; what
        depends on the time is `decode`'s to check. Remembered per token (`_verified`): a
        client sends the same token on every request, and only a token that verified is
        remembered."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={
                    "require": ["exp", "iat", "sub", "sid", "typ", "iss", "aud"],
                    # Checked in `decode` against its `now` instead of the wall clock.
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
            expires, issued = claims["exp"], claims["iat"]
            for value in (expires, issued):
                if not isinstance(value, int | float) or isinstance(value, bool):
                    raise InvalidToken
            generation = claims.get("gen", 0)
            if not isinstance(generation, int) or isinstance(generation, bool):
                raise InvalidToken
            return str(claims["typ"]), TokenClaims(
                user_id=uuid.UUID(str(claims["sub"])),
                session_id=uuid.UUID(str(claims["sid"])),
                generation=generation,
                issued_at=datetime.fromtimestamp(issued, tz=UTC),
                expires_at=datetime.fromtimestamp(expires, tz=UTC),
            )
        except (jwt.PyJWTError, ValueError, TypeError, KeyError, OverflowError, OSError) as exc:
            raise InvalidToken from exc
