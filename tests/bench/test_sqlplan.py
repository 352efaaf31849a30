"""bench/sqlplan.py: the captured plan renders as SQL pgbench runs as kassa ran it, and the
floor's asyncpg path issues the same statements.

The unit tests need no database. The PostgreSQL tests each create, migrate and drop a
database of their own (so they run under `pytest -n auto`); in CI an unreachable
PostgreSQL or a missing pgbench fails instead of skipping.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bench.sqlplan import (
    PARTS,
    Capture,
    Plan,
    Statement,
    _sql_literal,
    build_plan,
    capture_plan,
    lifecycle_variables,
    pgbench_script,
    pgbench_statement,
    pgbench_value,
    run_part,
)
from kassa.migrate import upgrade
from tests.conftest import IN_CI, _create_pg_database, _drop_pg_database, _pg_reachable

# A quoted SQL literal ('' is a quote inside it) and what pgbench would read as a variable.
_QUOTED = re.compile(r"'((?:[^']|'')*)'")
_PGBENCH_VARIABLE = re.compile(r":[A-Za-z0-9_\u0080-\U0010ffff]")


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message + " (CI requires it)", pytrace=False)
    pytest.skip(message)


# --- quoting ------------------------------------------------------------------------------


def test_sql_literal_doubles_single_quotes() -> None:
    assert _sql_literal("it's") == "'it''s'"


@pytest.mark.parametrize(
    "text",
    ['{"exp_month":12}', "2026-11-27T13:25:00+00:00", "merchant_payable:abc", "label:été"],
)
def test_sql_literal_never_leaves_a_pgbench_variable_inside_quotes(text: str) -> None:
    rendered = _sql_literal(text)
    literals = _QUOTED.findall(rendered)
    assert not [lit for lit in literals if _PGBENCH_VARIABLE.search(lit)], rendered
    assert "".join(lit.replace("''", "'") for lit in literals) == text


def test_text_markers_become_cast_variables_outside_quotes() -> None:
    rendered = pgbench_value({"text": 'id "{{v3}}" end'})
    assert rendered == "('id \"' || CAST(:v3 AS text) || '\" end')"


def test_a_text_of_one_marker_is_the_bare_cast() -> None:
    assert pgbench_value({"text": "{{v2}}"}) == "CAST(:v2 AS text)"


def test_bytes_hex_becomes_a_bytea_escape_literal() -> None:
    assert pgbench_value({"bytes_hex": "00ff"}) == "'\\x00ff'"


def test_bytes_text_is_converted_from_utf8_text() -> None:
    rendered = pgbench_value({"bytes_text": "k{{v1}}"})
    assert rendered == "convert_to(('k' || CAST(:v1 AS text)), 'UTF8')"


def test_none_becomes_null() -> None:
    assert pgbench_value(None) == "NULL"


def test_a_uuid_variable_is_a_bare_pgbench_variable() -> None:
    assert pgbench_value({"uuid": "v1"}) == ":v1"


# --- statements -----------------------------------------------------------------------------


def test_pgbench_statement_expands_an_executemany_insert_into_one_multi_row_values() -> None:
    statement = {
        "sql": "INSERT INTO t (a, b)\n VALUES ($1::UUID, $2::BIGINT) ON CONFLICT DO NOTHING",
        "rows": [[{"uuid": "v1"}, 5], [{"uuid": "v2"}, -5]],
    }
    assert pgbench_statement(statement) == (
        "INSERT INTO t (a, b) VALUES (:v1::UUID, 5::BIGINT), (:v2::UUID, -5::BIGINT)"
        " ON CONFLICT DO NOTHING;"
    )


def test_pgbench_statement_gives_placeholders_past_nine_their_own_parameter() -> None:
    params: list[Any] = list(range(1, 11))
    sql = "SELECT " + ", ".join(f"${n}" for n in range(1, 11))
    assert (
        pgbench_statement({"sql": sql, "params": params}) == "SELECT 1, 2, 3, 4, 5, 6, 7, 8, 9, 10;"
    )


# --- the plan -------------------------------------------------------------------------------

USER = "29e59c87-0c16-4204-9f1a-14dd66d56b26"
_PAYMENT_SQL = "INSERT INTO payment (id, user_id) VALUES ($1::UUID, $2::UUID)"
_CHARGE_SQL = "INSERT INTO simulator_charge (reference) VALUES ($1::VARCHAR)"


def _capture(charge_sql: str = _CHARGE_SQL) -> Capture:
    """One lifecycle as capture_lifecycles records it: a fresh payment id and charge reference,
    the shared user."""
    payment, reference = uuid.uuid4(), uuid.uuid4().hex
    statement = Statement(_PAYMENT_SQL, [payment, uuid.UUID(USER)])
    charge = Statement(charge_sql, [f"kassa_charge_{reference}"])
    parts = {part: [Statement("BEGIN"), Statement("COMMIT")] for part in PARTS}
    parts["create"] = [Statement("BEGIN"), statement, Statement("COMMIT")]
    parts["process"] = [Statement("BEGIN"), charge, Statement("COMMIT")]
    return Capture(parts=parts, payment_id=str(payment))


def test_build_plan_makes_a_token_that_differs_between_lifecycles_a_variable() -> None:
    plan = build_plan(_capture(), _capture())
    assert plan.parts["create"][1]["params"][0] == {"uuid": "v1"}
    assert plan.parts["process"][1]["params"] == [{"text": "kassa_charge_{{v2}}"}]
    assert plan.variables == {"v1": "uuid", "v2": "hex"}


def test_build_plan_keeps_a_token_both_lifecycles_share_constant() -> None:
    plan = build_plan(_capture(), _capture())
    assert plan.parts["create"][1]["params"][1] == {"uuid_const": USER}


def test_build_plan_raises_when_the_statement_texts_differ() -> None:
    other = _capture(charge_sql=_CHARGE_SQL + " ON CONFLICT DO NOTHING")
    with pytest.raises(RuntimeError, match="process statements differ"):
        build_plan(_capture(), other)


def test_build_plan_names_the_variable_holding_the_first_payment_id() -> None:
    plan = build_plan(_capture(), _capture())
    assert plan.payment_var == "v1"


def _plan_of_three_variables() -> Plan:
    return Plan(parts={}, variables={"v1": "uuid", "v2": "hex", "v3": "uuid"}, payment_var="v3")


def test_lifecycle_variables_are_the_same_for_the_same_payment() -> None:
    payment_id = str(uuid.uuid4())
    plan = _plan_of_three_variables()
    assert lifecycle_variables(plan, payment_id) == lifecycle_variables(plan, payment_id)


def test_lifecycle_variables_differ_between_payments() -> None:
    plan = _plan_of_three_variables()
    first = lifecycle_variables(plan, str(uuid.uuid4()))
    second = lifecycle_variables(plan, str(uuid.uuid4()))
    assert all(first[name] != second[name] for name in plan.variables)


def test_lifecycle_variables_bind_the_payment_variable_to_the_payment_id() -> None:
    payment_id = str(uuid.uuid4())
    bound = lifecycle_variables(_plan_of_three_variables(), payment_id)
    assert bound["v3"] == payment_id
    assert str(uuid.UUID(bound["v1"])) == bound["v1"]
    assert re.fullmatch(r"[0-9a-f]{32}", bound["v2"])


# --- against PostgreSQL ---------------------------------------------------------------------


@dataclass
class Captured:
    dsn: str  # libpq form, for asyncpg and pgbench
    plan: Plan


@pytest.fixture
def captured() -> Iterator[Captured]:
    """A database of this test's own, migrated, with kassa's plan captured on it."""
    if not _pg_reachable():
        _unavailable("PostgreSQL is not reachable")
    name, url = _create_pg_database()
    try:
        upgrade(url)
        plan = capture_plan(url)
        yield Captured(url.replace("postgresql+asyncpg://", "postgresql://", 1), plan)
    finally:
        _drop_pg_database(name)


_COUNTS = """
SELECT
  (SELECT count(*) FROM payment) AS payments,
  (SELECT count(*) FROM payment
    WHERE status = 'partially_refunded' AND amount_refunded = 1000) AS partially_refunded,
  (SELECT count(*) FROM refund WHERE status = 'succeeded') AS refunds,
  (SELECT count(DISTINCT posting_id) FROM ledger_entry WHERE kind = 'charge') AS charges,
  (SELECT count(DISTINCT posting_id) FROM ledger_entry WHERE kind = 'refund') AS refund_postings,
  (SELECT coalesce(sum(amount), 0) FROM ledger_entry) AS ledger_sum
