"""What text a request may carry.

Every string a client sends in a body or a query string passes the checks here, so one rule
holds for every field and a new field is one annotation away from it:

- **No control characters** (Unicode category Cc: C0, DEL and C1). PostgreSQL cannot store
  NUL at all, and the others have no place in a name, an email, a token or a log line.
  Prose (`ProseNoCardNumber`: descriptions, metadata values, refund reasons) may hold tab,
  line feed and carriage return; every other field holds none (`NoControl`).
- **No unpaired surrogates** (`"\\ud800"` is valid JSON but not Unicode; no database stores it).
- **No card numbers in free text**: prose, and the one-line fields that hold a person's words
  (`NoControlNoCardNumber`: a card's holder name, metadata keys), refuse any run of 12 to 19 ASCII
  digits (fullwidth and other compatibility digits count too), whole groups joined by single
  spaces or dashes, that passes the Luhn check — exactly what the API would take as a card
  number. A UUID is an id, not a card number, and is skipped.

The checks run before a field's other rules, and a refusal is an ordinary validation error
(422 `validation_error`) that names the field and never echoes the value.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from pydantic import BeforeValidator

from kassa.vault.cards import MIN_PAN_DIGITS, card_number_spans

CONTROL_MESSAGE = "must not contain control characters"
FREE_TEXT_CONTROL_MESSAGE = "must not contain control characters other than tab and line breaks"
SURROGATE_MESSAGE = "must be valid Unicode text"
CARD_NUMBER_MESSAGE = "must not contain a card number"

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_IN_PROSE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def has_control_characters(text: str, *, prose: bool = False) -> bool:
    return (_CONTROL_IN_PROSE if prose else _CONTROL).search(text) is not None


def has_surrogates(text: str) -> bool:
    return _SURROGATE.search(text) is not None


def contains_card_number(text: str) -> bool:
    """Whether some whole digit groups of `text` read as a card number (see the module)."""
    if sum(c.isdigit() for c in text) < MIN_PAN_DIGITS:
        return False
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return bool(card_number_spans(text))


def text_problem(text: str, *, prose: bool = False, card_numbers: bool = False) -> str | None:
    """Why `text` may not be stored, as a message naming no part of it; None when it may."""
    if has_surrogates(text):
        return SURROGATE_MESSAGE
    if has_control_characters(text, prose=prose):
        return FREE_TEXT_CONTROL_MESSAGE if prose else CONTROL_MESSAGE
    if card_numbers and contains_card_number(text):
        return CARD_NUMBER_MESSAGE
    return None


def _checker(*, prose: bool, card_numbers: bool, trimmed: bool = False) -> BeforeValidator:
    def check(value: Any) -> Any:
        # Anything but a string is left to the field's own type, which refuses it.
        if isinstance(value, str):
            text = value.strip() if trimmed else value
            problem = text_problem(text, prose=prose, card_numbers=card_numbers)
            if problem is not None:
                raise ValueError(problem)
        return value

    return BeforeValidator(check)


# Put one on each string field's type, last: `Annotated[str, StringConstraints(…), NoControl]`.
# A before-validator wraps what stands to its left, so it still runs first, and the field's
# own constraints keep their order.
NoControl = _checker(prose=False, card_numbers=False)
"""One line of text: ids, emails, passwords, tokens, URLs."""
TrimmedNoControl = _checker(prose=False, card_numbers=False, trimmed=True)
"""One line of text whose surrounding whitespace the field strips (a person's name)."""
NoControlNoCardNumber = _checker(prose=False, card_numbers=True)
"""One line of a person's words: a card's holder name, a metadata key."""
ProseNoCardNumber = _checker(prose=True, card_numbers=True)
"""Prose: descriptions, metadata values, refund reasons."""
