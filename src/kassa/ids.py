"""Random ids (version 4 UUIDs) from the operating system's CSPRNG, drawn in batches.

`uuid.uuid4()` asks the kernel for 16 bytes per id; a payment's lifecycle makes a dozen
ids (the payment, its events, ledger lines, rows, the request ids), and on a virtual
machine each of those system calls costs more than the rest of making the id. Here one
call fills a batch of 256 ids' bytes. The bytes are the same kernel CSPRNG's; a child
process forgets the batch its parent held (it would otherwise hand out the same ids), and
threads take their ids under a lock.
"""

from __future__ import annotations

import os
import threading
import uuid

_BATCH = 256
_SIZE = 16


class _Batch:
    __slots__ = ("bytes", "lock", "taken")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bytes = b""
        self.taken = 0

    def forget(self) -> None:
        """After a fork: the child must not reuse what its parent drew."""
        self.lock = threading.Lock()
        self.bytes = b""
        self.taken = 0

    def take(self) -> bytes:
        with self.lock:
            if self.taken >= len(self.bytes):
                self.bytes = os.urandom(_SIZE * _BATCH)
                self.taken = 0
            start = self.taken
            self.taken = start + _SIZE
            return self.bytes[start : start + _SIZE]


_batch = _Batch()
os.register_at_fork(after_in_child=_batch.forget)


def random_uuid() -> uuid.UUID:
    """A version 4 UUID: 122 random bits, as `uuid.uuid4()` makes."""
    return uuid.UUID(bytes=_batch.take(), version=4)


def random_hex() -> str:
    """32 random hex digits (a version 4 UUID's), for request ids and references."""
    return random_uuid().hex
