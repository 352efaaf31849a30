"""The list queries on PostgreSQL use their indexes: a page is an index range read in the
index's order (no Sort, no Seq Scan on payment), however deep the cursor.

Honest seeding, no planner switches: one merchant with 30,000 payments (plus 5,000 of other
merchants, refunds and audit events, the seed of bench/listplan.py), ANALYZEd, then EXPLAIN
of the exact statements the repositories build. BENCHMARKS.md holds the same plans with
EXPLAIN ANALYZE for a million payments.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from bench.listplan import Query, explain, nodes, queries, seed
from kassa.db import Database, create_engine
from tests.conftest import migrated_postgres

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def seeded_url() -> Iterator[str]:
    with migrated_postgres() as url:
        yield url


@pytest.fixture(scope="module")
def plans(seeded_url: str) -> dict[str, Mapping[str, Any]]:
    async def make() -> dict[str, Mapping[str, Any]]:
        db = Database(create_engine(seeded_url, pool_size=1))
        try:
            merchant = await seed(db, payments=30_000, others=5_000, other_users=5)
            found: list[Query] = await queries(db, merchant)
            return {q.name: await explain(db, q.statement, q.params) for q in found}
        finally:
            await db.dispose()

    return asyncio.run(make())


def _kinds(plan: Mapping[str, Any]) -> list[str]:
    return [node["Node Type"] for node in nodes(plan)]


def _scans_of(plan: Mapping[str, Any], table: str) -> list[Mapping[str, Any]]:
    return [n for n in nodes(plan) if n.get("Relation Name") == table]


@pytest.mark.parametrize(
    ("name", "index"),
    [
        ("payments, first page", "ix_payment_list"),
        ("payments, a page 500,000 deep", "ix_payment_list"),
        ("payments, status=failed", "ix_payment_list_status"),
        ("payments, status=failed, 500,000 deep", "ix_payment_list_status"),
        ("refunds, first page", "ix_refund_list"),
        ("audit events, first page", "ix_audit_event_list"),
    ],
)
def test_a_page_is_an_index_range_in_order(
    plans: dict[str, Mapping[str, Any]], name: str, index: str
) -> None:
    plan = plans[name]
    kinds = _kinds(plan)
    assert "Sort" not in kinds, (name, kinds)
    assert "Incremental Sort" not in kinds, (name, kinds)
    assert "Seq Scan" not in kinds, (name, kinds)
    [scan] = [n for n in nodes(plan) if n.get("Index Name")]
    assert scan["Node Type"] == "Index Scan"
    assert scan["Index Name"] == index
    if "deep" in name:
        # The cursor bounds the index scan (a range), not a filter over every row before it.
        assert "ROW(created_at, id) <" in scan["Index Cond"]
        assert "Filter" not in scan


def test_a_metadata_lookup_reads_the_gin_index_not_the_table(
    plans: dict[str, Mapping[str, Any]],
) -> None:
    plan = plans["payments, metadata[order_id]=777777"]
    assert "Seq Scan" not in _kinds(plan)
    assert any(n.get("Index Name") == "ix_payment_metadata" for n in nodes(plan)), _kinds(plan)


@pytest.mark.parametrize(
    "name", ["payments, currency=JPY", "payments, created in an hour a day back"]
)
def test_other_filters_walk_an_index_of_the_users_payments(
    plans: dict[str, Mapping[str, Any]], name: str
) -> None:
    plan = plans[name]
    assert "Seq Scan" not in _kinds(plan), _kinds(plan)
    assert all(n["Node Type"] != "Seq Scan" for n in _scans_of(plan, "payment"))
    assert any(str(n.get("Index Name", "")).startswith("ix_payment") for n in nodes(plan))
