"""The OpenAPI document kassa serves at /openapi.json, shaped for client generators.

Routes declare their operation id, tag and domain problems (`problem_responses(404, 409)`);
`install_openapi` then adds what every operation shares, so no route can forget it: the
problems of the edge (400 for a body, 401 behind a bearer token, 413, 422, 429, 431, 500,
503), one `Problem` component that every error response references, the RateLimit-* and
X-Request-ID headers, the Idempotency-Key parameter on every POST under /api/payments, the
payment-method discriminator, `servers` and the licence. Describing only: nothing here
changes how a request is handled.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from fastapi import FastAPI

from kassa.auditlog.service import ACTIONS
from kassa.auth.service import SCOPES
from kassa.errors import PROBLEM_JSON
from kassa.events.schemas import EVENT_TYPES
from kassa.payments.states import PaymentStatus
from kassa.vault.cards import CardBrand

Document = dict[str, Any]

# Every `code` a problem document of kassa can carry, with the status it comes with.
# tests/test_openapi.py fails when a code raised anywhere in src/ is missing here.
PROBLEM_CODES: Final[Mapping[str, int]] = {
    "bad_request": 400,
    "malformed_json": 400,
    "json_too_deep": 400,
    "duplicate_key": 400,
    "unauthorized": 401,
    "invalid_credentials": 401,
    "invalid_refresh_token": 401,
    "forbidden": 403,
    "insufficient_scope": 403,
    "cors_preflight_refused": 403,
    "not_found": 404,
    "payment_not_found": 404,
    "event_not_found": 404,
    "webhook_not_found": 404,
    "api_key_not_found": 404,
    "method_not_allowed": 405,
    "not_acceptable": 406,
    "invalid_state": 409,
    "email_taken": 409,
    "idempotency_key_in_use": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "validation_error": 422,
    "amount_exceeds_refundable": 422,
    "amount_exceeds_capturable": 422,
    "invalid_idempotency_key": 422,
    "idempotency_key_reused": 422,
    "webhook_url_refused": 422,
    "webhook_limit_reached": 422,
    "invalid_mode": 422,
    "rate_limited": 429,
    "too_many_attempts": 429,
    "headers_too_large": 431,
    "internal_error": 500,
    "service_unavailable": 503,
    "http_error": 500,
}

_DESCRIPTIONS: Final[Mapping[int, str]] = {
    400: (
        "Malformed JSON body: not JSON, nested deeper than 32 levels, or an object that"
        " repeats a key (`errors` names its path)"
    ),
    401: "Missing, invalid or expired bearer token or API key, or a revoked API key",
    403: (
        "Not allowed with these credentials: an API key where a login token is needed"
        " (`forbidden`), or a key without the scope the operation needs (`insufficient_scope`)"
    ),
    404: "No such object (or not yours)",
    409: "Conflict with the object's current state, or its Idempotency-Key is in use",
    413: "Request body too large",
    422: (
        "Validation error: the fields at fault are listed under `errors` (among them unknown"
        " or repeated query parameters, control characters in any text, and card numbers in"
        " free text)"
    ),
    429: "Too many requests; retry after Retry-After seconds",
    431: "Request headers too large",
    500: "Internal error (logged; never details)",
    503: "Briefly unavailable (the database is out of reach); retry after Retry-After seconds",
}

PROBLEM_REF: Final = {"$ref": "#/components/schemas/Problem"}
API_KEY_SCHEME: Final = "ApiKey"
IDEMPOTENT_PREFIX: Final = "/api/payments"
_ALWAYS: Final = (413, 422, 429, 431, 500, 503)


def _codes_of(status: int) -> list[str]:
    return [code for code, s in PROBLEM_CODES.items() if s == status]


def problem_response(status: int, codes: Sequence[str] | None = None) -> dict[str, Any]:
    """A problem response for `status`; `codes` narrows the codes its description lists to
    those the operation can give (every code of the status by default)."""
    listed = ", ".join(f"`{c}`" for c in (codes if codes is not None else _codes_of(status)))
    description = _DESCRIPTIONS.get(status, "Error")
    return {
        "description": f"{description}. Codes: {listed}." if listed else description,
        "content": {PROBLEM_JSON: {"schema": dict(PROBLEM_REF)}},
    }


def problem_responses(
    *statuses: int, codes: Mapping[int, Sequence[str]] | None = None
) -> dict[int | str, dict[str, Any]]:
    """A route's problem responses, for its decorator's `responses=`; `codes` names, per
    status, the codes this route gives when they are fewer than all of that status."""
    return {status: problem_response(status, (codes or {}).get(status)) for status in statuses}


def _header(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "schema": schema}


_INT = {"type": "integer", "minimum": 0}
HEADERS: Final[Mapping[str, dict[str, Any]]] = {
    "RateLimit-Limit": _header("Requests allowed in the current window", _INT),
    "RateLimit-Remaining": _header("Requests left in the current window", _INT),
    "RateLimit-Reset": _header("Seconds until the window resets", _INT),
    "X-Request-ID": _header(
        "The request's id: the client's X-Request-ID if valid, a generated one otherwise",
        {"type": "string", "maxLength": 128},
    ),
    "Retry-After": _header("Seconds to wait before retrying", _INT),
    "WWW-Authenticate": _header("The scheme to authenticate with", {"type": "string"}),
    "Idempotent-Replayed": _header(
        "`true` when this is the kept answer to an earlier request with the same Idempotency-Key",
        {"type": "string", "enum": ["true"]},
    ),
}

PARAMETERS: Final[Mapping[str, dict[str, Any]]] = {
    "IdempotencyKey": {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": (
            "Makes a retry safe: the same key with the same request answers the first "
            "response again (with `Idempotent-Replayed: true`) and does nothing twice. "
            "1–255 printable ASCII characters, scoped to the caller, kept at least 24 hours. "
            "Use a fresh key (a UUID) for each new request."
        ),
        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[ -~]+$"},
    },
    "KassaMode": {
        "name": "Kassa-Mode",
        "in": "header",
        "required": False,
        "description": (
            "The mode a login token acts in: `test` (the default) or `live`. An API key acts "
            "in its own mode; naming the other one is refused (422 `invalid_mode`). Objects "
            "of one mode are invisible to a caller acting in the other."
        ),
        "schema": {"$ref": "#/components/schemas/Mode"},
    },
    "XRequestID": {
        "name": "X-Request-ID",
        "in": "header",
        "required": False,
        "description": "Your id for this request, echoed back and logged (else one is made)",
        "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._-]{1,128}$"},
    },
}

SCHEMAS: Final[Mapping[str, dict[str, Any]]] = {
    "ProblemCode": {
        "title": "ProblemCode",
        "type": "string",
        "description": "A stable, machine-readable problem code",
        "enum": sorted(PROBLEM_CODES),
    },
    "ProblemFieldError": {
        "title": "ProblemFieldError",
        "type": "object",
        "required": ["field", "message"],
        "properties": {
            "field": {"type": "string", "description": "Dotted path of the field at fault"},
            "message": {"type": "string"},
        },
    },
    "Problem": {
        "title": "Problem",
        "type": "object",
        "description": "An RFC 9457 problem document",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {"type": "string", "format": "uri"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "code": {"$ref": "#/components/schemas/ProblemCode"},
            "instance": {"type": "string"},
            "errors": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/ProblemFieldError"},
            },
        },
    },
    # A payment's `details` (a free-form dict in the model): what create kept of its input.
    "CardDetailsOut": {
        "title": "CardDetailsOut",
        "type": "object",
        "required": ["brand", "last4", "exp_month", "exp_year", "holder_name"],
        "properties": {
            "brand": {"type": "string", "enum": [b.value for b in CardBrand]},
            "last4": {"type": "string", "pattern": "^[0-9]{4}$"},
            "exp_month": {"type": "integer", "minimum": 1, "maximum": 12},
            "exp_year": {"type": "integer"},
            "holder_name": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
    },
    "WalletDetailsOut": {
        "title": "WalletDetailsOut",
        "type": "object",
        "required": ["wallet"],
        "properties": {"wallet": {"type": "string", "enum": ["apple_pay", "google_pay", "paypal"]}},
    },
    # The body of POST /api/payments: which model applies is told by `payment_method`.
    "CreatePaymentRequest": {
        "title": "CreatePaymentRequest",
        "oneOf": [
            {"$ref": "#/components/schemas/CardPaymentRequest"},
            {"$ref": "#/components/schemas/WalletPaymentRequest"},
        ],
        "discriminator": {
            "propertyName": "payment_method",
            "mapping": {
                "credit_card": "#/components/schemas/CardPaymentRequest",
                "debit_card": "#/components/schemas/CardPaymentRequest",
                "digital_wallet": "#/components/schemas/WalletPaymentRequest",
            },
        },
    },
}

TAGS: Final = [
    {"name": "auth", "description": "Accounts, login tokens and sessions"},
    {"name": "keys", "description": "Secret API keys (sk_test_…, sk_live_…), with a login token"},
    {"name": "payments", "description": "Payments by card or wallet, and their processing"},
    {"name": "refunds", "description": "Refunds of completed payments"},
    {"name": "transactions", "description": "Charges and refunds, newest first"},
    {"name": "events", "description": "What happened to payments and refunds"},
    {"name": "webhooks", "description": "Endpoints that receive events, signed"},
    {
        "name": "audit",
        "description": "Who did what in the account (append-only): logins, keys, refunds, …",
    },
]
# String enums that several schemas and query parameters share, by their values: each becomes
# one named component, so a generated client has one PaymentStatus, not one per field.
NAMED_ENUMS: Final[Mapping[str, tuple[str, ...]]] = {
    "PaymentStatus": tuple(s.value for s in PaymentStatus),
    "PaymentMethod": ("credit_card", "debit_card", "digital_wallet"),
    "CardBrand": tuple(b.value for b in CardBrand),
    "WalletName": ("apple_pay", "google_pay", "paypal"),
    "TransactionType": ("charge", "refund"),
    # A refund's and a transaction's status (a charge's is its payment's outcome).
    "TransactionStatus": ("pending", "succeeded", "failed"),
    "EventType": EVENT_TYPES,
    "WebhookStatus": ("enabled", "disabled"),
    "DeliveryStatus": ("succeeded", "failed"),
    "AuditAction": ACTIONS,
    "Mode": ("test", "live"),
    "ApiKeyScope": SCOPES,
}
LICENSE: Final = {"name": "MIT", "identifier": "MIT"}
SERVERS: Final = [{"url": "/", "description": "This kassa server"}]
_METHODS: Final = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
_REQUEST_BODY_SCHEMAS: Final = {("post", "/api/payments"): "CreatePaymentRequest"}


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _body_schema_by_name(operation: dict[str, Any], name: str | None) -> None:
    """A request body as a named component: the payment union by its name, an optional
    body (`anyOf[X, null]`) as X itself with `required: false`."""
    body = operation.get("requestBody")
    if not body:
        return
    media = body.get("content", {}).get("application/json")
    if media is None:
        return
    if name is not None:
        media["schema"] = _ref("schemas", name)
        return
    schema = media["schema"]
    refs = [s for s in schema.get("anyOf", []) if "$ref" in s]
    if len(refs) == 1 and {"type": "null"} in schema["anyOf"]:
        media["schema"] = refs[0]


def _media_examples(schemas: dict[str, Any], media: dict[str, Any]) -> None:
    """The body's examples where Swagger UI reads them ("Try it out" sends the first): those
    of its schema, or one per member of a union."""
    name = media.get("schema", {}).get("$ref", "").rpartition("/")[2]
    schema = schemas.get(name, {})
    members = [m["$ref"].rpartition("/")[2] for m in schema.get("oneOf", []) if "$ref" in m]
    examples: dict[str, Any] = {}
    for member in members or [name]:
        for index, value in enumerate(schemas.get(member, {}).get("examples", [])):
            key = member if index == 0 else f"{member}{index + 1}"
            examples[key] = {"summary": member, "value": value}
    if examples:
        media["examples"] = examples


def _add_headers(status: str, response: dict[str, Any], idempotent: bool, api: bool) -> None:
    headers: dict[str, Any] = response.setdefault("headers", {})
    names = ["X-Request-ID"]
    if api:
        names += ["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"]
    if status in {"429", "503"}:
        names.append("Retry-After")
    if status == "401":
        names.append("WWW-Authenticate")
    if idempotent and (status.startswith("2") or status in {"404", "409", "422"}):
        names.append("Idempotent-Replayed")
    for name in names:
        headers.setdefault(name, _ref("headers", name))


def _takes_keys(operation: dict[str, Any]) -> bool:
    return any(API_KEY_SCHEME in requirement for requirement in operation.get("security", []))


def _scoped(path: str, operation: dict[str, Any]) -> bool:
    """Whether a key's scopes apply: every operation that takes keys, but the profile."""
    return _takes_keys(operation) and not path.startswith("/api/auth/")


