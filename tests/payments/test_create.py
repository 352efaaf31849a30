"""POST /api/payments: what is accepted, what is refused, and what a Payment looks like."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kassa.vault.cards import luhn_valid
from tests.conftest import Api, card_details, payment_body, register_user
from tests.payments import (
    CARD_DETAIL_KEYS,
    PAYMENT_KEYS,
    assert_invalid,
    count_payments,
    random_visa,
)


def _this_month() -> tuple[int, int]:
    now = datetime.now(UTC)
    return now.month, now.year


def _last_month() -> tuple[int, int]:
    month, year = _this_month()
    return (12, year - 1) if month == 1 else (month - 1, year)


async def _post(api: Api, body: Any) -> Any:
    user = await register_user(api.client)
    response = await api.client.post("/api/payments", json=body, headers=user.headers)
    return response, user


async def _refused(api: Api, body: Any, *fields: str) -> dict[str, Any]:
    """Posts `body`, asserts a 422 naming `fields`, and that no payment was stored."""
    response, user = await _post(api, body)
    problem = assert_invalid(response, *fields)
    assert await count_payments(api, user) == 0
    return problem


# Accepted ---------------------------------------------------------------------------------


async def test_card_payment_is_created_pending_with_exactly_the_contract_fields(api: Api) -> None:
    body = payment_body(
        details=card_details(holder_name="Sam Cardholder"),
        description="Order 42",
        metadata={"order": "42"},
    )
    response, user = await _post(api, body)
    assert response.status_code == 201, response.text
    payment = response.json()
    assert set(payment) == PAYMENT_KEYS
    assert payment["status"] == "pending"
    assert payment["user_id"] == user.id
    assert payment["amount"] == 1050
    assert payment["amount_refunded"] == 0
    assert payment["currency"] == "USD"
    assert payment["payment_method"] == "credit_card"
    assert payment["description"] == "Order 42"
    assert payment["metadata"] == {"order": "42"}
    assert payment["failure_code"] is None
    assert payment["failure_message"] is None
    assert payment["details"] == {
        "brand": "visa",
        "last4": "4242",
        "exp_month": 12,
        "exp_year": 2099,
        "holder_name": "Sam Cardholder",
    }


async def test_card_details_show_only_brand_last4_expiry_and_holder(api: Api) -> None:
    response, _ = await _post(api, payment_body(method="debit_card"))
    assert response.status_code == 201, response.text
    details = response.json()["details"]
    assert set(details) == CARD_DETAIL_KEYS
    assert details["holder_name"] is None
    assert "4242424242424242" not in response.text
    assert "cvc" not in response.text


async def test_wallet_details_show_only_the_wallet(api: Api) -> None:
    body = payment_body(method="digital_wallet", details={"wallet": "paypal", "token": "tok_x1"})
    response, _ = await _post(api, body)
    assert response.status_code == 201, response.text
    assert response.json()["details"] == {"wallet": "paypal"}
    assert "tok_x1" not in response.text


async def test_optional_fields_default_to_null_description_and_empty_metadata(api: Api) -> None:
    response, _ = await _post(api, payment_body())
    assert response.status_code == 201
    assert response.json()["description"] is None
    assert response.json()["metadata"] == {}


async def test_lower_case_currency_is_accepted_and_returned_upper_case(api: Api) -> None:
    response, _ = await _post(api, payment_body(currency="eur"))
    assert response.status_code == 201, response.text
    assert response.json()["currency"] == "EUR"


async def test_jpy_amount_is_taken_as_whole_yen(api: Api) -> None:
    response, _ = await _post(api, payment_body(amount=500, currency="JPY"))
    assert response.status_code == 201, response.text
    assert (response.json()["amount"], response.json()["currency"]) == (500, "JPY")


async def test_get_returns_the_created_payment(api: Api) -> None:
    response, user = await _post(api, payment_body())
    created = response.json()
    fetched = await api.client.get(f"/api/payments/{created['id']}", headers=user.headers)
    assert fetched.status_code == 200
    assert fetched.json() == created


async def test_amount_equal_to_the_maximum_is_accepted(api_factory: Any) -> None:
    api = await api_factory(max_amount=5000)
    response, _ = await _post(api, payment_body(amount=5000))
    assert response.status_code == 201, response.text


# Amount and currency ----------------------------------------------------------------------


@pytest.mark.parametrize("amount", [10.5, 10.0, "1050", True, False, 0, -1, None, [1050]])
async def test_amount_that_is_not_a_positive_integer_is_refused(api: Api, amount: Any) -> None:
    await _refused(api, payment_body(amount=amount), "amount")


async def test_amount_above_the_maximum_is_refused(api_factory: Any) -> None:
    api = await api_factory(max_amount=5000)
    await _refused(api, payment_body(amount=5001), "amount")


async def test_missing_amount_is_refused(api: Api) -> None:
    body = payment_body()
    del body["amount"]
    await _refused(api, body, "amount")


@pytest.mark.parametrize("currency", ["XXX", "XTS", "XAU", "CLF", "US", "usd1", "", "US1", 840])
async def test_currency_that_is_not_payable_iso_4217_is_refused(api: Api, currency: Any) -> None:
    await _refused(api, payment_body(currency=currency), "currency")


# Unknown fields ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field", ["status", "user_id", "amount_refunded", "id", "failure_code", "processor"]
)
async def test_unknown_or_server_owned_top_level_field_is_refused(api: Api, field: str) -> None:
    await _refused(api, payment_body(**{field: "completed"}), field)


@pytest.mark.parametrize("field", ["status", "user_id", "amount_refunded", "brand", "last4"])
async def test_unknown_card_details_field_is_refused(api: Api, field: str) -> None:
    await _refused(api, payment_body(details=card_details(**{field: "x"})), f"details.{field}")


async def test_unknown_wallet_details_field_is_refused(api: Api) -> None:
    details = {"wallet": "apple_pay", "token": "tok", "status": "completed"}
    await _refused(api, payment_body(method="digital_wallet", details=details), "details.status")


@pytest.mark.parametrize("method", ["cash", "", "CREDIT_CARD", None])
async def test_unknown_payment_method_is_refused(api: Api, method: Any) -> None:
    await _refused(api, payment_body(details=card_details(), method=method), "payment_method")


async def test_unknown_payment_method_is_not_echoed_back(api: Api) -> None:
    number = random_visa()
    response, _ = await _post(api, payment_body(details=card_details(number), method=number))
    assert response.status_code == 422
    assert number not in response.text


@pytest.mark.parametrize("body", [[], "x", 1, None])
async def test_body_that_is_not_an_object_is_refused(api: Api, body: Any) -> None:
    response, user = await _post(api, body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await count_payments(api, user) == 0


# Cards -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    [
        "4242424242424241",  # Luhn fails
        "42424242424",  # 11 digits
        "4" * 19 + "2",  # 20 digits
        "4242abcd42424242",
        "",
        "４２４２４２４２４２４２４２４２",  # full-width digits
        "4242 4242 4242 4242 ",
        "4242--4242-4242-4242",
    ],
)
async def test_card_number_that_is_not_a_valid_pan_is_refused(api: Api, number: str) -> None:
    await _refused(api, payment_body(details=card_details(number)), "details.number")


async def test_card_number_given_as_a_json_number_is_refused(api: Api) -> None:
    await _refused(api, payment_body(details=card_details(4242424242424242)), "details.number")


@pytest.mark.parametrize("number", ["4242 4242 4242 4242", "4242-4242-4242-4242", "424242424242"])
async def test_card_number_with_spaces_or_dashes_between_groups_is_accepted(
    api: Api, number: str
) -> None:
    response, _ = await _post(api, payment_body(details=card_details(number)))
    assert response.status_code == 201, response.text
    assert response.json()["details"]["last4"] == number.replace(" ", "").replace("-", "")[-4:]


async def test_card_that_expired_last_month_is_refused(api: Api) -> None:
    month, year = _last_month()
    await _refused(api, payment_body(details=card_details(exp_month=month, exp_year=year)))


async def test_card_expiring_this_month_is_accepted(api: Api) -> None:
    month, year = _this_month()
    response, _ = await _post(
        api, payment_body(details=card_details(exp_month=month, exp_year=year))
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("exp_year", [99, 25, 0, 10000, "2099", 2099.0])
async def test_exp_year_that_is_not_four_digits_is_refused(api: Api, exp_year: Any) -> None:
    await _refused(api, payment_body(details=card_details(exp_year=exp_year)), "details.exp_year")


@pytest.mark.parametrize("exp_month", [0, 13, -1, "12", 12.0])
async def test_exp_month_outside_1_to_12_is_refused(api: Api, exp_month: Any) -> None:
    await _refused(
        api, payment_body(details=card_details(exp_month=exp_month)), "details.exp_month"
    )


@pytest.mark.parametrize("cvc", ["12", "12345", "12a", "abc", "", " 123", 123])
async def test_cvc_that_is_not_three_or_four_digits_is_refused(api: Api, cvc: Any) -> None:
    await _refused(api, payment_body(details=card_details(cvc=cvc)), "details")


@pytest.mark.parametrize("cvc", ["123", "1234"])
async def test_cvc_of_three_or_four_digits_is_accepted(api: Api, cvc: str) -> None:
    response, _ = await _post(api, payment_body(details=card_details(cvc=cvc)))
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("missing", ["number", "exp_month", "exp_year", "cvc"])
async def test_card_without_a_required_field_is_refused(api: Api, missing: str) -> None:
    details = card_details()
    del details[missing]
    await _refused(api, payment_body(details=details), f"details.{missing}")


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4242424242424242", "visa"),
        ("5555555555554444", "mastercard"),
        ("378282246310005", "amex"),
        ("6011111111111117", "discover"),
        ("3056930009020004", "diners"),
        ("3566002020360505", "jcb"),
        ("6200000000000005", "unionpay"),
        ("2223003122003222", "mastercard"),
        ("9999999999999995", "unknown"),
    ],
)
async def test_card_brand_is_detected_from_the_number(api: Api, number: str, brand: str) -> None:
    response, _ = await _post(api, payment_body(details=card_details(number)))
    assert response.status_code == 201, response.text
    assert response.json()["details"]["brand"] == brand
    assert response.json()["details"]["last4"] == number[-4:]


async def test_validation_errors_never_echo_the_card_number_or_cvc(api: Api) -> None:
    number = random_visa()
    bad_luhn = number[:-1] + str((int(number[-1]) + 1) % 10)
    # A 17-digit number that fails Luhn (some digit appended to a valid number passes it).
    longer = next(number + d for d in "0123456789" if not luhn_valid(number + d))
    cases = [
        card_details(bad_luhn, cvc="98765"),
        card_details(number, cvc="98x6"),
        card_details(number, cvc="9876", exp_year=21),
        card_details(number, cvc="9876", status="x"),
        card_details(longer, cvc="9876"),
    ]
    user = await register_user(api.client)
    for details in cases:
        for method in ("credit_card", "digital_wallet"):
            response = await api.client.post(
                "/api/payments",
                json=payment_body(method=method, details=details),
                headers=user.headers,
            )
            assert response.status_code == 422, response.text
            for secret in (number, bad_luhn, number[:12], details["cvc"]):
                assert secret not in response.text, (secret, response.text)


# Wallets -----------------------------------------------------------------------------------


async def test_wallet_with_unknown_wallet_name_is_refused(api: Api) -> None:
    details = {"wallet": "venmo", "token": "tok"}
    await _refused(api, payment_body(method="digital_wallet", details=details), "details.wallet")


@pytest.mark.parametrize("token", [None, "", 123])
async def test_wallet_without_a_string_token_is_refused(api: Api, token: Any) -> None:
    details: dict[str, Any] = {"wallet": "google_pay"}
    if token is not None:
        details["token"] = token
    await _refused(api, payment_body(method="digital_wallet", details=details), "details.token")


async def test_card_details_with_digital_wallet_are_refused(api: Api) -> None:
    await _refused(api, payment_body(method="digital_wallet", details=card_details()), "details")


@pytest.mark.parametrize("method", ["credit_card", "debit_card"])
async def test_wallet_details_with_a_card_method_are_refused(api: Api, method: str) -> None:
    details = {"wallet": "apple_pay", "token": "tok"}
    await _refused(api, payment_body(method=method, details=details), "details")


async def test_details_missing_entirely_are_refused(api: Api) -> None:
    body = payment_body()
    del body["details"]
    await _refused(api, body, "details")


# Description and metadata -----------------------------------------------------------------


async def test_description_of_500_characters_is_accepted(api: Api) -> None:
    response, _ = await _post(api, payment_body(description="d" * 500))
    assert response.status_code == 201, response.text


async def test_description_of_501_characters_is_refused(api: Api) -> None:
    await _refused(api, payment_body(description="d" * 501), "description")


async def test_metadata_with_20_keys_and_limits_at_the_edge_is_accepted(api: Api) -> None:
    metadata = {f"k{i:02d}": "v" for i in range(19)} | {"k" * 40: "v" * 500}
    response, _ = await _post(api, payment_body(metadata=metadata))
    assert response.status_code == 201, response.text
    assert response.json()["metadata"] == metadata


@pytest.mark.parametrize(
    "metadata",
    [
        {f"k{i}": "v" for i in range(21)},
        {"k" * 41: "v"},
        {"": "v"},
        {"k": 1},
        {"k": None},
        {"k": True},
        {"k": {"nested": "x"}},
        {"k": ["x"]},
        {"k": "v" * 501},
        ["k", "v"],
        "k=v",
    ],
)
async def test_metadata_that_is_not_a_small_flat_string_map_is_refused(
    api: Api, metadata: Any
) -> None:
    await _refused(api, payment_body(metadata=metadata), "metadata")