"""


async def _counts(dsn: str) -> dict[str, int]:
    connection = await asyncpg.connect(dsn)
    try:
        return dict(await connection.fetchrow(_COUNTS))
    finally:
        await connection.close()


def _plus(before: dict[str, int], lifecycles: int) -> dict[str, int]:
    """The counts after `lifecycles` more full lifecycles: a 2500 payment, refunded 1000, its
    charge and refund postings; the ledger still sums to zero."""
    grows = {"payments", "partially_refunded", "refunds", "charges", "refund_postings"}
    return {key: value + lifecycles * (key in grows) for key, value in before.items()}


@pytest.mark.postgres
def test_capture_plans_all_four_parts_with_kassas_own_sql(captured: Captured) -> None:
    plan = captured.plan
    assert set(plan.parts) == set(PARTS)
    assert all(plan.parts[part] for part in PARTS)
    process = [statement["sql"] for statement in plan.parts["process"]]
    assert any("INSERT INTO ledger_entry" in sql for sql in process)
    assert any(sql.startswith("INSERT INTO simulator_charge") for sql in process)


@pytest.mark.postgres
def test_pgbench_runs_the_script_as_three_full_lifecycles(
    captured: Captured, tmp_path: Path
) -> None:
    if shutil.which("pgbench") is None:
        _unavailable("pgbench is not installed")
    script = tmp_path / "lifecycle.sql"
    script.write_text(pgbench_script(captured.plan, list(PARTS)))
    before = asyncio.run(_counts(captured.dsn))
    done = subprocess.run(
        ["pgbench", "-n", "-M", "prepared", "-t", "3", "-c", "1", "-f", str(script), captured.dsn],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "number of failed transactions: 0 " in done.stdout
    assert asyncio.run(_counts(captured.dsn)) == _plus(before, 3)


@pytest.mark.postgres
async def test_run_part_issues_one_lifecycle_on_an_asyncpg_connection(
    captured: Captured,
) -> None:
    payment_id = str(uuid.uuid4())
    bound = lifecycle_variables(captured.plan, payment_id)
    before = await _counts(captured.dsn)
    connection = await asyncpg.connect(captured.dsn)
    try:
        for part in PARTS:
            await run_part(connection, captured.plan, part, bound)
        row = await connection.fetchrow(
            "SELECT status, amount_refunded FROM payment WHERE id = $1", uuid.UUID(payment_id)
        )
    finally:
        await connection.close()
    assert dict(row) == {"status": "partially_refunded", "amount_refunded": 1000}
    assert await _counts(captured.dsn) == _plus(before, 1)


async def test_the_capture_records_every_statement_kassa_sends(postgres_url: str) -> None:
    """Every statement kassa sends (the statement of several writes with the session check
    and the Idempotency-Key's claim, the simulator's record) is in the capture, so the floor and
    pgbench run all of kassa's SQL."""
    from bench.sqlplan import capture_lifecycles

    (capture,) = await capture_lifecycles(postgres_url, count=1)
    create = [statement.sql for statement in capture.parts["create"]]
    made = create[-1]  # the payment, its event, the key, while the session is live
    assert made.startswith("WITH made_payment AS")
    assert [sql for sql in create if "auth_session" in sql] == [made]
    assert "INSERT INTO idempotency_record" in made
    process = " ".join(statement.sql for statement in capture.parts["process"])
    assert "INSERT INTO simulator_charge" in process
    (status,) = capture.parts["status"]  # the payment, and whether the session is live
    assert status.sql.startswith("SELECT payment.id")
    assert "auth_session" in status.sql