def _operation_statuses(path: str, operation: dict[str, Any]) -> list[int]:
    statuses = list(_ALWAYS)
    if "requestBody" in operation:
        statuses.append(400)
    if operation.get("security"):
        statuses.append(401)
    if re.search(r"\{[^}]+\}", path):
        statuses.append(404)
    return statuses


def _name_free_form_objects(schemas: dict[str, Any]) -> None:
    """The models keep `details` and an event's `object` as dicts; the document names what
    they hold."""
    payment = schemas.get("PaymentOut", {}).get("properties", {})
    if "details" in payment:
        payment["details"] = {
            "description": payment["details"].get("description", ""),
            "oneOf": [_ref("schemas", "CardDetailsOut"), _ref("schemas", "WalletDetailsOut")],
        }
    # One Metadata: what a payment returns is what its create accepted.
    for name, schema in list(schemas.items()):
        prop = schema.get("properties", {}).get("metadata")
        if prop is None or name == "Metadata":
            continue
        members = prop.get("anyOf", [prop])
        objects = [m for m in members if m.get("type") == "object"]
        if len(objects) != 1:
            continue
        if "maxProperties" in objects[0]:
            schemas["Metadata"] = {
                "title": "Metadata",
                "description": "Up to 20 string keys (1–40 characters) to string values",
                **{k: v for k, v in objects[0].items() if k != "title"},
            }
        named = [_ref("schemas", "Metadata") if m is objects[0] else m for m in members]
        schema["properties"]["metadata"] = (
            {"anyOf": named} if "anyOf" in prop else _ref("schemas", "Metadata")
        )
    data = schemas.get("EventData", {}).get("properties", {})
    if "object" in data:
        data["object"] = {
            "description": data["object"].get("description", ""),
            "oneOf": [_ref("schemas", "PaymentOut"), _ref("schemas", "RefundOut")],
        }


