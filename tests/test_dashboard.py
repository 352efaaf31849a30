"""The Grafana dashboard (deploy/observability/grafana/dashboards/) and its renderer
(scripts/render_dashboard.py): the renderer's pure parts behave like Grafana, and every panel
query is valid PromQL over metrics and labels kassa really exports."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import IN_CI, Api, completed_payment, register_user

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD_PATH = ROOT / "deploy/observability/grafana/dashboards/kassa-overview.json"
PROMTOOL_TIMEOUT_SECONDS = 60


def _load_renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "render_dashboard", ROOT / "scripts/render_dashboard.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


render = _load_renderer()


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD_PATH.read_text(encoding="utf-8"))
    return loaded


def _substituted_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title and refId, expression) for every target, as the renderer queries it."""
    variables = {
        **render.dashboard_variables(dashboard),
        **render.builtin_variables(step=2.0, rate_interval=15.0, range_seconds=3600.0),
    }
    return [
        (f"{panel.title} {target.ref_id}", render.substitute_variables(target.expr, variables))
        for panel in render.load_panels(dashboard)
        for target in panel.targets
    ]


# Grafana's variables and legends ---------------------------------------------------------


def test_rate_interval_follows_grafanas_rule() -> None:
    assert render.grafana_rate_interval(2.0, 1.0) == 4.0  # four scrapes at least
    assert render.grafana_rate_interval(15.0, 15.0) == 60.0
    assert render.grafana_rate_interval(60.0, 15.0) == 75.0  # one step plus one scrape


def test_durations_format_and_parse_as_prometheus_writes_them() -> None:
    assert [render.format_duration(s) for s in (4, 15, 60, 90, 3600, 0.5)] == [
        "4s",
        "15s",
        "1m",
        "90s",
        "1h",
        "500ms",
    ]
    assert render.parse_duration("1m30s") == 90.0
    assert render.parse_duration("500ms") == 0.5
    with pytest.raises(ValueError, match="not a duration"):
        render.parse_duration("15 seconds")


def test_variables_are_substituted_in_every_grafana_syntax() -> None:
    variables = {
        **render.builtin_variables(step=2.0, rate_interval=15.0, range_seconds=90.0),
        "job": "kassa",
    }
    expr = (
        'rate(x{job="$job"}[$__rate_interval]) + rate(y[${__rate_interval}])'
        " + rate(z[[[__interval]]]) + $__interval_ms + $__range_s"
    )
    assert render.substitute_variables(expr, variables) == (
        'rate(x{job="kassa"}[15s]) + rate(y[15s]) + rate(z[2s]) + 2000 + 90'
    )


def test_unknown_variables_stay_as_written() -> None:
    expr = 'label_replace(up, "a", "$1", "job", "(.*)") + $nope'
    assert render.substitute_variables(expr, {"job": "kassa"}) == expr


def test_templating_variables_use_their_current_value() -> None:
    dashboard = {
        "templating": {
            "list": [
                {"name": "job", "current": {"value": "kassa"}},
                {"name": "route", "current": {"value": ["/a", "/b"]}},
                {"name": "status", "current": {"value": "$__all"}, "allValue": "2..|5.."},
            ]
        }
    }
    assert render.dashboard_variables(dashboard) == {
        "job": "kassa",
        "route": "(/a|/b)",
        "status": "2..|5..",
    }


def test_legend_format_names_series_by_their_labels() -> None:
    labels = {"operation": "charge", "outcome": "succeeded"}
    assert render.legend_name("{{operation}} {{ outcome }}", labels, "q") == "charge succeeded"
    assert render.legend_name("limited {{limit}}", {"limit": "user"}, "q") == "limited user"
    # A label the series lacks stays as written (Grafana 10+).
    assert render.legend_name("{{route}}", {}, "q") == "{{route}}"


def test_series_without_legend_format_are_named_like_grafana_names_them() -> None:
    assert render.legend_name("", {"route": "/x", "status": "200"}, "q") == (
        '{route="/x", status="200"}'
    )
    assert render.legend_name("__auto", {"__name__": "up", "job": "kassa"}, "q") == (
        'up{job="kassa"}'
    )
    assert render.legend_name(None, {}, "sum(rate(x[1m]))") == "sum(rate(x[1m]))"


# Layout ----------------------------------------------------------------------------------


