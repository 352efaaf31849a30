"""Pure rules for card data: number, brand, expiry and CVC. No I/O, no clock of its own.

Invariant for every error raised here: the message never contains the card number, a part
of it, or the CVC, so it can be shown to a client or written to a log as it is.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum

__all__ = [
    "CardBrand",
    "card_expired",
    "card_number_spans",
    "detect_brand",
    "last4",
    "luhn_valid",
    "normalize_card_number",
    "validate_cvc",
]

MIN_PAN_DIGITS = 12
MAX_PAN_DIGITS = 19

# Digit groups joined by one kind of separator only; [0-9] rather than \d so that other
# scripts' digits ("٤") never count as card digits.
_GROUPED_PAN = re.compile(r"[0-9]+(?: [0-9]+)*|[0-9]+(?:-[0-9]+)*")
_ASCII_DIGITS = re.compile(r"[0-9]+")
_CVC = re.compile(r"[0-9]{3,4}")
# Free text: digit groups joined by single spaces or dashes, and UUIDs (ids, never cards).
_DIGIT_GROUPS = re.compile(r"[0-9]+(?:[ -][0-9]+)*")
_UUID = re.compile(
    r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
)
# 19 digits with a separator between each would be 37 characters; anything far longer is
# refused before the regex so that a huge body costs nothing.
_MAX_RAW_LENGTH = 64


class CardBrand(StrEnum):
    VISA = "visa"
    MASTERCARD = "mastercard"
    AMEX = "amex"
    DISCOVER = "discover"
    DINERS = "diners"
    JCB = "jcb"
    UNIONPAY = "unionpay"
    UNKNOWN = "unknown"


# (prefix length, first, last, brand), checked in order: the first match wins, which is what
# lets the co-branded 622126-622925 range be Discover before the rest of 62 is UnionPay.
_IIN_RANGES: tuple[tuple[int, int, int, CardBrand], ...] = (
    (1, 4, 4, CardBrand.VISA),
    (2, 34, 34, CardBrand.AMEX),
    (2, 37, 37, CardBrand.AMEX),
    (3, 300, 305, CardBrand.DINERS),
    (2, 36, 36, CardBrand.DINERS),
    (2, 38, 39, CardBrand.DINERS),
    (4, 3528, 3589, CardBrand.JCB),
    (4, 6011, 6011, CardBrand.DISCOVER),
    (3, 644, 649, CardBrand.DISCOVER),
    (2, 65, 65, CardBrand.DISCOVER),
    (6, 622126, 622925, CardBrand.DISCOVER),
    (2, 62, 62, CardBrand.UNIONPAY),
    (2, 81, 81, CardBrand.UNIONPAY),
    (2, 51, 55, CardBrand.MASTERCARD),
    (4, 2221, 2720, CardBrand.MASTERCARD),
)


def _is_ascii_digits(value: str) -> bool:
    return _ASCII_DIGITS.fullmatch(value) is not None


def luhn_valid(digits: str) -> bool:
    """True when ``digits`` is a non-empty string of ASCII digits whose Luhn checksum is 0."""
    if not isinstance(digits, str) or not _is_ascii_digits(digits):
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - ord("0")
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def normalize_card_number(raw: str) -> str:
    """Return the bare digits of a card number typed by a person.

    Accepted: 12 to 19 ASCII digits passing the Luhn check, optionally split into groups by
    single spaces or by single dashes (one kind per number). Leading, trailing or doubled
    separators, letters and non-ASCII digits are refused with ``ValueError``.
    """
    if not isinstance(raw, str) or not raw:
        raise ValueError("card number is required")
    if len(raw) > _MAX_RAW_LENGTH:
        raise ValueError(f"card number must be {MIN_PAN_DIGITS} to {MAX_PAN_DIGITS} digits")
    if _GROUPED_PAN.fullmatch(raw) is None:
        raise ValueError(
            "card number may contain only digits, with single spaces or dashes between groups"
        )
    digits = raw.replace(" ", "").replace("-", "")
    if not MIN_PAN_DIGITS <= len(digits) <= MAX_PAN_DIGITS:
        raise ValueError(f"card number must be {MIN_PAN_DIGITS} to {MAX_PAN_DIGITS} digits")
    if not luhn_valid(digits):
        raise ValueError("card number is invalid (failed the Luhn check)")
    return digits


def detect_brand(digits: str) -> CardBrand:
    """Brand by issuer identification number (IIN) prefix; ``UNKNOWN`` when nothing matches.

    Only the prefix is inspected, so this says nothing about whether the number is valid.
    """
    if not isinstance(digits, str) or not _is_ascii_digits(digits):
        return CardBrand.UNKNOWN
    for length, first, last, brand in _IIN_RANGES:
        if len(digits) >= length and first <= int(digits[:length]) <= last:
            return brand
    return CardBrand.UNKNOWN


def card_expired(exp_month: int, exp_year: int, now: datetime) -> bool:
    """True once ``now`` has left the expiry month.

    A card is valid up to the last instant of its expiry month in UTC: 11/2026 is still good at
    2026-11-30T23:59:59.999999Z and expired at 2026-12-01T00:00:00Z. ``now`` must be timezone
    aware; the comparison is made on (year, month) in UTC so December rolls into the next year
    without building a date past 9999.
    """
    if type(exp_month) is not int or not 1 <= exp_month <= 12:
        raise ValueError("expiry month must be an integer from 1 to 12")
    if type(exp_year) is not int or not 1000 <= exp_year <= 9999:
        raise ValueError("expiry year must be a four-digit integer")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    current = now.astimezone(UTC)
    return (current.year, current.month) > (exp_year, exp_month)


def validate_cvc(cvc: str, brand: CardBrand) -> str:
    """Return ``cvc`` if it is 3 or 4 ASCII digits.

    The contract allows 3 or 4 digits for every brand, so ``brand`` does not narrow it (an
    Amex 4-digit rule could go here later without changing callers).
    """
    if not isinstance(cvc, str) or _CVC.fullmatch(cvc) is None:
        raise ValueError("cvc must be 3 or 4 digits")
    return cvc


def last4(digits: str) -> str:
    """The last four digits, the only part of a number that is ever shown or stored in clear."""
    if not isinstance(digits, str) or len(digits) < 4 or not _is_ascii_digits(digits):
        raise ValueError("card number must be digits only, at least 4 of them")
    return digits[-4:]


def card_number_spans(text: str) -> list[tuple[int, int]]:
    """Where free text holds what the API would take as a card number: (start, end) of every
    stretch of whole digit groups, joined by single spaces or dashes, of 12 to 19 ASCII digits
    in all that passes the Luhn check, so a card beside other digits ("4111111111111111
    12/2030") is found too. Digits inside a UUID never count. Spans that overlap, or that only
    a separator parts, are merged; they come in order."""
    hidden = _UUID.sub(lambda match: "#" * len(match.group(0)), text)
    spans: list[tuple[int, int]] = []
    for run in _DIGIT_GROUPS.finditer(hidden):
        groups = [
            (m.start() + run.start(), m.end() + run.start())
            for m in _ASCII_DIGITS.finditer(run.group(0))
        ]
        for first in range(len(groups)):
            digits = ""
            for last in range(first, len(groups)):
                digits += text[groups[last][0] : groups[last][1]]
                if len(digits) > MAX_PAN_DIGITS:
                    break
                if len(digits) >= MIN_PAN_DIGITS and luhn_valid(digits):
                    start, end = groups[first][0], groups[last][1]
                    if spans and start <= spans[-1][1] + 1 and spans[-1][0] >= run.start():
                        spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
                    else:
                        spans.append((start, end))
    return spans
