"""The text rules every request field shares (kassa.text)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kassa.text import contains_card_number, text_problem
from kassa.vault.cards import luhn_valid


def _luhn_complete(prefix: str) -> str:
    return next(prefix + d for d in "0123456789" if luhn_valid(prefix + d))


@given(
    body=st.text(alphabet="0123456789", min_size=11, max_size=18),
    before=st.text(alphabet=st.characters(blacklist_categories=("Nd",)), max_size=20),
    after=st.text(alphabet=st.characters(blacklist_categories=("Nd",)), max_size=20),
    separator=st.sampled_from(["", " ", "-"]),
)
def test_any_card_number_the_api_accepts_is_found_in_text(
    body: str, before: str, after: str, separator: str
) -> None:
    number = _luhn_complete(body)
    grouped = separator.join(number[i : i + 4] for i in range(0, len(number), 4))
    assert contains_card_number(f"{before} {grouped} {after}")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no digits at all",
        "4242424242424241",  # Luhn fails
        "42424242424",  # 11 digits
        "order 550e8400-e29b-41d4-a716-446655440000",
        "4242  4242  4242  4242",  # doubled spaces do not join groups
    ],
)
def test_text_without_a_card_number_passes(text: str) -> None:
    assert not contains_card_number(text)


@pytest.mark.parametrize(
    ("text", "prose", "problem"),
    [
        ("plain", False, None),
        ("tab\there", False, "must not contain control characters"),
        ("tab\there", True, None),
        ("line\r\nbreak", True, None),
        ("nul\x00", True, "must not contain control characters other than tab and line breaks"),
        ("bell\x07", True, "must not contain control characters other than tab and line breaks"),
        ("del\x7f", False, "must not contain control characters"),
        ("c1\x9b", False, "must not contain control characters"),
        ("half \ud83d", False, "must be valid Unicode text"),
        ("émoji 🙂 ünïcode", False, None),
    ],
)
def test_control_characters_and_surrogates(text: str, prose: bool, problem: str | None) -> None:
    assert text_problem(text, prose=prose) == problem
