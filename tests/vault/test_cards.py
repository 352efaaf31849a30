import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kassa.vault.cards import (
    CardBrand,
    card_expired,
    card_number_spans,
    detect_brand,
    last4,
    luhn_valid,
    normalize_card_number,
    validate_cvc,
)

CONTRACT_TEST_CARDS = [
    "4242424242424242",
    "5555555555554444",
    "4000056655665556",
    "4000000000000002",
    "4000000000009995",
    "4000000000000069",
    "4000000000000127",
    "4000000000000119",
]

# Every sample is Luhn-valid (checked by a test below), so each brand case is a real input.
BRAND_SAMPLES = [
    ("4242424242424242", CardBrand.VISA),
    ("4000000000006", CardBrand.VISA),
    ("5555555555554444", CardBrand.MASTERCARD),
    ("5100000000000008", CardBrand.MASTERCARD),
    ("2223003122003222", CardBrand.MASTERCARD),
    ("2221000000000009", CardBrand.MASTERCARD),
    ("2720000000000005", CardBrand.MASTERCARD),
    ("378282246310005", CardBrand.AMEX),
    ("340000000000009", CardBrand.AMEX),
    ("6011111111111117", CardBrand.DISCOVER),
    ("6440000000000005", CardBrand.DISCOVER),
    ("6490000000000004", CardBrand.DISCOVER),
    ("6500000000000002", CardBrand.DISCOVER),
    ("6221260000000000", CardBrand.DISCOVER),
    ("6229250000000003", CardBrand.DISCOVER),
    ("3056930009020004", CardBrand.DINERS),
    ("30000000000004", CardBrand.DINERS),
    ("36227206271667", CardBrand.DINERS),
    ("38000000000006", CardBrand.DINERS),
    ("39000000000005", CardBrand.DINERS),
    ("3566002020360505", CardBrand.JCB),
    ("3528000000000007", CardBrand.JCB),
    ("3589000000000003", CardBrand.JCB),
    ("6200000000000005", CardBrand.UNIONPAY),
    ("6221250000000001", CardBrand.UNIONPAY),
    ("6229260000000002", CardBrand.UNIONPAY),
    ("8100000000000002", CardBrand.UNIONPAY),
    ("2721000000000004", CardBrand.UNKNOWN),
    ("5600000000000003", CardBrand.UNKNOWN),
    ("3527000000000008", CardBrand.UNKNOWN),
    ("3590000000000000", CardBrand.UNKNOWN),
    ("30600000000001", CardBrand.UNKNOWN),
    ("9000000000000001", CardBrand.UNKNOWN),
]

INVALID_NUMBERS = [
    "4242424242424241",  # Luhn
    "42424242424",  # too short
    "42424242424242424242",  # too long
    " 4242424242424242",
    "4242424242424242 ",
    "4242  4242 4242 4242",
    "4242--4242-4242-4242",
    "-4242-4242-4242-4242",
    "4242 4242-4242 4242",
    "4242x4242424242424242",
    "4242\t4242424242424242",
    "4242424242424242\n",
    "٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢",
    "4242\uff14\uff12\uff14\uff1242424242",  # fullwidth digits
    "",
    "4" * 500,
]


def _with_check_digit(body: str) -> str:
    """Append the digit that makes ``body`` Luhn-valid (independent of the code under test)."""
    total = 0
    for position, char in enumerate(reversed(body)):
        value = int(char)
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return body + str((10 - total % 10) % 10)


@pytest.mark.parametrize("number", CONTRACT_TEST_CARDS)
def test_luhn_accepts_contract_test_cards(number: str) -> None:
    assert luhn_valid(number)


@pytest.mark.parametrize("number", ["4242424242424241", "5555555555554440", "1234567812345678"])
def test_luhn_refuses_wrong_check_digit(number: str) -> None:
    assert not luhn_valid(number)


@pytest.mark.parametrize("value", ["", "4242 4242", "٤٢", "abc"])
def test_luhn_is_false_for_non_ascii_digit_strings(value: str) -> None:
    assert not luhn_valid(value)


