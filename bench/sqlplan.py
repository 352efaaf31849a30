"""The SQL kassa itself issues for one lifecycle, captured and turned into references.

kassa runs in this process (the same code `kassa serve` runs, an ASGI client instead of a
socket) with a listener on its engine that records every statement, its parameters and
every BEGIN/COMMIT/ROLLBACK. Two lifecycles are captured; a UUID or 32-hex token that
differs between them is a per-lifecycle value (payment id, event id, idempotency key, …)
and becomes a variable, everything else (the user, the session, timestamps, sealed bytes)
stays a constant. The plan renders as pgbench scripts and feeds the floor app, so both
references run exactly kassa's statements, in kassa's transactions.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import event

PARTS = ("create", "process", "status", "refund")
_TOKEN = re.compile(
    r"(?<![0-9a-f])(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32})(?![0-9a-f])"
)
_PLACEHOLDER = re.compile(r"\$(\d+)")
CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2035, "cvc": "123"}
PAYMENT = {"amount": 2500, "currency": "USD", "payment_method": "credit_card", "details": CARD}
REFUND = {"amount": 1000, "reason": "requested_by_customer"}


@dataclass
class Statement:
    """One round trip: SQL text with $n placeholders and its parameters, or a bare
    BEGIN/COMMIT/ROLLBACK (sql only)."""

    sql: str
    params: list[Any] | None = None  # executemany: a list of rows
    many: bool = False


@dataclass
class Capture:
    parts: dict[str, list[Statement]] = field(default_factory=dict)
    payment_id: str = ""


async def capture_lifecycles(
    database_url: str, count: int = 2, secrets: Mapping[str, str] | None = None
) -> list[Capture]:
    """Run `count` lifecycles (create, process, status, refund) through kassa in-process
    against `database_url` (already migrated) and return the statements of each part.

    `secrets` (KASSA_JWT_SECRET, KASSA_VAULT_KEYS) must be the served kassa's when it will
    use the same database: the card-fingerprint key the capture seals stays in it."""
    from kassa.app import create_app
    from kassa.container import build_container
    from kassa.settings import load_settings

    key = base64.urlsafe_b64encode(b"b" * 32).decode().rstrip("=")
    settings = load_settings(
        {
            "KASSA_DATABASE_URL": database_url,
            "KASSA_JWT_SECRET": "bench-capture-" + "x" * 32,
            "KASSA_VAULT_KEYS": f"bench:{key}",
            "KASSA_RATE_LIMIT": "1000000/minute",
            "KASSA_USER_RATE_LIMIT": "1000000/minute",
            "KASSA_LOG_LEVEL": "WARNING",
            **(secrets or {}),
        }
    )
    container = build_container(settings)
    app = create_app(settings, container)
    try:
        log: list[Statement] = []
        engine = container.db.engine.sync_engine

        @event.listens_for(engine, "before_cursor_execute")
        def _statement(_c: Any, _cur: Any, sql: str, params: Any, _ctx: Any, many: bool) -> None:
            rows = [list(row) for row in params] if many else list(params or ())
            log.append(Statement(sql, rows, many))

        def _transaction(connection: Any, verb: str) -> None:
            # kassa's pool is in autocommit (a statement alone sends no BEGIN at all); only its
            # transactions ask for an isolation level, and only they send BEGIN and COMMIT.
            level = connection.get_execution_options().get("isolation_level")
            if level is not None and level != "AUTOCOMMIT":
                log.append(Statement(verb))

        for verb in ("begin", "commit", "rollback"):
            event.listen(engine, verb, lambda c, verb=verb: _transaction(c, verb.upper()))

        captures: list[Capture] = []
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kassa") as client:
            email = f"capture-{uuid.uuid4().hex[:8]}@example.com"
            password = "capture password 1"
            await client.post(
                "/api/auth/register", json={"name": "c", "email": email, "password": password}
            )
            login = await client.post(
                "/api/auth/login", json={"email": email, "password": password}
            )
            auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
            for _ in range(count):
                capture = Capture()
                expected = {"create": 201, "process": 200, "status": 200, "refund": 201}
                payment_id = ""
                for part in PARTS:
                    log.clear()
                    headers = {**auth, "Idempotency-Key": str(uuid.uuid4())}
                    if part == "create":
                        response = await client.post("/api/payments", json=PAYMENT, headers=headers)
                        payment_id = capture.payment_id = response.json()["id"]
                    elif part == "process":
                        body = {"payment_id": payment_id}
                        response = await client.post(
                            "/api/payments/process", json=body, headers=headers
                        )
                    elif part == "status":
                        response = await client.get(
                            f"/api/payments/{payment_id}/status", headers=auth
                        )
                    else:
                        path = f"/api/payments/{payment_id}/refund"
                        response = await client.post(path, json=REFUND, headers=headers)
                    if response.status_code != expected[part]:
                        raise RuntimeError(f"capture: {part} answered {response.status_code}")
                    capture.parts[part] = list(log)
                captures.append(capture)
    finally:
        await container.aclose()
    return captures


# --- the plan: statements with variables ------------------------------------------------


@dataclass
class Plan:
    """Per part, statements whose parameters are JSON-able typed values; a string or bytes
    value may hold `{{vN}}` markers, a uuid value may be a bare variable."""

    parts: dict[str, list[dict[str, Any]]]
    variables: dict[str, str]  # name -> "uuid" | "hex"
    payment_var: str  # the variable holding the payment's id

    def to_json(self) -> str:
        data = {"parts": self.parts, "variables": self.variables, "payment_var": self.payment_var}
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        data = json.loads(text)
        return cls(
            parts=data["parts"], variables=data["variables"], payment_var=data["payment_var"]
        )

    def statement_count(self, part: str) -> int:
        return len(self.parts[part])


def _tokens(value: Any, out: set[str]) -> None:
    if isinstance(value, uuid.UUID):
        out.add(str(value))
    elif isinstance(value, str):
        out.update(_TOKEN.findall(value))
    elif isinstance(value, bytes):
        out.update(_TOKEN.findall(value.decode("utf-8", "replace")))
    elif isinstance(value, list | tuple):
        for item in value:
            _tokens(item, out)


def build_plan(first: Capture, second: Capture) -> Plan:
    """Variables are the tokens of the first lifecycle that the second does not share."""
    seen_first: set[str] = set()
    seen_second: set[str] = set()
    for part in PARTS:
        a, b = first.parts[part], second.parts[part]
        if [s.sql for s in a] != [s.sql for s in b]:
            raise RuntimeError(f"capture: the {part} statements differ between lifecycles")
        for statement in a:
            _tokens(statement.params, seen_first)
        for statement in b:
            _tokens(statement.params, seen_second)
    varying = seen_first - seen_second
    names: dict[str, str] = {}
    kinds: dict[str, str] = {}

    def name_of(token: str) -> str:
        if token not in names:
            names[token] = f"v{len(names) + 1}"
            kinds[names[token]] = "uuid" if "-" in token else "hex"
        return names[token]

    def template(text: str) -> str:
        return _TOKEN.sub(
            lambda m: "{{" + name_of(m.group(0)) + "}}" if m.group(0) in varying else m.group(0),
            text,
        )

    def encode(value: Any) -> Any:
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, uuid.UUID):
            text = str(value)
            return {"uuid": name_of(text)} if text in varying else {"uuid_const": text}
        if isinstance(value, datetime):
            return {"datetime": value.isoformat()}
        if isinstance(value, bytes):
            try:
                return {"bytes_text": template(value.decode())}
            except UnicodeDecodeError:
                return {"bytes_hex": value.hex()}
        if isinstance(value, str):
            return {"text": template(value)}
        raise TypeError(f"capture: cannot plan a {type(value).__name__} parameter")

    parts: dict[str, list[dict[str, Any]]] = {}
    for part in PARTS:
        rendered: list[dict[str, Any]] = []
        for statement in first.parts[part]:
            if statement.params is None:
                rendered.append({"sql": statement.sql})
            elif statement.many:
                rows = [[encode(v) for v in row] for row in statement.params]
                rendered.append({"sql": statement.sql, "rows": rows})
            else:
                rendered.append(
                    {"sql": statement.sql, "params": [encode(v) for v in statement.params]}
                )
        parts[part] = rendered
    return Plan(parts=parts, variables=kinds, payment_var=names[first.payment_id])


# --- rendering: Python values for asyncpg, SQL text for pgbench ---------------------------

_MARKER = re.compile(r"\{\{(v\d+)\}\}")


def python_value(value: Any, bound: dict[str, str]) -> Any:
    """A planned parameter as asyncpg takes it, with the variables in `bound`."""
    if not isinstance(value, dict):
        return value
    ((kind, raw),) = value.items()
    if kind == "uuid":
        return uuid.UUID(bound[raw])
    if kind == "uuid_const":
        return uuid.UUID(raw)
    if kind == "datetime":
        return datetime.fromisoformat(raw)
    if kind == "bytes_hex":
        return bytes.fromhex(raw)
    text = _MARKER.sub(lambda m: bound[m.group(1)], raw)
    return text.encode() if kind == "bytes_text" else text


def lifecycle_variables(plan: Plan, payment_id: str) -> dict[str, str]:
    """Every variable of one lifecycle, derived from its payment id, so a request that
    names only the payment finds the ids its earlier requests used."""
    bound: dict[str, str] = {}
    for name, kind in plan.variables.items():
        derived = uuid.uuid5(uuid.NAMESPACE_URL, f"{payment_id}/{name}")
        bound[name] = str(derived) if kind == "uuid" else derived.hex
    bound[plan.payment_var] = payment_id
    return bound


# pgbench takes a name to start with a letter, digit (older releases), underscore or any
# non-ASCII byte, as psql does.
_COLON_NAME = re.compile(r":(?=[A-Za-z0-9_]|[^\x00-\x7f])")


def _sql_literal(text: str) -> str:
    # pgbench's prepared mode reads any ":name" as a variable, even inside quotes
    # ("exp_month":12, 13:25:00, label:été), so such a colon ends one literal and the next
    # begins.
    quoted = "'" + text.replace("'", "''") + "'"
    if not _COLON_NAME.search(quoted):
        return quoted
    return "(" + _COLON_NAME.sub(":' || '", quoted) + ")"


def _pgbench_text(raw: str) -> str:
    # A variable outside quotes, so pgbench's prepared mode can bind it.
    pieces = _MARKER.split(raw)
    out: list[str] = []
    for index, piece in enumerate(pieces):
        if index % 2:
            out.append(f"CAST(:{piece} AS text)")
        elif piece:
            out.append(_sql_literal(piece))
    if not out:
        return "''"
    return "(" + " || ".join(out) + ")" if len(out) > 1 else out[0]


def pgbench_value(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    ((kind, raw),) = value.items()
    if kind == "uuid":
        return f":{raw}"
    if kind == "uuid_const":
        return _sql_literal(raw)
    if kind == "datetime":
        return _sql_literal(raw)
    if kind == "bytes_hex":
        return _sql_literal("\\x" + raw)
    if kind == "bytes_text":
        return f"convert_to({_pgbench_text(raw)}, 'UTF8')"
    return _pgbench_text(raw)


def _substitute(sql: str, params: list[Any]) -> str:
    return _PLACEHOLDER.sub(lambda m: pgbench_value(params[int(m.group(1)) - 1]), sql)


def pgbench_statement(statement: dict[str, Any]) -> str:
    sql = " ".join(statement["sql"].split())
    if "rows" in statement:
        # executemany of one INSERT: one multi-row VALUES, as asyncpg pipelines the rows.
        head, values = sql.split(" VALUES ", 1)
        depth, end = 0, 0
        for index, char in enumerate(values):
            depth += char == "("
            depth -= char == ")"
            if depth == 0:
                end = index + 1
                break
        group, tail = values[:end], values[end:]
        rows = ", ".join(_substitute(group, row) for row in statement["rows"])
        return f"{head} VALUES {rows}{tail};"
    if "params" in statement:
        return _substitute(sql, statement["params"]) + ";"
    return sql + ";"


def pgbench_script(plan: Plan, parts: list[str]) -> str:
    """One pgbench transaction = one lifecycle made of `parts`, after one query that draws
    its fresh ids (the only statement kassa does not issue)."""
    draws = ", ".join(
        f"gen_random_uuid()::text AS {name}"
        if kind == "uuid"
        else f"replace(gen_random_uuid()::text, '-', '') AS {name}"
        for name, kind in plan.variables.items()
    )
    lines = [f"SELECT {draws} \\gset"]
    for part in parts:
        lines.extend(pgbench_statement(s) for s in plan.parts[part])
    return "\n".join(lines) + "\n"


async def run_part(connection: Any, plan: Plan, part: str, bound: dict[str, str]) -> None:
    """Issue one part's statements on an asyncpg connection, in kassa's transactions."""
    transaction = None
    for statement in plan.parts[part]:
        sql = statement["sql"]
        if "params" not in statement and "rows" not in statement:
            if sql == "BEGIN":
                transaction = connection.transaction()
                await transaction.start()
            elif transaction is not None:
                await (transaction.commit() if sql == "COMMIT" else transaction.rollback())
                transaction = None
            continue
        if "rows" in statement:
            rows = [[python_value(v, bound) for v in row] for row in statement["rows"]]
            await connection.executemany(sql, rows)
        else:
            await connection.fetch(sql, *[python_value(v, bound) for v in statement["params"]])


def capture_plan(database_url: str, secrets: Mapping[str, str] | None = None) -> Plan:
    # The first lifecycle warms caches (the fingerprint key, prepared statements); plan from
    # the two after it, which issue what every later lifecycle issues.
    _warm, first, second = asyncio.run(capture_lifecycles(database_url, count=3, secrets=secrets))
    return build_plan(first, second)
