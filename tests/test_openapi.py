"""The OpenAPI document: valid for two linters, committed as served, and shaped so a client
generated from it reads well (ids, tags, one Problem, named schemas, headers, examples)."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import prance
import pytest
from fastapi import APIRouter, FastAPI
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from kassa.app import create_app
from kassa.openapi import PROBLEM_CODES, install_openapi, render
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "docs" / "openapi.json"
SRC = ROOT / "src" / "kassa"
METHODS = {"get", "post", "put", "patch", "delete"}
PROBLEM = "#/components/schemas/Problem"
CODE = r"[a-z][a-z0-9_]*"
TRANSPORT_PROBLEMS = {"413", "422", "429", "431", "500", "503"}


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("openapi")
    app = create_app(make_settings(f"sqlite+aiosqlite:///{workdir}/kassa.db"))
    served: dict[str, Any] = app.openapi()
    return served


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


# Two linters ---------------------------------------------------------------------------


def test_document_passes_openapi_spec_validator(document: dict[str, Any]) -> None:
    validate(document)


def test_document_passes_prance_strict_resolution(document: dict[str, Any]) -> None:
    parser = prance.ResolvingParser(
        spec_string=json.dumps(document), backend="openapi-spec-validator", strict=True
    )
    assert parser.specification["paths"].keys() == document["paths"].keys()


def test_committed_document_is_the_served_one(document: dict[str, Any]) -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render(document), (
        "docs/openapi.json is stale: run `make openapi`"
    )


# Operations ------------------------------------------------------------------------------


def test_contract_operations_have_their_domain_ids(document: dict[str, Any]) -> None:
    ids = {(method, path): op["operationId"] for method, path, op in operations(document)}
    assert ids[("post", "/api/auth/register")] == "auth_register"
    assert ids[("post", "/api/auth/login")] == "auth_login"
    assert ids[("post", "/api/payments")] == "payments_create"
    assert ids[("post", "/api/payments/process")] == "payments_process"
    assert ids[("get", "/api/payments/{payment_id}")] == "payments_get"
    assert ids[("get", "/api/payments/{payment_id}/status")] == "payments_status"
    assert ids[("post", "/api/payments/{payment_id}/refund")] == "payments_refund"
    assert ids[("post", "/api/payments/{payment_id}/cancel")] == "payments_cancel"
    assert ids[("get", "/api/transactions")] == "transactions_list"
    assert ids[("post", "/api/webhooks")] == "webhooks_create"
    assert ids[("get", "/api/events")] == "events_list"


def operation_faults(document: dict[str, Any]) -> list[str]:
    """What a generated client would miss: an operation without a short domain id, without
    one described tag, or without its problem responses."""
    faults: list[str] = []
    described = {tag["name"] for tag in document.get("tags", [])}
    seen: set[str] = set()
    for method, path, operation in operations(document):
        where = f"{method.upper()} {path}"
        op_id, tags = operation.get("operationId", ""), operation.get("tags") or []
        if not re.fullmatch(r"[a-z]+_[a-z_]{2,28}", op_id) or op_id in seen:
            faults.append(f"{where}: operation id {op_id!r} is not short, snake_case, unique")
        seen.add(op_id)
        if len(tags) != 1 or tags[0] not in described:
            faults.append(f"{where}: tags {tags} are not one tag of kassa.openapi.TAGS")
        # The id's domain is its tag's (`payments_refund` lives beside the payment it refunds).
        elif op_id.split("_")[0] not in {tags[0], "payments"}:
            faults.append(f"{where}: operation id {op_id!r} does not start with its domain")
        expected = set(TRANSPORT_PROBLEMS)
        if operation.get("security"):
            expected.add("401")
        if "{" in path:
            expected.add("404")
        if "requestBody" in operation:
            expected.add("400")
        if missing := sorted(expected - set(operation["responses"])):
            faults.append(f"{where}: problem responses {missing} are not declared")
    return faults


def test_every_operation_has_a_short_domain_id_a_tag_and_its_problems(
    document: dict[str, Any],
) -> None:
    assert operation_faults(document) == []


def test_an_operation_without_id_tag_or_problems_is_a_fault() -> None:
    app = FastAPI()
    install_openapi(app)
    router = APIRouter(prefix="/api/things", tags=["things"])

    @router.get("/{thing_id}")
    async def get_thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    @app.get("/v2/payments", operation_id="payments_list", tags=["payments"])
    async def outside_api() -> list[str]:
        return []

    app.include_router(router)
    faults = operation_faults(app.openapi())
    assert any("GET /api/things/{thing_id}: operation id" in f for f in faults), faults
    assert any("GET /api/things/{thing_id}: tags ['things']" in f for f in faults), faults
    assert any("GET /v2/payments: problem responses" in f for f in faults), faults


def test_every_error_response_is_the_shared_problem(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if status[0] in "45":
                assert response["content"] == {
                    "application/problem+json": {"schema": {"$ref": PROBLEM}}
                }, (method, path, status)


def test_problem_has_the_rfc_9457_fields_and_a_code_enum(document: dict[str, Any]) -> None:
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code"}
    code = resolve(document, problem["properties"]["code"])
    assert set(code["enum"]) == set(PROBLEM_CODES)
    field = resolve(document, problem["properties"]["errors"]["items"])
    assert set(field["properties"]) == {"field", "message"}


def _is_status(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int and node.value >= 400


def codes_in(source: str) -> dict[str, int]:
    """The problem codes written in Python source, with their line: `code=` arguments,
    `self.code =` assignments, `("code", <4xx/5xx>, …)` calls (KassaError and its
    subclasses), and the values of status → code tables."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(source)):
        strings: list[ast.AST] = []
        if isinstance(node, ast.Call):
            strings += [k.value for k in node.keywords if k.arg == "code"]
            if len(node.args) >= 2 and _is_status(node.args[1]):
                strings.append(node.args[0])
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Attribute) and t.attr == "code" for t in node.targets
        ):
            strings.append(node.value)
        elif isinstance(node, ast.Dict) and node.keys and all(map(_is_status, node.keys)):
            strings += node.values
        for string in strings:
            if isinstance(string, ast.Constant) and re.fullmatch(CODE, str(string.value)):
                found[string.value] = string.lineno
    return found


