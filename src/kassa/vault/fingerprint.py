"""Card fingerprints: the same card recognised across payments, its number never stored.

    fingerprint = hex(HMAC-SHA256(fingerprint key, "kassa-card-fingerprint:" + digits))

The fingerprint key is 32 random bytes made once per database and kept in it sealed by the
vault, like a card number. So:
- a fingerprint is never a plain hash: without the key (which the database alone does not
  give) no one can test a guessed number against it, nor match it with SHA-256(number);
- it stays the same when vault keys rotate: `kassa vault rotate` re-seals the fingerprint
  key under the new vault key, it does not replace it;
- it owes nothing to `KASSA_JWT_SECRET`, which can be changed for its own reasons.
Losing every vault key that can open it loses the ability to fingerprint new cards the same
way, exactly as it loses the vaulted numbers.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from datetime import UTC, datetime

import structlog
from sqlalchemy import Integer, LargeBinary, String, select, update
from sqlalchemy.orm import Mapped, mapped_column

from kassa.db import Base, Database, UTCDateTime, insert_unless_present, table_of
from kassa.vault.crypto import Sealed, Vault, VaultError

log = structlog.get_logger("kassa.vault")

KEY_ROW = 1
KEY_CONTEXT = b"vault:fingerprint-key"
_LABEL = b"kassa-card-fingerprint:"


class VaultFingerprintKey(Base):
    """The one fingerprint key of this database, sealed by the vault."""

    __tablename__ = "vault_fingerprint_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    key_id: Mapped[str] = mapped_column(String(32))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


_KEY = table_of(VaultFingerprintKey)
_GET_KEY = select(_KEY).where(_KEY.c.id == KEY_ROW)


def fingerprint_with(key: bytes, number: str) -> str:
    digits = "".join(ch for ch in number if ch.isdigit())
    return hmac.new(key, _LABEL + digits.encode("ascii"), hashlib.sha256).hexdigest()


class CardFingerprinter:
    """Fingerprints card numbers; the key is loaded (or made) on first use and kept."""

    def __init__(self, db: Database, vault: Vault) -> None:
        self._db = db
        self._vault = vault
        self._key: bytes | None = None
        self._lock = asyncio.Lock()

    async def fingerprint(self, number: str) -> str | None:
        """The card's fingerprint; None (logged) when the vault cannot open the key — a
        payment is never refused for want of a fingerprint."""
        try:
            return fingerprint_with(await self._load_key(), number)
        except VaultError:
            log.error("fingerprint_key_unreadable", hint="its vault key left KASSA_VAULT_KEYS")
            return None

    async def _load_key(self) -> bytes:
        if self._key is not None:
            return self._key
        async with self._lock:
            if self._key is None:
                self._key = await self._read_or_create()
            return self._key

    async def _read_or_create(self) -> bytes:
        async with self._db.transaction() as db:
            row = await db.first(_GET_KEY)
            if row is None:
                # Racing first uses (several processes) keep whichever key was stored first.
                sealed = self._vault.encrypt(os.urandom(32).hex(), context=KEY_CONTEXT)
                await db.execute(
                    insert_unless_present(db.dialect, _KEY, "id"),
                    {
                        "id": KEY_ROW,
                        "key_id": sealed.kid,
                        "sealed": sealed.blob,
                        "created_at": datetime.now(UTC),
                    },
                )
                row = await db.first(_GET_KEY)
                assert row is not None
            return bytes.fromhex(
                self._vault.decrypt(Sealed(row["key_id"], row["sealed"]), context=KEY_CONTEXT)
            )

    async def needs_reseal(self) -> bool:
        row = await self._db.first(_GET_KEY)
        return row is not None and self._vault.needs_rotation(Sealed(row["key_id"], row["sealed"]))

    async def reseal(self) -> bool:
        """Re-seal the fingerprint key under the vault's current key; True if it was
        re-sealed. The key itself, and so every fingerprint, does not change."""
        async with self._db.transaction() as db:
            row = await db.first(_GET_KEY.with_for_update())
            if row is None:
                return False
            old = Sealed(row["key_id"], row["sealed"])
            if not self._vault.needs_rotation(old):
                return False
            fresh = self._vault.encrypt(
                self._vault.decrypt(old, context=KEY_CONTEXT), context=KEY_CONTEXT
            )
            await db.execute(
                update(_KEY).where(_KEY.c.id == KEY_ROW).values(key_id=fresh.kid, sealed=fresh.blob)
            )
            return True