def _name_enums(node: Any, by_values: Mapping[frozenset[str], str]) -> Any:
    """`node` with every inline string enum of NAMED_ENUMS replaced by a reference."""
    if isinstance(node, list):
        return [_name_enums(item, by_values) for item in node]
    if not isinstance(node, dict):
        return node
    values = node.get("enum")
    if node.get("type") == "string" and isinstance(values, list):
        name = by_values.get(frozenset(values))
        if name is not None:
            kept = {k: node[k] for k in ("description", "default") if k in node}
            return {"$ref": f"#/components/schemas/{name}", **kept}
    return {key: _name_enums(value, by_values) for key, value in node.items()}


def customise(document: Document) -> Document:
    """FastAPI's document with what every operation shares added (see the module doc)."""
    doc = copy.deepcopy(document)
    doc["info"]["license"] = dict(LICENSE)
    doc["servers"] = copy.deepcopy(SERVERS)
    doc["tags"] = copy.deepcopy(TAGS)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.update(copy.deepcopy(dict(SCHEMAS)))
    components["headers"] = copy.deepcopy(dict(HEADERS))
    components.setdefault("parameters", {}).update(copy.deepcopy(dict(PARAMETERS)))
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            api = path.startswith("/api/")
            idempotent = method == "post" and path.startswith(IDEMPOTENT_PREFIX)
            _body_schema_by_name(operation, _REQUEST_BODY_SCHEMAS.get((method, path)))
            for media in operation.get("requestBody", {}).get("content", {}).values():
                _media_examples(schemas, media)
            parameters: list[dict[str, Any]] = operation.setdefault("parameters", [])
            if idempotent:
                parameters.append(_ref("parameters", "IdempotencyKey"))
            if _takes_keys(operation):
                parameters.append(_ref("parameters", "KassaMode"))
            parameters.append(_ref("parameters", "XRequestID"))
            responses: dict[str, Any] = operation["responses"]
            for shared in _operation_statuses(path, operation) if api else ():
                responses.setdefault(str(shared), problem_response(shared))
            if api and _scoped(path, operation):
                responses.setdefault("403", problem_response(403, ["insufficient_scope"]))
            for status, response in responses.items():
                if status[0] in "45":
                    for media in response.get("content", {}).values():
                        media["schema"] = dict(PROBLEM_REF)
                _add_headers(status, response, idempotent, api)
            operation["responses"] = dict(sorted(responses.items()))
    _name_free_form_objects(schemas)
    by_values = {frozenset(values): name for name, values in NAMED_ENUMS.items()}
    doc["paths"] = _name_enums(doc["paths"], by_values)
    for name in list(schemas):
        schemas[name] = _name_enums(schemas[name], by_values)
    for name, values in NAMED_ENUMS.items():
        schemas[name] = {"title": name, "type": "string", "enum": list(values)}
    # FastAPI's default 422 models, unused once every 422 is a Problem.
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    components["schemas"] = dict(sorted(schemas.items()))
    return doc


def install_openapi(app: FastAPI) -> None:
    """Serve `customise(FastAPI's document)`, built once."""
    generate: Callable[[], Document] = app.openapi

    def openapi() -> Document:
        if app.openapi_schema is None:
            app.openapi_schema = customise(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def render(document: Document) -> str:
    """The document as committed in docs/openapi.json."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