def _raised_codes() -> dict[str, str]:
    found: dict[str, str] = {}
    for file in SRC.rglob("*.py"):
        if file.name != "openapi.py":
            for code, line in codes_in(file.read_text(encoding="utf-8")).items():
                found[code] = f"{file.relative_to(ROOT)}:{line}"
    return found


def test_the_code_scan_finds_each_way_a_code_is_raised() -> None:
    source = """
class DuplicateKey(KassaError):
    def __init__(self) -> None:
        super().__init__("duplicate_key", 400, "A key is repeated.")

class Gone(NotFound):
    def __init__(self) -> None:
        super().__init__("thing")
        self.code = "thing_not_found"

def refuse() -> Response:
    return problem_response(status=400, code="control_character", detail="No.")

_TABLE = {418: "teapot"}
detail = {404: "No such resource."}
"""
    found = set(codes_in(source))
    assert found == {"duplicate_key", "thing_not_found", "control_character", "teapot"}
    assert found - set(PROBLEM_CODES)  # so the test below would name them


def test_problem_code_enum_lists_every_code_raised_in_src() -> None:
    raised = _raised_codes()
    assert {"email_taken", "payment_not_found", "rate_limited", "service_unavailable"} <= set(
        raised
    )
    missing = {code: where for code, where in raised.items() if code not in PROBLEM_CODES}
    assert not missing, f"add these to kassa.openapi.PROBLEM_CODES: {missing}"


def test_problem_code_enum_lists_only_codes_found_in_src() -> None:
    text = "\n".join(
        f.read_text(encoding="utf-8") for f in SRC.rglob("*.py") if f.name != "openapi.py"
    )
    unknown = [code for code in PROBLEM_CODES if f'"{code}"' not in text]
    assert not unknown


# Bodies, headers, enums ---------------------------------------------------------------------


