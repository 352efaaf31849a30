"""Money as an integer count of a currency's minor unit.

Invariants:
- an amount is always a Python ``int`` (never ``bool``, ``float`` or ``Decimal``) counting the
  currency's minor unit: ``Money(1050, "USD")`` is 10.50 USD, ``Money(500, "JPY")`` is 500 JPY;
- a currency is always the upper-case code of an active ISO 4217 currency that people pay with:
  test codes (``XTS``), "no currency" (``XXX``), precious metals, funds and units of account are
  refused, because none of them can be charged to a card or a wallet;
- amounts of different currencies are never added, subtracted or ordered against each other.

Nothing here uses floating point: the exponent table and every formatting step are integers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from iso4217 import Currency, raw_xml

__all__ = [
    "CurrencyMismatch",
    "Money",
    "UnsupportedCurrency",
    "currency_exponent",
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


class CurrencyMismatch(ValueError):
    """Two amounts of different currencies were combined or compared."""

    def __init__(self, left: str, right: str) -> None:
        super().__init__(f"cannot combine amounts in {left} and {right}")
        self.left = left
        self.right = right


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


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount: ``amount_minor`` minor units of ``currency``.

    ``currency`` is normalized to upper case on construction, so two ``Money`` values are equal
    exactly when they denote the same amount of the same currency. Amounts may be negative or
    zero here (ledger postings need both); whether an amount is acceptable for a payment is
    decided by the caller. Different currencies never mix: arithmetic and ordering between
    them raise ``CurrencyMismatch``.
    """

    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        # bool is an int subclass and True would otherwise pass as one minor unit.
        if type(self.amount_minor) is not int:
            raise TypeError("amount_minor must be an int count of minor units")
        if not isinstance(self.currency, str):
            raise TypeError("currency must be a str")
        object.__setattr__(self, "currency", normalize_currency(self.currency))

    @classmethod
    def zero(cls, currency: str) -> Money:
        """Zero of ``currency``: the identity for ``+`` and ``-``."""
        return cls(0, currency)

    def is_zero(self) -> bool:
        return self.amount_minor == 0

    def _same_currency(self, other: Money) -> None:
        if self.currency != other.currency:
            raise CurrencyMismatch(self.currency, other.currency)

    def __add__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount_minor, self.currency)

    def __lt__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount_minor < other.amount_minor

    def __le__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount_minor <= other.amount_minor

    def __gt__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount_minor > other.amount_minor

    def __ge__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount_minor >= other.amount_minor

    def format(self) -> str:
        """Human form with exactly the currency's decimals: "10.50 USD", "500 JPY", "-1.234 BHD"."""
        exponent = _EXPONENTS[self.currency]
        sign = "-" if self.amount_minor < 0 else ""
        major, minor = divmod(abs(self.amount_minor), 10**exponent)
        if exponent == 0:
            return f"{sign}{major} {self.currency}"
        return f"{sign}{major}.{minor:0{exponent}d} {self.currency}"
