"""Text a column cannot hold, or should not: control characters and unpaired surrogates in
any string of any request body or query string, and card numbers in free text, are 422s that
name the field — on SQLite and PostgreSQL alike, before anything reaches the database. And a
database error that does happen logs no statement parameters.

The string fields are found in the OpenAPI document, so a field added later is covered
without touching this file (a new request model needs a valid body in `VALID_BODIES`)."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text as sql

from kassa.observability.logging import redact_text
from kassa.text import (
    CARD_NUMBER_MESSAGE,
    CONTROL_MESSAGE,
    FREE_TEXT_CONTROL_MESSAGE,
    SURROGATE_MESSAGE,
)
from tests.conftest import Api, User, card_details, register_user
from tests.test_observability import json_lines

PASSWORD = "correct horse battery staple"
OUR_MESSAGES = {CONTROL_MESSAGE, FREE_TEXT_CONTROL_MESSAGE, SURROGATE_MESSAGE}

# A valid body for every request model, by its name in the OpenAPI document, holding every
# optional text field (so each can be spoiled in turn).
VALID_BODIES: dict[str, dict[str, Any]] = {
    "RegisterRequest": {"name": "Ann Lee", "email": "ann@example.com", "password": PASSWORD},
    "LoginRequest": {"email": "ann@example.com", "password": PASSWORD},
    "RefreshRequest": {"refresh_token": "not-a-token"},
    "PasswordChangeRequest": {"current_password": PASSWORD, "new_password": PASSWORD + "!"},
    "CardPaymentRequest": {
        "amount": 1050,
        "currency": "USD",
        "payment_method": "credit_card",
        "details": card_details(holder_name="Ann Lee"),
        "description": "Order 1",
        "metadata": {"order": "1"},
    },
    "WalletPaymentRequest": {
        "amount": 1050,
        "currency": "USD",
        "payment_method": "digital_wallet",
        "details": {"wallet": "apple_pay", "token": "tok_ok"},
        "description": "Order 1",
        "metadata": {"order": "1"},
    },
    "ProcessPaymentRequest": {"payment_id": str(uuid.uuid4())},
    "RefundRequest": {"amount": 1, "reason": "customer asked"},
    "CreateWebhookRequest": {"url": "https://example.com/hooks", "events": ["*"]},
    "CreateKeyRequest": {"name": "Shop backend", "mode": "test", "scopes": ["read"]},
}

SPOILERS = {
    "nul": "a\x00b",
    "escape": "a\x1bb",
    "delete": "a\x7fb",
    "c1-control": "a\x85b",
    "lone-surrogate": "a\ud800b",
}


@dataclass(frozen=True)
class Slot:
    """One place in a body where a string goes."""

    model: str
    path: tuple[str | int, ...]  # a "*" segment is a key of an object, not a value
    field: str  # how the API names it in `errors`
    enum: bool  # the field only takes listed words: any 422 naming it will do

    def spoil(self, body: dict[str, Any], value: str) -> dict[str, Any]:
        spoiled = copy.deepcopy(body)
        *parents, last = self.path
        target: Any = spoiled
        for part in parents:
            target = target[part]
        if last == "*":  # a key: rename an existing key of this object
            first = next(iter(target))
            target[value] = target.pop(first)
        else:
            target[last] = value
        return spoiled


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _non_null(spec: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    schema = _resolve(spec, schema)
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        return [
            _resolve(spec, option)
            for option in options
            if _resolve(spec, option).get("type") != "null"
        ]
    return [schema]


def _slots(
    spec: dict[str, Any], model: str, schema: dict[str, Any], path: tuple[str | int, ...]
) -> Iterator[Slot]:
    field = ".".join(str(p) for p in path)
    for option in _non_null(spec, schema):
        kind = option.get("type")
        if kind == "string":
            yield Slot(model, path, field, "enum" in option or "const" in option)
        elif kind == "array":
            yield from _slots(spec, model, option["items"], (*path, 0))
        elif kind == "object" and "properties" in option:
            for name, sub in option["properties"].items():
                yield from _slots(spec, model, sub, (*path, name))
        elif kind == "object":
            if "propertyNames" in option:
                yield Slot(model, (*path, "*"), field, enum=False)
            values = option.get("additionalProperties")
            if isinstance(values, dict):
                yield from _slots(spec, model, values, (*path, "order"))


def request_slots(spec: dict[str, Any]) -> list[tuple[str, str, Slot]]:
    """(method, path, slot) for every string of every JSON request body in the document."""
    found = []
    for route, operations in spec["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" not in content:
                continue
            for model_schema in _non_null(spec, content["application/json"]["schema"]):
                model = model_schema["title"]
                for slot in _slots(spec, model, model_schema, ()):
                    found.append((method, route, slot))
    return found


def _concrete(route: str) -> str:
    return route.replace("{payment_id}", str(uuid.uuid4()))


def _fields(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "validation_error"
    return {error["field"]: error["message"] for error in body["errors"]}


@pytest.fixture
async def caller(api: Api) -> User:
    return await register_user(api.client)


async def test_every_string_of_every_body_refuses_control_characters_naming_the_field(
    api: Api, caller: User
) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    slots = request_slots(spec)
    models = {slot.model for _, _, slot in slots}
    assert models == VALID_BODIES.keys(), "a new request model needs a valid body above"
    assert len(slots) >= 25  # the walk found the strings, nested ones included
    for method, route, slot in slots:
        valid = VALID_BODIES[slot.model]
        for name, value in SPOILERS.items():
            response = await api.client.request(
                method,
                _concrete(route),
                content=json.dumps(slot.spoil(valid, value)),  # \ud800 escaped, as JSON allows
                headers={**caller.headers, "Content-Type": "application/json"},
            )
            label = f"{method} {route} {slot.field} {name}"
            fields = _fields(response)
            assert slot.field in fields, (label, fields)
            if not slot.enum:
                message = fields[slot.field].removeprefix("key: ")
                assert message in OUR_MESSAGES, (label, fields)
            assert value not in response.text, label  # the value is never echoed


@pytest.mark.parametrize("field", ["name", "email", "password"])
async def test_register_with_nul_is_a_422_and_creates_no_account(api: Api, field: str) -> None:
    email = f"nul-{uuid.uuid4().hex[:10]}@example.com"
    body = {"name": "Ann Lee", "email": email, "password": PASSWORD}
    body[field] = body[field].replace("@", "\x00@") if field == "email" else "evil\x00" + PASSWORD
    response = await api.client.post("/api/auth/register", json=body)
    assert _fields(response) == {field: CONTROL_MESSAGE}
    for attempt in (email, body["email"]):
        login = await api.client.post(
            "/api/auth/login", json={"email": attempt, "password": body["password"]}
        )
        assert login.status_code in {401, 422}, login.text


async def test_a_line_break_is_refused_in_one_line_fields_and_kept_in_prose(
    api: Api, caller: User
) -> None:
    prose = {
        **VALID_BODIES["CardPaymentRequest"],
        "description": "line one\nline two\r\n\tindented",
        "metadata": {"note": "a\nb"},
    }
    created = await api.client.post("/api/payments", json=prose, headers=caller.headers)
    assert created.status_code == 201, created.text
    assert created.json()["description"] == prose["description"]
    assert created.json()["metadata"] == {"note": "a\nb"}
    for path, body in [
        ("details.holder_name", {**prose, "details": card_details(holder_name="Ann\nLee")}),
        ("metadata", {**prose, "metadata": {"a\nb": "x"}}),
    ]:
        response = await api.client.post("/api/payments", json=body, headers=caller.headers)
        assert path in _fields(response)
    wallet = {
        **VALID_BODIES["WalletPaymentRequest"],
        "details": {"wallet": "paypal", "token": "t\n"},
    }
    response = await api.client.post("/api/payments", json=wallet, headers=caller.headers)
    assert _fields(response)["details.token"] == CONTROL_MESSAGE


# Query strings --------------------------------------------------------------------------


BAD_QUERIES = [
    ("cursor=%00", "cursor", CONTROL_MESSAGE),
    ("cursor=a%1Bb", "cursor", CONTROL_MESSAGE),
    ("type=charge%00", "type", CONTROL_MESSAGE),
    ("type=charge&type=refund", "type", "repeated query parameter"),
    ("limit=5&limit=5", "limit", "repeated query parameter"),
    ("status=failed&status=", "status", "repeated query parameter"),
    ("lim%00it=5", "query", "a parameter name must be printable text"),
    ("nope=1", "nope", "unknown query parameter"),
]


async def test_a_bad_query_string_is_a_422_naming_the_parameter(api: Api, caller: User) -> None:
    for query, field, message in BAD_QUERIES:
        response = await api.client.get(f"/api/transactions?{query}", headers=caller.headers)
        assert _fields(response) == {field: message}, query


async def test_every_list_refuses_a_repeated_parameter(api_factory: Callable[..., Any]) -> None:
    api: Api = await api_factory(webhook_allow_private=True)
    caller = await register_user(api.client)
    hook = await api.client.post(
        "/api/webhooks",
        json={"url": "http://127.0.0.1:9/hooks", "events": ["*"]},
        headers=caller.headers,
    )
    assert hook.status_code == 201, hook.text
    for path in (
        "/api/transactions",
        "/api/events",
        f"/api/webhooks/{hook.json()['id']}/deliveries",
    ):
        once = await api.client.get(f"{path}?limit=5", headers=caller.headers)
        assert once.status_code == 200, (path, once.text)
        twice = await api.client.get(f"{path}?limit=5&limit=6", headers=caller.headers)
        assert _fields(twice) == {"limit": "repeated query parameter"}, path


# Card numbers in free text --------------------------------------------------------------

CARD_TEXTS = [
    "4242424242424242",
    "card 4242 4242 4242 4242 please",
    "ref 4000-0566-5566-5556.",
    "amex 378282246310005",
    "diners 30569309025904 x",
    "pan:5555555555554444",
    "４２４２４２４２４２４２４２４２",  # fullwidth digits are still the number
]
FREE_TEXT_FIELDS: list[tuple[str, Callable[[str], dict[str, Any]], str]] = [
    ("description", lambda t: {"description": t}, "description"),
    ("metadata value", lambda t: {"metadata": {"note": t}}, "metadata.note"),
    ("metadata key", lambda t: {"metadata": {t: "x"}}, "metadata"),
    (
        "holder name",
        lambda t: {"details": card_details(holder_name=t)},
        "details.holder_name",
    ),
]


async def test_a_card_number_in_payment_free_text_is_refused(api: Api, caller: User) -> None:
    for name, spoil, field in FREE_TEXT_FIELDS:
        for text in CARD_TEXTS:
            body = {**VALID_BODIES["CardPaymentRequest"], **spoil(text)}
            response = await api.client.post("/api/payments", json=body, headers=caller.headers)
            fields = _fields(response)
            assert fields[field].removeprefix("key: ") == CARD_NUMBER_MESSAGE, (name, text)
            assert "4242" not in response.text


async def test_a_card_number_in_a_refund_reason_is_refused_and_refunds_nothing(
    api: Api, caller: User
) -> None:
    from tests.conftest import completed_payment

    payment = await completed_payment(api.client, caller)
    response = await api.client.post(
        f"/api/payments/{payment['id']}/refund",
        json={"reason": "refund card 4242 4242 4242 4242"},
        headers=caller.headers,
    )
    assert _fields(response) == {"reason": CARD_NUMBER_MESSAGE}
    status = await api.client.get(f"/api/payments/{payment['id']}/status", headers=caller.headers)
    assert status.json()["amount_refunded"] == 0
    assert status.json()["status"] == "completed"


KEPT_TEXTS = [
    "Order 4242424242424241",  # fails Luhn
    "Invoice 12345678901",  # 11 digits
    "ref 550e8400-e29b-41d4-a716-446655440000",  # a UUID is an id
    "phone +1 415 555 0100, qty 3",
    "2024-01-15 10:00",
    "12345678901234567890123",  # 23 digits: too long to be one card number
]


async def test_digits_that_are_not_a_card_number_are_kept(api: Api, caller: User) -> None:
    for text in KEPT_TEXTS:
        body = {**VALID_BODIES["CardPaymentRequest"], "description": text, "metadata": {"r": text}}
        response = await api.client.post("/api/payments", json=body, headers=caller.headers)
        assert response.status_code == 201, (text, response.text)
        assert response.json()["description"] == text
        assert response.json()["metadata"] == {"r": text}


# A database error logs no statement parameters -------------------------------------------


@pytest.fixture
def logged_api(
    api_factory: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> Iterator[Callable[[], Any]]:
    import io
    import logging

    async def build() -> Api:
        made: Api = await api_factory(log_level="INFO")
        capsys.readouterr()
        return made

    yield build
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.stream = io.StringIO()


async def test_a_database_error_logs_no_statement_parameters(
    logged_api: Callable[[], Any], capsys: pytest.CaptureFixture[str]
) -> None:
    api: Api = await logged_api()
    tag = uuid.uuid4().hex[:10]
    name = f"doomed-{tag}"
    email = f"doomed-{tag}@example.com"
    engine = api.container.db.engine
    # A trigger that fails the insert of this one user with a plain database error (not an
    # integrity error, which registration turns into 409): the statement carries the
    # name, the email and the password's hash.
    if engine.dialect.name == "postgresql":
        install = [
            f"""CREATE FUNCTION doom_{tag}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF NEW.name = '{name}' THEN RAISE EXCEPTION 'refused by the test'; END IF;
              RETURN NEW;
            END $$""",
            f"CREATE TRIGGER doom_{tag} BEFORE INSERT ON user_account "
            f"FOR EACH ROW EXECUTE FUNCTION doom_{tag}()",
        ]
        remove = [
            f"DROP TRIGGER doom_{tag} ON user_account",
            f"DROP FUNCTION doom_{tag}()",
        ]
    else:
        missing = f"no_such_table_{tag}"  # looked up only when the trigger fires
        install = [
            f"CREATE TRIGGER doom_{tag} BEFORE INSERT ON user_account "  # noqa: S608
            f"WHEN NEW.name = '{name}' BEGIN DELETE FROM {missing}; END"
        ]
        remove = [f"DROP TRIGGER doom_{tag}"]
    async with engine.begin() as conn:
        for statement in install:
            await conn.execute(sql(statement))
    try:
        response = await api.client.post(
            "/api/auth/register", json={"name": name, "email": email, "password": PASSWORD}
        )
    finally:
        async with engine.begin() as conn:
            for statement in remove:
                await conn.execute(sql(statement))
    assert response.status_code == 500
    out = capsys.readouterr().out
    errors = [line for line in json_lines(out) if line["event"] == "unhandled_error"]
    assert len(errors) == 1
    assert "user_account" in errors[0]["exception"]  # the statement's failure is there
    for secret in (name, email, "$argon2id$", PASSWORD):
        assert secret not in out
    assert "[parameters: (" not in out


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (
            "(DBAPIError) boom\n[SQL: INSERT INTO t VALUES ($1)]\n"
            "[parameters: ('Ann', 'ann@example.com', '$argon2id$v=19$x')]\n"
            "(Background on this error at: https://sqlalche.me/e/21/dbapi)",
            "(Background on this error at",
        ),
        ("invalid input for query argument $2: 'ann@example.com' (expected int)", "$2: "),
        ("DETAIL:  Key (email_key)=(ann@example.com) already exists.", "DETAIL: "),
        ("Key (email_key)=(ann@example.com) already exists.", "Key (email_key)=("),
        ("Failing row contains (1, Ann, ann@example.com, $argon2id$v=19$x).", "Failing row"),
    ],
)
def test_log_redaction_drops_what_a_database_error_carries_of_its_values(
    text: str, kept: str
) -> None:
    redacted = redact_text(text)
    assert kept in redacted
    assert "ann@example.com" not in redacted
    assert "$argon2id$" not in redacted