def test_every_body_is_a_named_component(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        bodies = [("request", operation.get("requestBody", {}).get("content", {}))]
        bodies += [(s, r.get("content", {})) for s, r in operation["responses"].items()]
        for where, content in bodies:
            for media in content.values():
                assert set(media["schema"]) == {"$ref"}, (method, path, where)
    names = set(document["components"]["schemas"])
    assert not [n for n in names if "Response" in n or n.startswith(("Body_", "HTTP"))]


def test_no_component_holds_an_anonymous_object(document: dict[str, Any]) -> None:
    def walk(node: Any, where: str) -> Iterator[str]:
        if isinstance(node, dict):
            free_form = node.get("additionalProperties") in (None, True, {})
            if node.get("type") == "object" and "properties" not in node and free_form:
                yield where
            for key, value in node.items():
                yield from walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield from walk(value, f"{where}[{index}]")

    # A payment's metadata is a string map by design; nothing else is free-form.
    loose = list(walk(document["components"]["schemas"], "schemas"))
    assert loose == [], loose


def test_idempotency_key_is_a_header_of_every_post_under_payments(
    document: dict[str, Any],
) -> None:
    posts = [(p, op) for m, p, op in operations(document) if m == "post"]
    for path, operation in posts:
        params = [resolve(document, p) for p in operation.get("parameters", [])]
        keys = [p for p in params if p["name"] == "Idempotency-Key"]
        if path.startswith("/api/payments"):
            assert len(keys) == 1, path
            assert keys[0]["in"] == "header"
            assert keys[0]["required"] is False
            for status, response in operation["responses"].items():
                if status.startswith("2"):
                    assert "Idempotent-Replayed" in response["headers"], (path, status)
        else:
            assert keys == [], path
    assert any(p == "/api/payments/{payment_id}/refund" for p, _ in posts)


def test_every_api_response_declares_rate_limit_and_request_id_headers(
    document: dict[str, Any],
) -> None:
    wanted = {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "X-Request-ID"}
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            headers = set(response.get("headers", {}))
            assert wanted <= headers, (method, path, status)
            if status in {"429", "503"}:
                assert "Retry-After" in headers, (method, path, status)
            if status == "401":
                assert "WWW-Authenticate" in headers, (method, path, status)


def test_every_status_field_is_an_enum(document: dict[str, Any]) -> None:
    for name, schema in document["components"]["schemas"].items():
        if name == "Problem":  # its `type` is a URI, its `status` the HTTP status
            continue
        for prop, value in schema.get("properties", {}).items():
            if prop in {"status", "type", "payment_method", "brand", "wallet"}:
                value = resolve(document, value)
                assert "enum" in value or "const" in value or "$ref" in value, (name, prop)
    payment = document["components"]["schemas"]["PaymentOut"]["properties"]
    assert "partially_refunded" in resolve(document, payment["status"])["enum"]


def test_shared_enums_are_one_named_component(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert schemas["PaymentOut"]["properties"]["status"] == {
        "$ref": "#/components/schemas/PaymentStatus"
    }
    assert schemas["PaymentStatusOut"]["properties"]["status"] == {
        "$ref": "#/components/schemas/PaymentStatus"
    }
    listed = document["paths"]["/api/events"]["get"]["parameters"]
    type_param = next(p for p in listed if p.get("name") == "type")
    assert {"$ref": "#/components/schemas/EventType"} in type_param["schema"]["anyOf"]
    inline = json.dumps(document).count('"payment.partially_refunded"')
    assert inline == 1  # only in the EventType component


def test_payment_method_union_has_a_discriminator(document: dict[str, Any]) -> None:
    body = document["paths"]["/api/payments"]["post"]["requestBody"]["content"]
    union = resolve(document, body["application/json"]["schema"])
    assert union["discriminator"]["propertyName"] == "payment_method"
    mapping = union["discriminator"]["mapping"]
    assert set(mapping) == {"credit_card", "debit_card", "digital_wallet"}
    for method, ref in mapping.items():
        member = resolve(document, {"$ref": ref})
        allowed = member["properties"]["payment_method"]
        assert method in allowed.get("enum", [allowed.get("const")]), method


def test_servers_and_licence(document: dict[str, Any]) -> None:
    assert document["servers"][0]["url"] == "/"
    assert document["info"]["license"]["identifier"] == "MIT"


def _validator(document: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Validator:
    root = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:kassa:openapi", root)
    return jsonschema.Draft202012Validator(
        {"$ref": "urn:kassa:openapi" + schema["$ref"]}, registry=registry
    )


def test_every_request_example_validates_against_its_schema(document: dict[str, Any]) -> None:
    checked = 0
    for method, path, operation in operations(document):
        for media in operation.get("requestBody", {}).get("content", {}).values():
            validator = _validator(document, media["schema"])
            for name, example in media.get("examples", {}).items():
                errors = list(validator.iter_errors(example["value"]))
                assert not errors, (method, path, name, errors[0].message)
                checked += 1
    assert checked >= 4  # both payment methods, process and refund


def test_a_wrong_payment_method_fails_the_union() -> None:
    """The check above can fail: the discriminated union refuses a card body tagged as a
    wallet."""
    workdir_doc = json.loads(COMMITTED.read_text(encoding="utf-8"))
    validator = _validator(workdir_doc, {"$ref": "#/components/schemas/CreatePaymentRequest"})
    body = workdir_doc["paths"]["/api/payments"]["post"]["requestBody"]["content"]
    card = body["application/json"]["examples"]["CardPaymentRequest"]["value"]
    assert not list(validator.iter_errors(card))
    assert list(validator.iter_errors({**card, "payment_method": "digital_wallet"}))
