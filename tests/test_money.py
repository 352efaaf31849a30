import pytest

from kassa.money import (
    UnsupportedCurrency,
    currency_exponent,
    normalize_currency,
)


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
