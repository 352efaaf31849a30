"""JWT access and refresh tokens: HS256 pinned, with exp, iat, sub, iss and aud checked."""

from __future__ import annotations

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
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={
                    "require": ["exp", "iat", "sub", "sid", "typ", "iss", "aud"],
                    # Checked below against `now` instead of the wall clock.
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
            if claims["typ"] != kind:
                raise InvalidToken
            expires, issued = claims["exp"], claims["iat"]
            for value in (expires, issued):
                if not isinstance(value, int | float) or isinstance(value, bool):
                    raise InvalidToken
            timestamp = now.timestamp()
            if expires <= timestamp or issued > timestamp + IAT_LEEWAY_SECONDS:
                raise InvalidToken
            generation = claims.get("gen", 0)
            if not isinstance(generation, int) or isinstance(generation, bool):
                raise InvalidToken
            return TokenClaims(
                user_id=uuid.UUID(str(claims["sub"])),
                session_id=uuid.UUID(str(claims["sid"])),
                generation=generation,
                issued_at=datetime.fromtimestamp(int(claims["iat"]), tz=UTC),
                expires_at=datetime.fromtimestamp(int(claims["exp"]), tz=UTC),
            )
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
            raise InvalidToken from exc
