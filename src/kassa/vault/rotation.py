"""`kassa vault rotate`: re-seal everything the vault holds under its current (first) key.

The steps are: put a new key first in `KASSA_VAULT_KEYS` and keep the old ones after it
(every server must run with that ring: the first key seals, all of them open), run
`kassa vault rotate`, then drop the old keys once it reports nothing left under them.

Rows are re-sealed in batches, each in its own short transaction under row locks, so the
command can be interrupted at any point and run again: it picks up whatever is still sealed
under an old key. A row that no key of the ring opens is counted and skipped, never lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from kassa.vault.crypto import VaultError

log = structlog.get_logger("kassa.vault")

ProgressCallback = Callable[[int, int], None]
DEFAULT_BATCH_SIZE = 500


@dataclass(frozen=True, slots=True)
class ResealBatch:
    examined: int  # rows looked at in this batch (0: nothing left after `after`)
    resealed: int
    unreadable: int
    last_id: uuid.UUID | None


class SealedRows(Protocol):
    """A store of rows sealed by the vault that can re-seal them in batches."""

    async def count_to_reseal(self) -> int: ...

    async def reseal_batch(self, after: uuid.UUID | None, batch_size: int) -> ResealBatch: ...


class SealedKey(Protocol):
    async def needs_reseal(self) -> bool: ...

    async def reseal(self) -> bool:
        """Raises `VaultError` when no key of the ring opens it."""
        ...


@dataclass
class RotationReport:
    examined: int = 0
    resealed: int = 0
    unreadable: int = 0


class VaultRotator:
    """Re-seals the fingerprint key, then every store of sealed rows in turn (vaulted card
    data, webhook signing secrets)."""

    def __init__(self, key: SealedKey, *stores: SealedRows) -> None:
        self._key = key
        self._stores = stores

    async def rotate(
        self, *, batch_size: int = DEFAULT_BATCH_SIZE, progress: ProgressCallback | None = None
    ) -> RotationReport:
        report = RotationReport()
        key_pending = await self._key.needs_reseal()
        total = sum([await store.count_to_reseal() for store in self._stores]) + int(key_pending)
        if key_pending:
            report.examined += 1
            try:
                report.resealed += int(await self._key.reseal())
            except VaultError:
                report.unreadable += 1
                log.error("vault_entry_unreadable", entry="fingerprint_key")
            if progress is not None:
                progress(report.examined, max(total, report.examined))
        for store in self._stores:
            after: uuid.UUID | None = None
            while True:
                batch = await store.reseal_batch(after, batch_size)
                if batch.examined == 0:
                    break
                report.examined += batch.examined
                report.resealed += batch.resealed
                report.unreadable += batch.unreadable
                after = batch.last_id
                if progress is not None:
                    progress(report.examined, max(total, report.examined))
        if progress is not None and report.examined == 0:
            progress(0, 0)
        return report
