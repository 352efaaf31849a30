"""Encryption of card data at rest: AES-256-GCM under a small ring of named keys.

Invariants:
- the first key of a ``Vault`` seals everything new; every key in it can open what it sealed,
  which is how keys rotate (prepend a new key, re-seal what ``needs_rotation``, drop the old);
- a ``Sealed`` value names its key (``kid``) and holds ``nonce (12 bytes) || ciphertext || tag``;
  the nonce is random per message, safe for far more messages than one key will ever seal;
- the caller's ``context`` (for example the payment id) is authenticated as associated data,
  so a ciphertext copied to another row does not decrypt there;
- no error message and no ``repr`` carries key material or plaintext.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "Sealed",
    "Vault",
    "VaultError",
    "VaultKey",
    "derive_kid",
    "generate_vault_key_entry",
    "parse_vault_keys",
]

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16

_KID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_URLSAFE_B64 = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_KID_LABEL = b"kassa-vault-kid"


class VaultError(Exception):
    """Sealed data could not be opened; deliberately says nothing about the keys."""


@dataclass(frozen=True, slots=True)
class VaultKey:
    """A named 256-bit AES key. ``kid`` is 1-32 of ``[A-Za-z0-9_-]``; ``secret`` is 32 bytes."""

    kid: str
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.kid, str) or _KID.fullmatch(self.kid) is None:
            raise ValueError("key id must be 1 to 32 characters of A-Z, a-z, 0-9, _ or -")
        if not isinstance(self.secret, bytes) or len(self.secret) != KEY_BYTES:
            raise ValueError(f"key must be exactly {KEY_BYTES} bytes")

    def __repr__(self) -> str:
        return f"VaultKey(kid={self.kid!r}, secret=<{KEY_BYTES} bytes hidden>)"


@dataclass(frozen=True, slots=True)
class Sealed:
    """Ciphertext and the id of the key that sealed it; ``blob`` is nonce || ciphertext || tag."""

    kid: str
    blob: bytes = field(repr=False)


def derive_kid(secret: bytes) -> str:
    """A stable, non-reversible id for a key: "k" + 8 hex chars of HMAC-SHA256(secret, label)."""
    digest = hmac.new(secret, _KID_LABEL, hashlib.sha256).hexdigest()
    return "k" + digest[:8]


def _decode_key(text: str, position: int) -> bytes:
    problem = f"entry {position}: key must be urlsafe base64 of exactly {KEY_BYTES} bytes"
    if _URLSAFE_B64.fullmatch(text) is None:
        raise ValueError(problem)
    unpadded = text.rstrip("=")
    try:
        secret = base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4))
    except (binascii.Error, ValueError):
        raise ValueError(problem) from None
    if len(secret) != KEY_BYTES:
        raise ValueError(problem)
    return secret


def parse_vault_keys(raw: str) -> tuple[VaultKey, ...]:
    """Parse ``KASSA_VAULT_KEYS``: comma-separated ``kid:KEY`` or bare ``KEY`` entries.

    KEY is urlsafe base64 (padding optional) of exactly 32 bytes; a bare KEY gets
    ``derive_kid(secret)``. The first entry is the one that encrypts. Whitespace around entries
    is ignored; empty entries and repeated kids are refused. Error messages name the entry's
    position (and its kid, which is not secret), never the key.
    """
    if not raw or not raw.strip():
        raise ValueError("no vault key given")
    keys: list[VaultKey] = []
    seen: set[str] = set()
    for position, entry in enumerate(raw.split(","), start=1):
        entry = entry.strip()
        if not entry:
            raise ValueError(f"entry {position} is empty")
        kid_text, colon, key_text = entry.rpartition(":")
        if colon and _KID.fullmatch(kid_text) is None:
            raise ValueError(
                f"entry {position}: key id must be 1 to 32 characters of A-Z, a-z, 0-9, _ or -"
            )
        secret = _decode_key(key_text, position)
        kid = kid_text if colon else derive_kid(secret)
        if kid in seen:
            raise ValueError(f"entry {position}: key id {kid!r} appears more than once")
        seen.add(kid)
        keys.append(VaultKey(kid=kid, secret=secret))
    return tuple(keys)


def generate_vault_key_entry() -> str:
    """A fresh ``kid:KEY`` entry for ``KASSA_VAULT_KEYS`` (unpadded urlsafe base64 key)."""
    secret = os.urandom(KEY_BYTES)
    key_text = base64.urlsafe_b64encode(secret).rstrip(b"=").decode("ascii")
    return f"{derive_kid(secret)}:{key_text}"


class Vault:
    """Seals and opens short secrets (card numbers) under a ring of ``VaultKey``s."""

    __slots__ = ("_ciphers", "_primary_kid")

    def __init__(self, keys: Sequence[VaultKey]) -> None:
        if not keys:
            raise ValueError("a vault needs at least one key")
        ciphers: dict[str, AESGCM] = {}
        for key in keys:
            if key.kid in ciphers:
                raise ValueError(f"key id {key.kid!r} appears more than once")
            ciphers[key.kid] = AESGCM(key.secret)
        self._ciphers = ciphers
        self._primary_kid = keys[0].kid

    def __repr__(self) -> str:
        return f"Vault(primary_kid={self._primary_kid!r}, keys={len(self._ciphers)})"

    @property
    def primary_kid(self) -> str:
        """The id of the key that seals new data."""
        return self._primary_kid

    def encrypt(self, plaintext: str, *, context: bytes) -> Sealed:
        """Seal ``plaintext`` (UTF-8) under the primary key, bound to ``context``.

        ``context`` must be non-empty: an unbound ciphertext could be replayed into any row.
        """
        _check_context(context)
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = self._ciphers[self._primary_kid].encrypt(
            nonce, plaintext.encode("utf-8"), context
        )
        return Sealed(kid=self._primary_kid, blob=nonce + ciphertext)

    def decrypt(self, sealed: Sealed, *, context: bytes) -> str:
        """Open ``sealed``; ``VaultError`` if its key is not in this vault or it fails to verify.

        Failing to verify covers a changed blob, a different ``context`` and a different key
        under the same kid; the error does not say which.
        """
        _check_context(context)
        cipher = self._ciphers.get(sealed.kid)
        if cipher is None:
            raise VaultError("sealed data was encrypted with a key this vault does not hold")
        blob = sealed.blob
        if len(blob) < NONCE_BYTES + TAG_BYTES:
            raise VaultError("sealed data failed authentication")
        try:
            plaintext = cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], context)
            return plaintext.decode("utf-8")
        except (InvalidTag, UnicodeDecodeError):
            raise VaultError("sealed data failed authentication") from None

    def needs_rotation(self, sealed: Sealed) -> bool:
        """True when ``sealed`` is not under the primary key and should be re-encrypted."""
        return sealed.kid != self._primary_kid


def _check_context(context: bytes) -> None:
    if not isinstance(context, bytes) or not context:
        raise ValueError("context must be non-empty bytes")