@given(body=st.text(alphabet="0123456789", min_size=11, max_size=18))
def test_luhn_accepts_any_body_with_its_check_digit(body: str) -> None:
    assert luhn_valid(_with_check_digit(body))


@given(
    body=st.text(alphabet="0123456789", min_size=11, max_size=18),
    index=st.integers(min_value=0),
    delta=st.integers(min_value=1, max_value=9),
)
def test_luhn_detects_every_single_digit_change(body: str, index: int, delta: int) -> None:
    number = _with_check_digit(body)
    position = index % len(number)
    changed = str((int(number[position]) + delta) % 10)
    mutated = number[:position] + changed + number[position + 1 :]
    assert not luhn_valid(mutated)


@pytest.mark.parametrize("number", CONTRACT_TEST_CARDS)
def test_normalize_card_number_accepts_contract_test_cards(number: str) -> None:
    assert normalize_card_number(number) == number


@pytest.mark.parametrize(
    "raw",
    [
        "4242 4242 4242 4242",
        "4242-4242-4242-4242",
        "4242424242 424242",
        "4-2-4-2-4-2-4-2-4-2-4-2-4-2-4-2",
    ],
)
def test_normalize_card_number_strips_single_separators_between_groups(raw: str) -> None:
    assert normalize_card_number(raw) == "4242424242424242"


def test_normalize_card_number_accepts_amex_grouping() -> None:
    assert normalize_card_number("3782 822463 10005") == "378282246310005"


def test_normalize_card_number_accepts_12_digits() -> None:
    number = _with_check_digit("42424242424")
    assert normalize_card_number(number) == number


def test_normalize_card_number_accepts_19_digits() -> None:
    number = _with_check_digit("424242424242424242")
    assert normalize_card_number(number) == number


@pytest.mark.parametrize("raw", INVALID_NUMBERS)
def test_normalize_card_number_refuses_invalid_input(raw: str) -> None:
    with pytest.raises(ValueError, match="card number"):
        normalize_card_number(raw)


@pytest.mark.parametrize("raw", ["42424242424", "42424242424242424242"])
def test_normalize_card_number_refuses_wrong_digit_count(raw: str) -> None:
    with pytest.raises(ValueError, match="must be 12 to 19 digits"):
        normalize_card_number(raw)


def test_normalize_card_number_refuses_luhn_failure() -> None:
    with pytest.raises(ValueError, match=r"failed the Luhn check"):
        normalize_card_number("4242 4242 4242 4241")


def test_normalize_card_number_refuses_unicode_digits() -> None:
    with pytest.raises(ValueError, match="card number"):
        normalize_card_number("٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢")


@pytest.mark.parametrize("raw", INVALID_NUMBERS)
def test_normalize_card_number_error_never_contains_digits_of_the_number(raw: str) -> None:
    with pytest.raises(ValueError, match="card number") as excinfo:
        normalize_card_number(raw)
    message = str(excinfo.value)
    assert re.search(r"[0-9]{3,}", message) is None
    digits = re.sub(r"[^0-9]", "", raw)
    if digits:
        assert digits[-4:] not in message


@pytest.mark.parametrize(("number", "brand"), BRAND_SAMPLES)
def test_brand_samples_are_luhn_valid(number: str, brand: CardBrand) -> None:
    assert normalize_card_number(number) == number


@pytest.mark.parametrize(("number", "brand"), BRAND_SAMPLES)
def test_detect_brand_follows_iin_ranges(number: str, brand: CardBrand) -> None:
    assert detect_brand(number) is brand


def test_detect_brand_is_unknown_for_non_digits() -> None:
    assert detect_brand("4242 4242") is CardBrand.UNKNOWN


def test_card_brand_values_are_the_contract_names() -> None:
    assert [b.value for b in CardBrand] == [
        "visa",
        "mastercard",
        "amex",
        "discover",
        "diners",
        "jcb",
        "unionpay",
        "unknown",
    ]


def test_card_valid_at_last_microsecond_of_expiry_month() -> None:
    assert not card_expired(11, 2026, datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=UTC))


def test_card_expired_at_first_instant_after_expiry_month() -> None:
    assert card_expired(11, 2026, datetime(2026, 12, 1, tzinfo=UTC))


