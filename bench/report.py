"""The benchmark's figures and how they are compared and printed (no I/O here)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

KASSA = "kassa"
REFERENCE = "reference"
PARTS = ("create", "process", "status", "refund")
# The lifecycle: create + process every time, a status every 2nd, a refund every 4th.
WEIGHTS = {"create": 1.0, "process": 1.0, "status": 0.5, "refund": 0.25}


@dataclass
class LoadResult:
    target: str
    clients: int
    seconds: float
    requests: int
    lifecycles: int
    refunds: int
    statuses: int
    errors: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    notes: list[str] = field(default_factory=list)
    machine_cpu_ms: float = 0.0  # all processes' CPU per lifecycle (load generator included)
    server_cpu_ms: float = 0.0  # the server's worker processes' CPU per lifecycle

    @property
    def lifecycles_per_s(self) -> float:
        return self.lifecycles / self.seconds if self.seconds else 0.0

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def app(self) -> str:
        """Whose server answered: the target's first word ("kassa ×2" → "kassa")."""
        return self.target.split(" ")[0]


def compare(results: Sequence[LoadResult], clients: Sequence[int]) -> dict[int, dict[str, Any]]:
    """kassa against the reference at each client count, over the interleaved runs: the
    ratio of mean lifecycles/s, each round's own ratio (its kassa run over the reference run
    that followed it), and server CPU per lifecycle."""
    out: dict[int, dict[str, Any]] = {}
    for count in clients:
        ours = [r for r in results if r.app == KASSA and r.clients == count]
        theirs = [r for r in results if r.app == REFERENCE and r.clients == count]
        if not ours or not theirs:
            continue
        kassa_rate = statistics.mean(r.lifecycles_per_s for r in ours)
        reference_rate = statistics.mean(r.lifecycles_per_s for r in theirs)
        kassa_cpu = statistics.mean(r.server_cpu_ms for r in ours)
        reference_cpu = statistics.mean(r.server_cpu_ms for r in theirs)
        out[count] = {
            "kassa_lifecycles_per_s": round(kassa_rate, 1),
            "reference_lifecycles_per_s": round(reference_rate, 1),
            "kassa/reference": round(kassa_rate / reference_rate, 3) if reference_rate else 0.0,
            "per_round": [
                round(a.lifecycles_per_s / b.lifecycles_per_s, 3)
                for a, b in zip(ours, theirs, strict=False)
                if b.lifecycles_per_s
            ],
            "kassa_server_cpu_ms": round(kassa_cpu, 2),
            "reference_server_cpu_ms": round(reference_cpu, 2),
            "cpu kassa/reference": round(kassa_cpu / reference_cpu, 2) if reference_cpu else 0.0,
            "kassa_p99_ms": round(max(r.p99_ms for r in ours), 1),
            "reference_p99_ms": round(max(r.p99_ms for r in theirs), 1),
            "errors": sum(r.errors for r in ours) + sum(r.errors for r in theirs),
        }
    return out


def kassa_maximum(results: Sequence[LoadResult]) -> float:
    """kassa's own measured maximum: its best lifecycles/s in any closed-loop run."""
    return max((r.lifecycles_per_s for r in results if r.app == KASSA), default=0.0)


def open_loop_rates(maximum: float, shares: Sequence[float] = (0.25, 0.5, 0.75)) -> list[float]:
    return [round(maximum * share, 1) for share in shares]


def per_lifecycle(per_request: dict[str, dict[str, float]], key: str) -> float:
    return sum(weight * per_request[part][key] for part, weight in WEIGHTS.items())


# --- printing -------------------------------------------------------------------------------


def load_table(results: Sequence[LoadResult]) -> list[str]:
    lines = [
        "| target | clients | lifecycles/s | requests/s | p50 ms | p99 ms | p99.9 ms | errors "
        "| CPU ms/lifecycle: server, machine |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        rps = f"{r.requests_per_s:.0f}" if r.requests else "–"
        server = f"{r.server_cpu_ms:.1f}" if r.server_cpu_ms else "–"
        lines.append(
            f"| {r.target} | {r.clients} | {r.lifecycles_per_s:.1f} | {rps} | {r.p50_ms:.1f} | "
            f"{r.p99_ms:.1f} | {r.p999_ms:.1f} | {r.errors} | "
            f"{server}, {r.machine_cpu_ms:.1f} |"
        )
    return lines


def comparison_lines(comparison: dict[int, dict[str, Any]]) -> list[str]:
    lines = []
    for count, c in comparison.items():
        rounds = ", ".join(f"{x:.2f}" for x in c["per_round"])
        lines.append(
            f"{count} clients: kassa {c['kassa_lifecycles_per_s']:.1f} vs reference "
            f"{c['reference_lifecycles_per_s']:.1f} lifecycles/s → kassa/reference = "
            f"{c['kassa/reference']:.2f} (rounds: {rounds}); server CPU ms/lifecycle "
            f"{c['kassa_server_cpu_ms']:.1f} vs {c['reference_server_cpu_ms']:.1f} "
            f"(× {c['cpu kassa/reference']:.1f}); p99 {c['kassa_p99_ms']:.0f} vs "
            f"{c['reference_p99_ms']:.0f} ms; errors {c['errors']}"
        )
    return lines


def round_trip_table(probes: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """Per endpoint and app: database round trips, statements, Redis calls (medians)."""
    apps = list(probes)
    header = "| endpoint | " + " | ".join(
        f"{app}: round trips, statements, Redis calls" for app in apps
    )
    lines = [header + " |", "|---|" + "---:|" * len(apps)]

    def cell(counts: dict[str, float]) -> str:
        return f"{counts['round_trips']:g}, {counts['statements']:g}, {counts['redis_calls']:g}"

    for part in PARTS:
        lines.append(f"| {part} | " + " | ".join(cell(probes[a][part]) for a in apps) + " |")
    totals = []
    for app in apps:
        values = {k: per_lifecycle(probes[app], k) for k in ("round_trips", "statements")}
        redis = per_lifecycle(probes[app], "redis_calls")
        totals.append(f"{values['round_trips']:.2f}, {values['statements']:.2f}, {redis:.2f}")
    lines.append("| per lifecycle | " + " | ".join(totals) + " |")
    return lines


def open_loop_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "| target | share of kassa's max | lifecycles/s due | completed | errors "
        "| p50 ms | p99 ms | p99.9 ms | max ms | generator late ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['target']} | {row.get('share', 0):.0%} | {row['rate']:.1f} | "
            f"{row['completed']}/{row['due']} | {row['errors']} | {row['p50_ms']:.1f} | "
            f"{row['p99_ms']:.1f} | {row['p999_ms']:.1f} | {row['max_ms']:.1f} | "
            f"{row['late_ms']:.1f} |"
        )
    return lines
