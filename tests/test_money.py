from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kassa.money import (
    CurrencyMismatch,
    Money,
    UnsupportedCurrency,
    currency_exponent,
    normalize_currency,
)

# A sample across exponents 0, 2, 3 and 4 for the property tests.
SAMPLE_CURRENCIES = ["USD", "EUR", "JPY", "KRW", "BHD", "KWD", "TND", "GBP", "ISK"]
amounts = st.integers(min_value=-(10**18), max_value=10**18)


def test_normalize_currency_upper_cases_lower_case_code() -> None:
    assert normalize_currency("usd") == "USD"


def test_normalize_currency_upper_cases_mixed_case_code() -> None:
    assert normalize_currency("eUr") == "EUR"


@pytest.mark.parametrize("code", ["XXX", "XTS", "xts"])
def test_normalize_currency_refuses_test_and_no_currency_codes(code: str) -> None:
    with pytest.raises(UnsupportedCurrency):
        normalize_currency(code)


@pytest.mark.parametrize("code", ["XAU", "XAG", "XPD", "XPT"])
def test_normalize_currency_refuses_precious_metals(code: str) -> None:
    with pytest.raises(UnsupportedCurrency):
        normalize_currency(code)


@pytest.mark.parametrize("code", ["CLF", "BOV", "USN", "MXV", "COU", "CHE", "CHW", "UYI"])
def test_normalize_currency_refuses_funds_codes(code: str) -> None:
    with pytest.raises(UnsupportedCurrency):
        normalize_currency(code)


@pytest.mark.parametrize("code", ["XDR", "XSU", "XUA", "XBA", "XBB", "XBC", "XBD", "XAD", "UYW"])
def test_normalize_currency_refuses_units_of_account(code: str) -> None:
    with pytest.raises(UnsupportedCurrency):
        normalize_currency(code)


@pytest.mark.parametrize("code", ["US", "USDD", "", "usd ", " usd", "U5D", "ÜSD", "US\n"])
def test_normalize_currency_refuses_anything_but_three_ascii_letters(code: str) -> None:
    with pytest.raises(UnsupportedCurrency):
        normalize_currency(code)


def test_normalize_currency_refuses_unassigned_code() -> None:
    with pytest.raises(UnsupportedCurrency):
        normalize_currency("ABC")


def test_normalize_currency_refuses_withdrawn_code() -> None:
    with pytest.raises(UnsupportedCurrency):
        normalize_currency("DEM")


@pytest.mark.parametrize("code", ["XCD", "XOF", "XAF", "XPF", "CHF", "MXN", "UYU", "BOB"])
def test_normalize_currency_accepts_real_x_currencies_and_siblings_of_funds(code: str) -> None:
    assert normalize_currency(code) == code


def test_unsupported_currency_message_names_the_upper_cased_code() -> None:
    with pytest.raises(UnsupportedCurrency) as excinfo:
        normalize_currency("xau")
    assert str(excinfo.value) == "'XAU' is not an active ISO 4217 currency"


def test_unsupported_currency_message_does_not_echo_malformed_input() -> None:
    with pytest.raises(UnsupportedCurrency) as excinfo:
        normalize_currency("<script>")
    assert "script" not in str(excinfo.value)


def test_unsupported_currency_is_a_value_error() -> None:
    assert issubclass(UnsupportedCurrency, ValueError)


@pytest.mark.parametrize(
    ("code", "exponent"), [("USD", 2), ("JPY", 0), ("BHD", 3), ("usd", 2), ("KRW", 0)]
)
def test_currency_exponent_matches_iso_4217(code: str, exponent: int) -> None:
    assert currency_exponent(code) == exponent


def test_currency_exponent_refuses_unsupported_currency() -> None:
    with pytest.raises(UnsupportedCurrency):
        currency_exponent("XAU")


def test_money_normalizes_currency_to_upper_case() -> None:
    assert Money(100, "usd").currency == "USD"


def test_money_with_different_case_currency_is_equal() -> None:
    assert Money(100, "usd") == Money(100, "USD")


def test_money_refuses_unsupported_currency() -> None:
    with pytest.raises(UnsupportedCurrency):
        Money(100, "XTS")


@pytest.mark.parametrize("amount", [True, False, 1.0, Decimal(1), "100", None])
def test_money_refuses_non_int_amount(amount: object) -> None:
    with pytest.raises(TypeError):
        Money(amount, "USD")  # type: ignore[arg-type]


def test_money_refuses_non_str_currency() -> None:
    with pytest.raises(TypeError):
        Money(100, 840)  # type: ignore[arg-type]