def test_grid_positions_map_to_grafanas_24_column_grid() -> None:
    width = 1568
    left = render.grid_box({"x": 0, "y": 0, "w": 12, "h": 8}, width)
    right = render.grid_box({"x": 12, "y": 0, "w": 12, "h": 8}, width)
    below = render.grid_box({"x": 0, "y": 8, "w": 24, "h": 4}, width)
    assert (left.left, left.top, left.height) == (0, 0, 8 * 30 + 7 * 8)
    assert right.left == left.width + 8  # one margin between neighbours
    assert right.left + right.width == width  # together they fill the row
    assert (below.top, below.width, below.height) == (8 * 38, width, 4 * 30 + 3 * 8)


def test_grid_height_reaches_the_lowest_panel() -> None:
    positions = [{"x": 0, "y": 0, "w": 12, "h": 8}, {"x": 12, "y": 24, "w": 12, "h": 8}]
    assert render.grid_height(positions) == 32 * 38 - 8
    assert render.grid_height([]) == 0


def test_grid_positions_outside_the_grid_are_refused() -> None:
    with pytest.raises(ValueError, match="24-column"):
        render.grid_box({"x": 12, "y": 0, "w": 13, "h": 8}, 1568)


def test_units_scale_like_grafana() -> None:
    assert render.unit_axis("s", 0.2) == render.Axis(1000.0, " ms")
    assert render.unit_axis("s", 2.5) == render.Axis(1.0, " s")
    assert render.unit_axis("s", 0.0002) == render.Axis(1e6, " µs")
    assert render.unit_axis("percentunit", 0.3) == render.Axis(100.0, "%")
    assert render.unit_axis("reqps", 40) == render.Axis(1.0, " req/s")
    assert render.unit_axis("short", 40).tickformat == "~s"


def test_samples_are_aligned_on_the_step_grid_with_gaps() -> None:
    grid = render.step_grid(100.0, 108.0, 2.0)
    assert grid == [100.0, 102.0, 104.0, 106.0, 108.0]
    samples = [[100, "1"], [102, "NaN"], [106, "+Inf"], [108, "2.5"]]
    assert render.align(grid, samples) == [1.0, None, None, None, 2.5]


def _panel(panel_id: int, title: str, grid_pos: dict[str, int], unit: str) -> Any:
    return render.Panel(
        id=panel_id,
        type="timeseries",
        title=title,
        grid_pos=grid_pos,
        unit=unit,
        line_width=1.0,
        fill_opacity=0.0,
        targets=(),
    )


def test_the_page_is_self_contained_and_draws_every_panel() -> None:
    dashboard = {"title": "t", "tags": ["kassa"], "panels": []}
    drawn = _panel(1, "Drawn <panel>", {"x": 0, "y": 0, "w": 12, "h": 8}, "reqps")
    empty = _panel(2, "Empty", {"x": 12, "y": 0, "w": 12, "h": 8}, "s")
    fetched = [
        render.PanelData(drawn, [render.Series("/api/payments", [1.0, None, 3.0])]),
        render.PanelData(empty, []),
    ]
    page, height = render.render_html(dashboard, fetched, 100.0, 104.0, 2.0)
    assert height == render.TOPBAR_HEIGHT + 296 + 2 * render.PAGE_PADDING
    assert "Drawn &lt;panel&gt;" in page
    assert "/api/payments" in page
    assert "No data" in page
    assert "Plotly.newPlot" in page
    # Nothing is fetched: no external scripts, styles, images or fonts.
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)
    assert "@import" not in page
    assert "url(http" not in page


# The dashboard JSON against kassa --------------------------------------------------------


def test_every_panel_is_drawable_and_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    panels = render.load_panels(dashboard)
    assert panels
    render.check_supported(panels)
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        render.grid_box(panel.grid_pos, 1568)  # inside the 24 columns
        p = panel.grid_pos
        for x in range(p["x"], p["x"] + p["w"]):
            for y in range(p["y"], p["y"] + p["h"]):
                assert (x, y) not in cells, f"{panel.title!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel.title


def test_every_variable_in_the_dashboard_is_one_the_renderer_knows(
    dashboard: dict[str, Any],
) -> None:
    for where, expr in _substituted_exprs(dashboard):
        assert "$" not in expr, f"{where}: {expr}"
        assert "[[" not in expr, f"{where}: {expr}"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found:
        return found
    if IN_CI:
        pytest.fail("promtool is required in CI (apt-get install prometheus)", pytrace=False)
    pytest.skip("promtool is not installed (apt-get install prometheus)")


