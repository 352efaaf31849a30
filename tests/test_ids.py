"""Random ids drawn from the CSPRNG in batches are version 4 UUIDs, never repeat, and a
forked child does not hand out the ids its parent's batch still holds."""

from __future__ import annotations

import os
import uuid

from kassa.ids import random_hex, random_uuid


def test_ids_are_version_4_uuids_and_do_not_repeat_across_batches() -> None:
    ids = [random_uuid() for _ in range(3000)]  # about twelve batches
    assert len(set(ids)) == len(ids)
    assert {i.version for i in ids} == {4}
    assert {i.variant for i in ids} == {uuid.RFC_4122}
    assert len(random_hex()) == 32


def test_a_forked_child_draws_its_own_ids_not_its_parents_batch() -> None:
    random_uuid()  # the parent now holds a batch with ids still to hand out
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.close(reader)
        os.write(writer, b"".join(random_uuid().bytes for _ in range(8)))
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        drawn = pipe.read()
    os.waitpid(child, 0)
    in_child = {drawn[i : i + 16] for i in range(0, len(drawn), 16)}
    in_parent = {random_uuid().bytes for _ in range(8)}
    assert len(in_child) == 8
    assert not in_child & in_parent