def test_money_is_immutable() -> None:
    money = Money(100, "USD")
    with pytest.raises(AttributeError):
        money.amount_minor = 5  # type: ignore[misc]


def test_money_add_sums_minor_units() -> None:
    assert Money(1050, "USD") + Money(25, "USD") == Money(1075, "USD")


def test_money_sub_subtracts_minor_units() -> None:
    assert Money(1050, "USD") - Money(1100, "USD") == Money(-50, "USD")


def test_money_neg_flips_sign() -> None:
    assert -Money(1050, "USD") == Money(-1050, "USD")


def test_money_add_refuses_different_currency() -> None:
    with pytest.raises(CurrencyMismatch):
        Money(1, "USD") + Money(1, "EUR")


def test_money_sub_refuses_different_currency() -> None:
    with pytest.raises(CurrencyMismatch):
        Money(1, "USD") - Money(1, "EUR")


@pytest.mark.parametrize("compare", ["lt", "le", "gt", "ge"])
def test_money_ordering_refuses_different_currency(compare: str) -> None:
    left, right = Money(1, "USD"), Money(1, "EUR")
    with pytest.raises(CurrencyMismatch):
        getattr(left, f"__{compare}__")(right)


def test_money_comparison_operator_refuses_different_currency() -> None:
    with pytest.raises(CurrencyMismatch):
        _ = Money(1, "USD") < Money(2, "EUR")


def test_money_equality_across_currencies_is_false_not_an_error() -> None:
    assert Money(1, "USD") != Money(1, "EUR")


def test_money_orders_by_amount_within_a_currency() -> None:
    small, big = Money(1, "USD"), Money(2, "USD")
    assert small < big
    assert small <= big
    assert big > small
    assert big >= small
    assert small <= Money(1, "USD")


def test_money_add_with_non_money_raises_type_error() -> None:
    with pytest.raises(TypeError):
        Money(1, "USD") + 1  # type: ignore[operator]


def test_currency_mismatch_is_a_value_error() -> None:
    assert issubclass(CurrencyMismatch, ValueError)


def test_money_zero_is_zero() -> None:
    assert Money.zero("jpy") == Money(0, "JPY")
    assert Money.zero("JPY").is_zero()


def test_money_is_zero_false_for_non_zero_amount() -> None:
    assert not Money(-1, "USD").is_zero()


def test_money_is_hashable_by_value() -> None:
    assert len({Money(1, "usd"), Money(1, "USD")}) == 1


@pytest.mark.parametrize(
    ("money", "text"),
    [
        (Money(1050, "USD"), "10.50 USD"),
        (Money(5, "USD"), "0.05 USD"),
        (Money(-5, "USD"), "-0.05 USD"),
        (Money(0, "USD"), "0.00 USD"),
        (Money(500, "JPY"), "500 JPY"),
        (Money(-500, "JPY"), "-500 JPY"),
        (Money(-1234, "BHD"), "-1.234 BHD"),
        (Money(10000, "CLP"), "10000 CLP"),
        (Money(99999999, "EUR"), "999999.99 EUR"),
    ],
)
def test_money_format_uses_currency_exponent(money: Money, text: str) -> None:
    assert money.format() == text


def test_money_format_is_exact_beyond_float_precision() -> None:
    assert Money(2**63 + 1, "USD").format() == "92233720368547758.09 USD"


@given(amount=amounts, currency=st.sampled_from(SAMPLE_CURRENCIES))
def test_money_format_round_trips_through_decimal(amount: int, currency: str) -> None:
    number, code = Money(amount, currency).format().split(" ")
    assert code == currency
    assert Decimal(number).scaleb(currency_exponent(currency)) == Decimal(amount)


@given(a=amounts, b=amounts, currency=st.sampled_from(SAMPLE_CURRENCIES))
def test_money_add_then_sub_returns_original(a: int, b: int, currency: str) -> None:
    x, y = Money(a, currency), Money(b, currency)
    assert x + y - y == x


@given(a=amounts, b=amounts)
def test_money_add_is_commutative(a: int, b: int) -> None:
    assert Money(a, "USD") + Money(b, "USD") == Money(b, "USD") + Money(a, "USD")


@given(a=amounts)
def test_money_zero_is_additive_identity(a: int) -> None:
    assert Money(a, "BHD") + Money.zero("BHD") == Money(a, "BHD")


@given(a=amounts)
def test_money_neg_is_an_involution_summing_to_zero(a: int) -> None:
    money = Money(a, "EUR")
    negated = -money
    assert -negated == money
    assert (money + -money).is_zero()
