"""API keys: created, listed and revoked by a logged-in user; verified on every request made
with one.

A secret is `sk_test_` or `sk_live_` followed by 43 base62 characters (256 bits from the
operating system's generator). It is shown once, in the create answer, and stored only as
HMAC-SHA256 under a server key derived from the configured JWT secret: a secret that
random needs no slow hash, so verifying one is a hash (microseconds) and one lookup by a
unique index. Nothing that could be replayed is kept: not the secret, not an unkeyed hash
of it; `last4` is its last four characters, for people to tell keys apart.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from kassa.apikeys import repository
from kassa.apikeys.errors import ApiKeyNotFound
from kassa.auditlog.service import Actor, AuditLog
from kassa.auth.service import SCOPES, Principal
from kassa.db import Database, new_id
from kassa.errors import Unauthorized

log = structlog.get_logger("kassa.apikeys")

PREFIXES = {False: "sk_test_", True: "sk_live_"}
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BODY_LENGTH = 43  # 62**43 > 2**256: every secret carries 256 bits
_ALL_SCOPES = frozenset(SCOPES)


def is_api_key(token: str) -> bool:
    """Whether a bearer token is (shaped like) a secret key rather than a login token."""
    return token.startswith("sk_")


def _random_body() -> str:
    value = int.from_bytes(secrets.token_bytes(32), "big")
    digits = []
    for _ in range(_BODY_LENGTH):
        value, digit = divmod(value, 62)
        digits.append(_ALPHABET[digit])
    return "".join(digits)


@dataclass(frozen=True, slots=True)
class KeyView:
    """A key as its owner sees it: never the secret."""

    id: uuid.UUID
    name: str
    livemode: bool
    scopes: list[str] | None
    last4: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CreatedKey:
    key: KeyView
    secret: str  # shown once, here; never stored


class ApiKeyService:
    def __init__(self, db: Database, hash_key: bytes, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._hash_key = hash_key
        self._clock = clock

    def secret_hash(self, secret: str) -> bytes:
        return hmac.new(self._hash_key, secret.encode("utf-8"), hashlib.sha256).digest()

    async def create(
        self,
        user_id: uuid.UUID,
        name: str,
        livemode: bool,
        scopes: Sequence[str] | None,
        actor: Actor | None = None,
    ) -> CreatedKey:
        """A new key; audited (`api_key.created`, by id) in the transaction that adds it."""
        secret = PREFIXES[livemode] + _random_body()
        kept = sorted(set(scopes)) if scopes is not None else None
        view = KeyView(
            id=new_id(),
            name=name,
            livemode=livemode,
            scopes=kept,
            last4=secret[-4:],
            created_at=self._clock(),
        )
        async with self._db.transaction() as db:
            await repository.insert_key(
                db,
                key_id=view.id,
                user_id=user_id,
                name=name,
                livemode=livemode,
                scopes=kept,
                secret_hash=self.secret_hash(secret),
                last4=view.last4,
                now=view.created_at,
            )
            await AuditLog.record(
                db,
                actor or Actor(user_id),
                "api_key.created",
                object_type="api_key",
                object_id=view.id,
                at=view.created_at,
                user_id=user_id,
                details={"mode": "live" if livemode else "test"},
            )
        log.info("api_key_created", key_id=str(view.id), livemode=livemode)
        return CreatedKey(view, secret)

    async def list(self, user_id: uuid.UUID) -> list[KeyView]:
        rows = await repository.list_active(self._db, user_id)
        return [
            KeyView(
                id=row["id"],
                name=row["name"],
                livemode=row["livemode"],
                scopes=row["scopes"],
                last4=row["last4"],
                created_at=row["created_at"],
            )
            for row in rows
        ]

    async def revoke(
        self, user_id: uuid.UUID, key_id: uuid.UUID, actor: Actor | None = None
    ) -> None:
        """Revoke the key: committed when this returns, so the next request with it (on any
        process or host) is refused. Audited (`api_key.revoked`) in the same transaction."""
        now = self._clock()
        async with self._db.transaction() as db:
            if not await repository.revoke(db, user_id, key_id, now):
                raise ApiKeyNotFound
            await AuditLog.record(
                db,
                actor or Actor(user_id),
                "api_key.revoked",
                object_type="api_key",
                object_id=key_id,
                at=now,
                user_id=user_id,
            )
        log.info("api_key_revoked", key_id=str(key_id))

    async def authenticate(self, secret: str) -> Principal:
        """The principal of a request made with `secret`: one indexed lookup, no cache (a
        revoke must answer the next request everywhere)."""
        found = await repository.get_active_by_hash(self._db, self.secret_hash(secret))
        if found is None:
            raise Unauthorized("The API key is invalid or revoked.")
        scopes = found["scopes"]
        return Principal(
            user_id=found["user_id"],
            session_id=None,
            livemode=bool(found["livemode"]),
            key_id=found["id"],
            scopes=_ALL_SCOPES if scopes is None else frozenset(scopes),
        )
