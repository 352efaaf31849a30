"""bench/report.py: how kassa is compared with the reference from interleaved runs."""

from __future__ import annotations

import pytest

from bench.report import (
    LoadResult,
    compare,
    kassa_maximum,
    open_loop_rates,
    per_lifecycle,
    round_trip_table,
)


def _run(target: str, clients: int, lifecycles_per_s: float, cpu: float = 0.0) -> LoadResult:
    return LoadResult(
        target=target,
        clients=clients,
        seconds=10.0,
        requests=0,
        lifecycles=round(lifecycles_per_s * 10),
        refunds=0,
        statuses=0,
        errors=0,
        p50_ms=1.0,
        p99_ms=2.0,
        p999_ms=3.0,
        max_ms=4.0,
        server_cpu_ms=cpu,
    )


def test_the_ratio_is_of_mean_rates_and_each_round_has_its_own() -> None:
    results = [
        _run("kassa ×2", 32, 100, cpu=20),
        _run("reference ×2", 32, 400, cpu=4),
        _run("kassa ×2", 32, 120, cpu=18),
        _run("reference ×2", 32, 400, cpu=4),
        _run("floor ×2", 32, 300),  # neither side of the ratio
        _run("pgbench kassa-sql", 32, 500),
    ]
    c = compare(results, [32, 64])[32]
    assert c["kassa/reference"] == pytest.approx(110 / 400)
    assert c["per_round"] == [0.25, 0.3]
    assert c["kassa_server_cpu_ms"] == 19
    assert c["cpu kassa/reference"] == pytest.approx(19 / 4, abs=0.01)


def test_a_client_count_without_both_apps_is_left_out() -> None:
    results = [_run("kassa ×2", 64, 90)]
    assert compare(results, [32, 64]) == {}


def test_kassa_maximum_is_its_best_closed_loop_rate_and_rates_are_shares_of_it() -> None:
    results = [_run("kassa ×2", 32, 93.0), _run("kassa ×2", 64, 96.0), _run("reference", 32, 430)]
    assert kassa_maximum(results) == 96.0
    assert open_loop_rates(96.0) == [24.0, 48.0, 72.0]


def test_per_lifecycle_weighs_status_every_second_and_refund_every_fourth() -> None:
    counts = {
        "create": {"round_trips": 8},
        "process": {"round_trips": 18},
        "status": {"round_trips": 2},
        "refund": {"round_trips": 21},
    }
    assert per_lifecycle(counts, "round_trips") == 8 + 18 + 1 + 5.25


def test_round_trip_table_has_a_row_per_endpoint_and_a_lifecycle_total() -> None:
    one = {"round_trips": 1.0, "statements": 1.0, "redis_calls": 1.0}
    probes = {"kassa": {p: one for p in ("create", "process", "status", "refund")}}
    lines = round_trip_table(probes)
    assert lines[2] == "| create | 1, 1, 1 |"
    assert lines[-1] == "| per lifecycle | 2.75, 2.75, 2.75 |"
