from __future__ import annotations

import uuid

import pytest

from kassa.db import parse_id


def test_parse_id_accepts_the_canonical_form_in_any_case() -> None:
    ident = uuid.uuid4()
    assert parse_id(str(ident)) == ident
    assert parse_id(str(ident).upper()) == ident


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "abc",
        "123",
        "0" * 32,
        "{" + "0" * 8 + "-0000-0000-0000-" + "0" * 12 + "}",
        "urn:uuid:00000000-0000-0000-0000-000000000000",
        "00000000-0000-0000-0000-00000000000g",
    ],
)
def test_parse_id_refuses_other_spellings(raw: str) -> None:
    assert parse_id(raw) is None