def test_december_card_valid_at_last_microsecond_of_year() -> None:
    assert not card_expired(12, 2026, datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))


def test_december_card_expired_on_new_year() -> None:
    assert card_expired(12, 2026, datetime(2027, 1, 1, tzinfo=UTC))


def test_card_valid_before_expiry_month() -> None:
    assert not card_expired(1, 2030, datetime(2029, 12, 31, tzinfo=UTC))


def test_card_expiry_month_end_is_judged_in_utc_not_local_time() -> None:
    # 2026-11-30 20:00 at UTC-5 is already 2026-12-01 01:00 UTC.
    new_york = timezone(timedelta(hours=-5))
    assert card_expired(11, 2026, datetime(2026, 11, 30, 20, 0, tzinfo=new_york))


def test_card_not_expired_while_still_in_month_in_utc_though_next_month_locally() -> None:
    # 2026-12-01 00:30 at UTC+1 is still 2026-11-30 23:30 UTC.
    paris = timezone(timedelta(hours=1))
    assert not card_expired(11, 2026, datetime(2026, 12, 1, 0, 30, tzinfo=paris))


def test_card_expired_refuses_naive_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        card_expired(11, 2026, datetime(2026, 1, 1))  # noqa: DTZ001


@pytest.mark.parametrize("month", [0, 13, -1])
def test_card_expired_refuses_month_out_of_range(month: int) -> None:
    with pytest.raises(ValueError, match="month"):
        card_expired(month, 2026, datetime(2026, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize("year", [26, 999, 10000])
def test_card_expired_refuses_year_without_four_digits(year: int) -> None:
    with pytest.raises(ValueError, match="year"):
        card_expired(1, year, datetime(2026, 1, 1, tzinfo=UTC))


def test_card_expiring_december_9999_is_not_expired() -> None:
    assert not card_expired(12, 9999, datetime(9999, 12, 31, 23, 59, tzinfo=UTC))


@pytest.mark.parametrize("cvc", ["123", "0000", "999"])
@pytest.mark.parametrize("brand", list(CardBrand))
def test_validate_cvc_accepts_three_or_four_digits_for_every_brand(
    cvc: str, brand: CardBrand
) -> None:
    assert validate_cvc(cvc, brand) == cvc


@pytest.mark.parametrize("cvc", ["", "12", "12345", "12a", " 123", "123 ", "١٢٣", "12\n"])
def test_validate_cvc_refuses_other_input(cvc: str) -> None:
    with pytest.raises(ValueError, match="cvc must be 3 or 4 digits"):
        validate_cvc(cvc, CardBrand.VISA)


def test_validate_cvc_error_does_not_contain_the_value() -> None:
    with pytest.raises(ValueError, match="cvc") as excinfo:
        validate_cvc("98765", CardBrand.AMEX)
    assert "987" not in str(excinfo.value)


def test_last4_returns_last_four_digits() -> None:
    assert last4("4242424242424242") == "4242"
    assert last4("378282246310005") == "0005"


@pytest.mark.parametrize("value", ["424", "4242 4242", ""])
def test_last4_refuses_anything_but_at_least_four_digits(value: str) -> None:
    with pytest.raises(ValueError, match="card number"):
        last4(value)


def test_card_number_spans_find_a_card_beside_other_digits() -> None:
    text = "paid with 4111111111111111 12/2030 thanks"
    assert card_number_spans(text) == [(10, 26)]


def test_card_number_spans_merge_two_cards_joined_by_one_separator() -> None:
    text = "4242 4242 4242 4242 4111-1111-1111-1111 end"
    assert card_number_spans(text) == [(0, 39)]


def test_card_number_spans_keep_cards_apart_when_other_text_parts_them() -> None:
    text = "4242424242424242/4111111111111111"
    assert card_number_spans(text) == [(0, 16), (17, 33)]


def test_card_number_spans_never_read_a_uuid_or_a_non_luhn_run_as_a_card() -> None:
    assert card_number_spans("id 12345678-1234-1234-1234-424242424242 ok") == []
    assert card_number_spans("order 4242424242424241") == []
