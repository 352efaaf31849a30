"""Currencies and their minor units: every amount in kassa is an ``int`` count of its
currency's minor unit (``1050`` USD is 10.50 USD, ``500`` JPY is 500 JPY) beside a CHAR(3)
currency code.

Invariants:
- a currency is always the upper-case code of an active ISO 4217 currency that people pay with:
  test codes (``XTS``), "no currency" (``XXX``), precious metals, funds and units of account are
  refused, because none of them can be charged to a card or a wallet;
- amounts of different currencies are never added, subtracted or compared (the ledger sums
  per currency).

Nothing here uses floating point: the exponent table is integers.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType

from iso4217 import Currency, raw_xml

__all__ = [
    "UnsupportedCurrency",
    "currency_exponent",
    "format_amount",
    "normalize_currency",
]

# Codes that ISO 4217 lists with a minor unit but that are units of account or settlement
# rather than money a customer holds; the XB* bond units have no minor unit today, but are
# named so a future table that gave them one would not quietly make them payable.
_UNITS_OF_ACCOUNT = frozenset(
    {"XDR", "XSU", "XUA", "XBA", "XBB", "XBC", "XBD", "XAD", "UYW"},
)
_NOT_MONEY = frozenset({"XXX", "XTS", "XAU", "XAG", "XPD", "XPT"})


# Named for what happened, as kassa's errors are (STYLE.md), hence no "Error" suffix.
class UnsupportedCurrency(ValueError):
    """A currency code that kassa cannot take payments in; the message is safe to show."""

    def __init__(self, code: str) -> None:
        if _is_three_ascii_letters(code):
            message = f"{code.upper()!r} is not an active ISO 4217 currency"
        else:
            # The raw input is not echoed: it may be arbitrarily long or contain control text.
            message = "currency must be a three-letter ISO 4217 code"
        super().__init__(message)


def _is_three_ascii_letters(code: object) -> bool:
    return isinstance(code, str) and len(code) == 3 and code.isascii() and code.isalpha()


def _fund_codes() -> frozenset[str]:
    """Codes whose ``CcyNm`` carries ``IsFund="true"`` in the ISO 4217 table (CLF, BOV, USN...)."""
    codes: set[str] = set()
    for entry in raw_xml.iter("CcyNtry"):
        name = entry.find("CcyNm")
        code = entry.find("Ccy")
        if name is None or code is None or code.text is None:
            continue
        if name.get("IsFund", "").strip().lower() == "true":
            codes.add(code.text.strip().upper())
    return frozenset(codes)


def _build_exponents() -> Mapping[str, int]:
    refused = _NOT_MONEY | _UNITS_OF_ACCOUNT | _fund_codes()
    table: dict[str, int] = {}
    for currency in Currency:
        code = currency.code
        exponent = currency.exponent
        if exponent is None or code in refused:
            continue
        table[code] = exponent
    return MappingProxyType(table)


_EXPONENTS: Mapping[str, int] = _build_exponents()


def normalize_currency(code: str) -> str:
    """Return ``code`` upper-cased if it is a payable ISO 4217 currency.

    Any letter case is accepted; nothing is stripped, so ``"usd "`` is refused rather than
    silently repaired. Raises ``UnsupportedCurrency`` for anything else.
    """
    if not _is_three_ascii_letters(code):
        raise UnsupportedCurrency(code if isinstance(code, str) else "")
    upper = code.upper()
    if upper not in _EXPONENTS:
        raise UnsupportedCurrency(upper)
    return upper


def currency_exponent(code: str) -> int:
    """Number of decimal places of the currency's minor unit (USD 2, JPY 0, BHD 3)."""
    return _EXPONENTS[normalize_currency(code)]


def format_amount(amount: int, currency: str, locale: str = "en_US") -> str:
    """`amount` minor units of `currency` as people of `locale` write it ("$10.50", "¥500",
    "1.234,56 €"), with exactly the currency's ISO 4217 decimals.

    The pattern and symbol are CLDR's (Babel); the number of decimals is ISO 4217's, the
    table every amount here is counted in (CLDR rounds some currencies differently, and a
    page must never show an amount other than the one charged). The value is a Decimal
    shifted by the exponent: no float anywhere."""
    from babel import Locale, UnknownLocaleError  # imported when a page is first rendered

    exponent = currency_exponent(currency)
    try:
        parsed = Locale.parse(locale)
    except (UnknownLocaleError, ValueError):
        parsed = Locale.parse("en_US")
    pattern = copy.copy(parsed.currency_formats["standard"])
    pattern.frac_prec = (exponent, exponent)
    value = Decimal(amount).scaleb(-exponent)
    return str(pattern.apply(value, parsed, currency=currency.upper(), currency_digits=False))