def _check_rules(promtool: str, path: Path, exprs: list[str]) -> subprocess.CompletedProcess[str]:
    rules = [{"record": f"dashboard:check:{i}", "expr": e} for i, e in enumerate(exprs)]
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    return subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT_SECONDS,
        check=False,
    )


def test_every_panel_query_is_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """promtool parses each query as a recording rule's expression (it has no bare PromQL
    checker); a broken expression must fail the same way, or this proves nothing."""
    promtool = _promtool()
    exprs = [expr for _, expr in _substituted_exprs(dashboard)]
    checked = _check_rules(promtool, tmp_path / "dashboard.rules.json", exprs)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(exprs)} rules found" in checked.stdout
    broken = _check_rules(promtool, tmp_path / "broken.rules.json", ["sum(rate(x[5m])"])
    assert broken.returncode != 0


_PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "and",
    "or",
    "unless",
    "inf",
    "nan",
}


@dataclass(frozen=True)
class References:
    metrics: dict[str, set[str]]  # metric name -> label names its matchers use
    grouping: set[str]  # label names in by (...) and without (...)


def referenced_metrics(expr: str) -> References:
    """The series selectors of a PromQL expression, found well enough for the dashboard's
    queries: identifiers that are not functions, keywords, label names or numbers."""
    grouping: set[str] = set()
    for labels in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        grouping |= {label.strip() for label in labels.split(",") if label.strip()}
    text = re.sub(r"\b(?:by|without)\s*\([^)]*\)", " ", expr)
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)  # no names inside strings
    text = re.sub(r"\[[^\]]*\]", "[]", text)  # nor in range durations
    selector = re.compile(r"(?<![A-Za-z0-9_:.])([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^}]*\})?\s*(\()?")
    metrics: dict[str, set[str]] = {}
    for name, matchers, call in selector.findall(text):
        if call or name.lower() in _PROMQL_WORDS:
            continue
        used = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", matchers)
        metrics.setdefault(name, set()).update(used)
    return References(metrics, grouping)


def test_metric_references_are_found_in_a_query() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, route) (rate(http_request_duration_seconds_bucket"
        '{job="kassa", route!="/metrics"}[15s]))) / sum(up{job=~"k.*"}) * 1e3 > bool 2'
    )
    assert referenced_metrics(expr) == References(
        {"http_request_duration_seconds_bucket": {"job", "route"}, "up": {"job"}},
        {"le", "route"},
    )


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """Metric names do not depend on the database: the embedded default is enough."""
    return sqlite_url


async def test_every_panel_query_uses_metrics_and_labels_kassa_exports(
    dashboard: dict[str, Any], api_factory: Callable[..., Any]
) -> None:
    # Exercise every counter the dashboard draws: requests, a processed payment, a processor
    # call, a refund, and a request the per-user limit refuses.
    api: Api = await api_factory(user_rate_limit="4/minute")
    user = await register_user(api.client)
    payment = await completed_payment(api.client, user)
    refunded = await api.client.post(f"/api/payments/{payment['id']}/refund", headers=user.headers)
    assert refunded.status_code == 201, refunded.text
    statuses = [
        (await api.client.get("/api/transactions", headers=user.headers)).status_code
        for _ in range(3)
    ]
    assert 429 in statuses
    metrics = await api.client.get("/metrics")
    exported: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(metrics.text):
        for sample in family.samples:
            exported.setdefault(sample.name, set()).update(sample.labels)
    # Prometheus adds these to every scraped series.
    target_labels = {"job", "instance"}
    for where, expr in _substituted_exprs(dashboard):
        found = referenced_metrics(expr)
        assert found.metrics, f"{where}: no metric found in {expr}"
        for name, labels in found.metrics.items():
            assert name in exported, f"{where}: kassa exports no {name}"
            missing = labels - exported[name] - target_labels
            assert not missing, f"{where}: {name} has no label(s) {sorted(missing)}"
        available = set().union(*(exported[name] for name in found.metrics)) | target_labels
        missing = found.grouping - available
        assert not missing, f"{where}: grouped by label(s) no metric has: {sorted(missing)}"
