"""Registration and login: the bodies, the errors, and emails that compare case-insensitively."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.conftest import Api, register_user, unique_email

PASSWORD = "correct horse battery"


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail", "code"} <= body.keys()
    assert body["status"] == status
    assert body["code"] == code
    return body


def assert_validation_error(response: httpx.Response, *fields: str) -> list[dict[str, str]]:
    body = assert_problem(response, 422, "validation_error")
    errors: list[dict[str, str]] = body["errors"]
    assert errors, body
    assert all(set(e) == {"field", "message"} for e in errors)
    assert {e["field"] for e in errors} >= set(fields), errors
    return errors


async def register(api: Api, **body: Any) -> httpx.Response:
    return await api.client.post("/api/auth/register", json=body)


async def login(api: Api, email: str, password: str) -> httpx.Response:
    return await api.client.post("/api/auth/login", json={"email": email, "password": password})


# register --------------------------------------------------------------------------------


async def test_register_returns_201_with_exactly_id_name_email_created_at(api: Api) -> None:
    email = unique_email()
    response = await register(api, name="Sam Cardholder", email=email, password=PASSWORD)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id", "name", "email", "created_at"}
    assert uuid.UUID(body["id"])
    assert body["name"] == "Sam Cardholder"
    assert body["email"] == email
    assert datetime.fromisoformat(body["created_at"]).utcoffset() is not None


async def test_register_never_returns_the_password_or_its_hash(api: Api) -> None:
    response = await register(api, name="Sam", email=unique_email(), password=PASSWORD)
    assert response.status_code == 201
    text = response.text.lower()
    assert PASSWORD not in response.text
    assert "password" not in text
    assert "argon2" not in text


async def test_register_trims_the_name(api: Api) -> None:
    response = await register(
        api, name="  Grace Hopper \t", email=unique_email(), password=PASSWORD
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "Grace Hopper"


@pytest.mark.parametrize("name", ["", "   "])
async def test_register_refuses_an_empty_name(api: Api, name: str) -> None:
    response = await register(api, name=name, email=unique_email(), password=PASSWORD)
    assert_validation_error(response, "name")


async def test_register_duplicate_email_is_409_email_taken(api: Api) -> None:
    email = unique_email()
    assert (await register(api, name="A", email=email, password=PASSWORD)).status_code == 201
    response = await register(api, name="B", email=email, password=PASSWORD + "x")
    assert_problem(response, 409, "email_taken")


async def test_register_duplicate_email_in_other_letter_case_is_409(api: Api) -> None:
    local = f"Mixed.Case-{uuid.uuid4().hex[:8]}"
    first = await register(api, name="A", email=f"{local}@Example.COM", password=PASSWORD)
    assert first.status_code == 201, first.text
    response = await register(
        api, name="B", email=f"{local.upper()}@example.com", password=PASSWORD
    )
    assert_problem(response, 409, "email_taken")


async def test_concurrent_registrations_of_one_email_let_exactly_one_succeed(api: Api) -> None:
    email = unique_email()
    responses = await asyncio.gather(
        *(register(api, name=f"racer {i}", email=email, password=PASSWORD) for i in range(8))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 7, [r.text for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert_problem(response, 409, "email_taken")


@pytest.mark.parametrize("missing", ["name", "email", "password"])
async def test_register_missing_field_is_422_naming_it(api: Api, missing: str) -> None:
    body = {"name": "A", "email": unique_email(), "password": PASSWORD}
    del body[missing]
    errors = assert_validation_error(await register(api, **body), missing)
    assert any(e["message"] == "field required" for e in errors if e["field"] == missing)


async def test_register_empty_body_lists_every_missing_field(api: Api) -> None:
    response = await api.client.post("/api/auth/register", json={})
    assert_validation_error(response, "name", "email", "password")


@pytest.mark.parametrize("length", [11, 1025])
async def test_register_password_outside_12_to_1024_characters_is_422(
    api: Api, length: int
) -> None:
    password = "p" * length
    response = await register(api, name="A", email=unique_email(), password=password)
    assert_validation_error(response, "password")
    assert password not in response.text


@pytest.mark.parametrize("length", [12, 1024])
async def test_register_password_at_the_length_bounds_is_accepted(api: Api, length: int) -> None:
    email = unique_email()
    password = "p" * length
    response = await register(api, name="A", email=email, password=password)
    assert response.status_code == 201, response.text
    assert (await login(api, email, password)).status_code == 200


@pytest.mark.parametrize("email", ["not-an-email", "a@", "@example.com", "a b@example.com", ""])
async def test_register_bad_email_is_422(api: Api, email: str) -> None:
    response = await register(api, name="A", email=email, password=PASSWORD)
    assert_validation_error(response, "email")


async def test_register_unknown_field_is_422_naming_it(api: Api) -> None:
    response = await register(api, name="A", email=unique_email(), password=PASSWORD, is_admin=True)
    errors = assert_validation_error(response, "is_admin")
    assert {"field": "is_admin", "message": "unknown field"} in errors


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", 123), ("email", ["a@example.com"]), ("password", 123456789012), ("name", None)],
)
async def test_register_non_string_value_is_422(api: Api, field: str, value: Any) -> None:
    body: dict[str, Any] = {"name": "A", "email": unique_email(), "password": PASSWORD}
    body[field] = value
    assert_validation_error(await register(api, **body), field)


async def test_register_body_that_is_not_an_object_is_422(api: Api) -> None:
    response = await api.client.post("/api/auth/register", json=["name", "email"])
    assert_problem(response, 422, "validation_error")


async def test_register_malformed_json_is_a_problem_document(api: Api) -> None:
    response = await api.client.post(
        "/api/auth/register",
        content=b'{"name": "A", ',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code in {400, 422}
    assert response.headers["content-type"].startswith("application/problem+json")


# login -----------------------------------------------------------------------------------


async def test_login_returns_bearer_tokens(api: Api) -> None:
    email = unique_email()
    await register(api, name="A", email=email, password=PASSWORD)
    response = await login(api, email, PASSWORD)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["token_type"] == "bearer"
    assert isinstance(body["expires_in"], int)
    assert body["expires_in"] > 0
    assert body["access_token"].count(".") == 2
    assert body["refresh_token"].count(".") == 2
    assert body["access_token"] != body["refresh_token"]


async def test_login_access_token_opens_the_profile(api: Api) -> None:
    user = await register_user(api.client)
    response = await api.client.get("/api/auth/profile", headers=user.headers)
    assert response.status_code == 200, response.text
    assert response.json()["email"] == user.email


async def test_login_wrong_password_is_401_invalid_credentials(api: Api) -> None:
    user = await register_user(api.client)
    response = await login(api, user.email, user.password + "x")
    assert_problem(response, 401, "invalid_credentials")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_login_unknown_email_and_wrong_password_answer_identically(api: Api) -> None:
    user = await register_user(api.client)
    wrong_password = await login(api, user.email, "not the password at all")
    unknown_email = await login(api, unique_email(), "not the password at all")
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.json() == unknown_email.json()
    assert wrong_password.headers["content-type"] == unknown_email.headers["content-type"]
    assert wrong_password.headers["www-authenticate"] == "Bearer"
    assert unknown_email.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("transform", [str.upper, str.title, lambda e: f"  {e} "])
async def test_login_email_compares_case_insensitively(api: Api, transform: Any) -> None:
    user = await register_user(api.client)
    response = await login(api, transform(user.email), user.password)
    assert response.status_code == 200, response.text


async def test_login_password_is_case_sensitive(api: Api) -> None:
    user = await register_user(api.client, password="Case Sensitive Password")
    response = await login(api, user.email, "case sensitive password")
    assert_problem(response, 401, "invalid_credentials")


async def test_login_unknown_field_is_422(api: Api) -> None:
    user = await register_user(api.client)
    response = await api.client.post(
        "/api/auth/login", json={"email": user.email, "password": user.password, "remember": True}
    )
    assert_validation_error(response, "remember")


@pytest.mark.parametrize("missing", ["email", "password"])
async def test_login_missing_field_is_422(api: Api, missing: str) -> None:
    body = {"email": unique_email(), "password": PASSWORD}
    del body[missing]
    response = await api.client.post("/api/auth/login", json=body)
    assert_validation_error(response, missing)


async def test_login_error_never_echoes_the_password(api: Api) -> None:
    user = await register_user(api.client)
    secret = "a very secret wrong password"
    response = await login(api, user.email, secret)
    assert response.status_code == 401
    assert secret not in response.text


async def test_login_issues_distinct_sessions_each_time(api: Api) -> None:
    user = await register_user(api.client)
    first = (await login(api, user.email, user.password)).json()
    second = (await login(api, user.email, user.password)).json()
    assert first["access_token"] != second["access_token"]
    assert first["refresh_token"] != second["refresh_token"]


COMPOSED_U = "\u00fc"  # ü as one code point (NFC)
DECOMPOSED_U = "u\u0308"  # u followed by a combining diaeresis


@pytest.mark.parametrize(
    ("registered", "logged_in"),
    [(COMPOSED_U, DECOMPOSED_U), (DECOMPOSED_U, COMPOSED_U), (DECOMPOSED_U, DECOMPOSED_U)],
)
async def test_login_email_compares_by_nfkc_form(api: Api, registered: str, logged_in: str) -> None:
    local = f"j{{}}rgen-{uuid.uuid4().hex[:8]}"
    user = await register_user(api.client, email=local.format(registered) + "@example.com")
    body = {"email": local.format(logged_in) + "@example.com", "password": user.password}
    response = await api.client.post("/api/auth/login", json=body)
    assert response.status_code == 200, response.text


async def test_registering_the_decomposed_form_of_a_taken_email_is_409(api: Api) -> None:
    local = f"m{{}}ller-{uuid.uuid4().hex[:8]}@example.com"
    await register_user(api.client, email=local.format(COMPOSED_U))
    body = {"name": "Twin", "email": local.format(DECOMPOSED_U), "password": "x" * 16}
    response = await api.client.post("/api/auth/register", json=body)
    assert response.status_code == 409
    assert response.json()["code"] == "email_taken"


async def test_a_lockout_counts_both_forms_of_one_email(api: Api) -> None:
    local = f"g{{}}nter-{uuid.uuid4().hex[:8]}@example.com"
    user = await register_user(api.client, email=local.format(COMPOSED_U))
    for i in range(10):
        form = DECOMPOSED_U if i % 2 else COMPOSED_U
        wrong = {"email": local.format(form), "password": "definitely wrong password"}
        assert (await api.client.post("/api/auth/login", json=wrong)).status_code == 401
    right = {"email": user.email, "password": user.password}
    assert (await api.client.post("/api/auth/login", json=right)).status_code == 429
