#!/usr/bin/env python3
"""Render kassa's Grafana dashboard from real metrics, without Grafana.

Grafana does not run here, so this renders the dashboard JSON itself: it serves kassa, lets
the real Prometheus scrape it (with the repository's alert rules loaded) while it drives
realistic traffic over HTTP, runs every panel's queries through Prometheus's query API over
the load window, lays the panels out by their gridPos on a page with plotly.js inlined (the
page loads nothing from the network), and screenshots it with headless Chromium.

    .venv/bin/python scripts/render_dashboard.py [--duration 90] [--html page.html]

Exits non-zero when a panel query fails, when every panel comes back empty, or when a panel
uses something this renderer does not draw. Progress goes to stderr; the per-panel summary
to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import plotly.graph_objects as go  # type: ignore[import-untyped]
import plotly.offline  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy/observability/grafana/dashboards/kassa-overview.json"
ALERT_RULES = ROOT / "deploy/observability/alerts.rules.yml"
SCREENSHOT = ROOT / "docs/screenshots/dashboard.png"

# Grafana's dashboard grid: 24 columns, rows of 30 px with 8 px between cells.
GRID_COLUMNS = 24
GRID_CELL_HEIGHT = 30
GRID_MARGIN = 8
PAGE_WIDTH = 1600
PAGE_PADDING = 16
TOPBAR_HEIGHT = 48

# Grafana's classic palette, in the order it hands colours to series.
PALETTE = (
    "#7EB26D",
    "#EAB839",
    "#6ED0E0",
    "#EF843C",
    "#E24D42",
    "#1F78C1",
    "#BA43A9",
    "#705DA0",
    "#508642",
    "#CCA300",
    "#447EBC",
    "#C15C17",
)
TIMESERIES_TYPES = {"timeseries", "graph"}

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
BROWSER_TIMEOUT_SECONDS = 120.0
PROGRESS_EVERY_SECONDS = 5.0


class RenderError(Exception):
    """Something that must stop the run with a non-zero exit and one clear line."""


# Durations -------------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus/Grafana duration such as `15s`, `1m30s` or `500ms`."""
    text = text.strip()
    parts = list(_DURATION.finditer(text))
    if not parts or "".join(p.group(0) for p in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(p.group(1)) * _UNIT_SECONDS[p.group(2)] for p in parts)


def format_duration(seconds: float) -> str:
    """The shortest Prometheus duration for `seconds` (whole milliseconds)."""
    millis = round(seconds * 1000)
    if millis <= 0:
        raise ValueError("a duration must be positive")
    if millis % 1000:
        return f"{millis}ms"
    whole = millis // 1000
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def grafana_rate_interval(interval: float, scrape_interval: float) -> float:
    """Grafana's `$__rate_interval`: max($__interval + scrape interval, 4 x scrape interval),
    so that a rate window always holds at least four scrapes."""
    return max(interval + scrape_interval, 4 * scrape_interval)


# Grafana variables and legends -----------------------------------------------------------

_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")


def builtin_variables(*, step: float, rate_interval: float, range_seconds: float) -> dict[str, str]:
    """Grafana's global variables for a query with this step over this range."""
    return {
        "__interval": format_duration(step),
        "__interval_ms": str(round(step * 1000)),
        "__rate_interval": format_duration(rate_interval),
        "__range": format_duration(range_seconds),
        "__range_s": str(round(range_seconds)),
        "__range_ms": str(round(range_seconds * 1000)),
    }


def dashboard_variables(dashboard: Mapping[str, Any]) -> dict[str, str]:
    """The current value of each templating variable (multi-values as a regex alternation,
    as Grafana formats them for Prometheus)."""
    values: dict[str, str] = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        current = variable.get("current") or {}
        value = current.get("value", variable.get("query", ""))
        if isinstance(value, list):
            value = value[0] if len(value) == 1 else "(" + "|".join(map(str, value)) + ")"
        if value == "$__all":
            value = variable.get("allValue") or ".*"
        values[str(variable["name"])] = str(value)
    return values


def substitute_variables(expr: str, variables: Mapping[str, str]) -> str:
    """Replace `$name`, `${name}`, `${name:format}` and `[[name]]` with their values. Unknown
    names stay as written, as in Grafana (`$1` in label_replace is not a variable)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        return variables.get(name, match.group(0))

    return _VARIABLE.sub(value, expr)


def legend_name(legend_format: str | None, labels: Mapping[str, str], expr: str) -> str:
    """A series' name as Grafana shows it: the legendFormat with `{{label}}` replaced (a label
    the series lacks stays as written), or with no format the metric and its labels, or the
    query itself for a series without labels."""
    if legend_format and legend_format != "__auto":
        return re.sub(
            r"\{\{\s*(.+?)\s*\}\}",
            lambda m: labels.get(m.group(1), m.group(0)),
            legend_format,
        )
    name = labels.get("__name__", "")
    rest = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    if not rest:
        return name or expr
    return f"{name}{{{rest}}}"


# Layout ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    """A panel's place on the page in CSS pixels, relative to the grid's top left corner."""

    left: int
    top: int
    width: int
    height: int


def grid_box(grid_pos: Mapping[str, int], grid_width: int) -> Box:
    """Where Grafana draws a panel with this gridPos on a grid `grid_width` pixels wide."""
    x, y, w, h = (int(grid_pos[k]) for k in ("x", "y", "w", "h"))
    if not (0 <= x < GRID_COLUMNS and 0 < w <= GRID_COLUMNS - x and y >= 0 and h > 0):
        raise ValueError(f"gridPos out of the 24-column grid: {dict(grid_pos)}")
    column = (grid_width - (GRID_COLUMNS - 1) * GRID_MARGIN) / GRID_COLUMNS
    row = GRID_CELL_HEIGHT + GRID_MARGIN
    return Box(
        left=round(x * (column + GRID_MARGIN)),
        top=y * row,
        width=round(w * column + (w - 1) * GRID_MARGIN),
        height=h * GRID_CELL_HEIGHT + (h - 1) * GRID_MARGIN,
    )


def grid_height(grid_positions: Sequence[Mapping[str, int]]) -> int:
    """The grid's height in pixels: down to the bottom of its lowest panel."""
    rows = max((int(p["y"]) + int(p["h"]) for p in grid_positions), default=0)
    return max(0, rows * (GRID_CELL_HEIGHT + GRID_MARGIN) - GRID_MARGIN)


# The dashboard ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    ref_id: str
    expr: str
    legend_format: str | None


@dataclass(frozen=True)
class Panel:
    id: int
    type: str
    title: str
    grid_pos: Mapping[str, int]
    unit: str
    line_width: float
    fill_opacity: float
    targets: tuple[Target, ...]


def load_panels(dashboard: Mapping[str, Any]) -> list[Panel]:
    """Every panel on the dashboard, rows' own panels included, in the JSON's order."""
    panels: list[Panel] = []

    def add(raw: Mapping[str, Any]) -> None:
        defaults = raw.get("fieldConfig", {}).get("defaults", {})
        custom = defaults.get("custom", {})
        targets = tuple(
            Target(str(t.get("refId", "")), str(t["expr"]), t.get("legendFormat"))
            for t in raw.get("targets", [])
            if not t.get("hide") and t.get("expr")
        )
        panels.append(
            Panel(
                id=int(raw.get("id", len(panels) + 1)),
                type=str(raw.get("type", "")),
                title=str(raw.get("title", "")),
                grid_pos=raw["gridPos"],
                unit=str(defaults.get("unit", "short")),
                line_width=float(custom.get("lineWidth", 1)),
                fill_opacity=float(custom.get("fillOpacity", 0)),
                targets=targets,
            )
        )

    for raw in dashboard.get("panels", []):
        add(raw)
        for nested in raw.get("panels", []) if raw.get("type") == "row" else []:
            add(nested)
    return panels


# Units -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Axis:
    """How a Grafana unit shows on the y axis: values times `scale`, then `suffix`."""

    scale: float = 1.0
    suffix: str = ""
    tickformat: str = ""


_RATE_SUFFIXES = {"reqps": " req/s", "ops": " ops/s", "rps": " rd/s", "wps": " wr/s"}


def unit_axis(unit: str, largest: float) -> Axis:
    """The axis for a fieldConfig unit, scaled the way Grafana scales it for values up to
    `largest` (seconds become ms or µs when small, a ratio becomes a percentage)."""
    if unit in {"s", "ms", "µs", "us"}:
        to_seconds = {"s": 1.0, "ms": 1e-3}.get(unit, 1e-6)
        seconds = largest * to_seconds
        if seconds >= 1:
            return Axis(to_seconds, " s")
        if seconds >= 1e-3:
            return Axis(to_seconds * 1e3, " ms")
        return Axis(to_seconds * 1e6, " µs")
    if unit == "percentunit":
        return Axis(100.0, "%")
    if unit == "percent":
        return Axis(1.0, "%")
    if unit in _RATE_SUFFIXES:
        return Axis(1.0, _RATE_SUFFIXES[unit])
    return Axis(tickformat="~s")  # `short` and anything unknown: SI suffixes, no unit


# Prometheus ------------------------------------------------------------------------------


@dataclass
class Series:
    name: str
    values: list[float | None]  # one per step of the query grid; None is a gap

    @property
    def points(self) -> int:
        return sum(v is not None for v in self.values)


@dataclass
class PanelData:
    panel: Panel
    series: list[Series] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def step_grid(start: float, end: float, step: float) -> list[float]:
    """The evaluation timestamps of a range query, as Prometheus computes them."""
    count = math.floor((end - start) / step) + 1
    return [start + i * step for i in range(count)]


def align(grid: Sequence[float], samples: Sequence[Sequence[Any]]) -> list[float | None]:
    """Samples placed on the query grid; missing steps and NaN/Inf become gaps, which Grafana
    draws as breaks in the line."""
    by_time = {round(float(t), 3): float(v) for t, v in samples}
    out: list[float | None] = []
    for t in grid:
        value = by_time.get(round(t, 3))
        out.append(value if value is not None and math.isfinite(value) else None)
    return out


def query_range(
    client: httpx.Client, expr: str, start: float, end: float, step: float
) -> list[dict[str, Any]]:
    response = client.get(
        "/api/v1/query_range",
        params={"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": str(step)},
    )
    try:
        body = response.json()
    except ValueError:
        raise RenderError(
            f"Prometheus answered {response.status_code}: {response.text[:200]}"
        ) from None
    if body.get("status") != "success":
        raise RenderError(f"{body.get('errorType', 'error')}: {body.get('error', body)}")
    if body["data"]["resultType"] != "matrix":
        raise RenderError(f"expected a matrix, got {body['data']['resultType']}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def fetch_panels(
    prometheus_url: str,
    panels: Sequence[Panel],
    variables: Mapping[str, str],
    start: float,
    end: float,
    step: float,
) -> list[PanelData]:
    grid = step_grid(start, end, step)
    fetched: list[PanelData] = []
    with httpx.Client(base_url=prometheus_url, timeout=30.0) as client:
        for panel in panels:
            data = PanelData(panel)
            for target in panel.targets:
                expr = substitute_variables(target.expr, variables)
                try:
                    result = query_range(client, expr, start, end, step)
                except RenderError as exc:
                    data.errors.append(f"{target.ref_id}: {exc} (query: {expr})")
                    continue
                for item in result:
                    name = legend_name(target.legend_format, item["metric"], expr)
                    data.series.append(Series(name, align(grid, item["values"])))
            fetched.append(data)
    return fetched


# The page --------------------------------------------------------------------------------

_CSS = """
* { box-sizing: border-box; }
html, body { margin: 0; background: #111217; color: #ccccdc;
  font-family: Inter, "Helvetica Neue", Helvetica, Arial, sans-serif; font-size: 12px; }
.topbar { height: %(topbar)dpx; display: flex; align-items: center; gap: 12px;
  padding: 0 %(pad)dpx; background: #181b1f; border-bottom: 1px solid #2c3235; }
.crumbs { font-size: 16px; color: #8e8e9e; }
.crumbs b { color: #d8d9da; font-weight: 500; }
.note { color: #6e6e7e; font-size: 12px; }
.spacer { flex: 1; }
.range { border: 1px solid #2c3235; border-radius: 2px; padding: 5px 10px; color: #d8d9da;
  background: #111217; font-size: 13px; }
.range span { color: #8e8e9e; }
.grid { position: relative; margin: %(pad)dpx; height: %(grid_height)dpx; }
.panel { position: absolute; display: flex; flex-direction: column; background: #181b1f;
  border: 1px solid rgba(204, 204, 220, 0.12); border-radius: 2px; overflow: hidden; }
.panel h2 { margin: 0; height: 32px; line-height: 32px; padding: 0 8px; font-size: 14px;
  font-weight: 500; color: #d8d9da; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
.plot { flex: 1 1 auto; min-height: 0; }
.legend { flex: 0 0 auto; display: flex; flex-wrap: wrap; gap: 2px 14px;
  padding: 2px 8px 6px; max-height: 58px; overflow: hidden; }
.legend span { display: inline-flex; align-items: center; gap: 6px; color: #ccccdc;
  white-space: nowrap; }
.legend i { display: inline-block; width: 14px; height: 4px; border-radius: 1px; }
.nodata { flex: 1; display: flex; align-items: center; justify-content: center;
  color: #8e8e9e; font-size: 14px; }
.row { position: absolute; font-size: 14px; font-weight: 500; color: #d8d9da;
  line-height: 30px; }
"""


def _figure(data: PanelData, times: Sequence[str], x_range: tuple[str, str]) -> dict[str, Any]:
    largest = max((v for s in data.series for v in s.values if v is not None), default=0.0)
    axis = unit_axis(data.panel.unit, abs(largest))
    traces = []
    for index, series in enumerate(data.series):
        colour = PALETTE[index % len(PALETTE)]
        fill = data.panel.fill_opacity / 100
        traces.append(
            go.Scatter(
                x=list(times),
                y=[None if v is None else v * axis.scale for v in series.values],
                name=series.name,
                mode="lines",
                line={"color": colour, "width": max(data.panel.line_width, 1.0)},
                fill="tozeroy" if fill else None,
                opacity=1.0,
                connectgaps=False,
            )
        )
    grid_colour = "rgba(204, 204, 220, 0.08)"
    figure = go.Figure(
        data=traces,
        layout={
            "autosize": True,
            "showlegend": False,
            "paper_bgcolor": "rgba(0,0,0,0)",
            "plot_bgcolor": "rgba(0,0,0,0)",
            "font": {"color": "#ccccdc", "size": 11},
            "margin": {"l": 64, "r": 12, "t": 6, "b": 26},
            "xaxis": {
                "type": "date",
                "range": list(x_range),
                "tickformat": "%H:%M:%S",
                "gridcolor": grid_colour,
                "linecolor": grid_colour,
                "zeroline": False,
                "nticks": 8,
                "ticklabelstandoff": 4,
            },
            "yaxis": {
                "rangemode": "tozero",
                "ticksuffix": axis.suffix,
                "tickformat": axis.tickformat,
                "gridcolor": grid_colour,
                "zeroline": False,
                "nticks": 6,
                "automargin": True,
            },
        },
    )
    return dict(json.loads(figure.to_json()))


def render_html(
    dashboard: Mapping[str, Any],
    fetched: Sequence[PanelData],
    start: float,
    end: float,
    step: float,
    *,
    page_width: int = PAGE_WIDTH,
) -> tuple[str, int]:
    """The dashboard as one self-contained HTML page, and the page's height in pixels."""
    grid_width = page_width - 2 * PAGE_PADDING
    panels_height = grid_height([d.panel.grid_pos for d in fetched])
    page_height = TOPBAR_HEIGHT + panels_height + 2 * PAGE_PADDING
    times = [_plotly_time(t) for t in step_grid(start, end, step)]
    x_range = (_plotly_time(start), _plotly_time(end))
    blocks: list[str] = []
    figures: dict[str, dict[str, Any]] = {}
    for data in fetched:
        box = grid_box(data.panel.grid_pos, grid_width)
        style = f"left:{box.left}px;top:{box.top}px;width:{box.width}px;height:{box.height}px"
        title = html.escape(data.panel.title)
        if data.panel.type == "row":
            blocks.append(f'<div class="row" style="{style}">{title}</div>')
            continue
        body: str
        if any(s.points for s in data.series):
            plot_id = f"panel-{data.panel.id}"
            figures[plot_id] = _figure(data, times, x_range)
            legend = "".join(
                f'<span><i style="background:{PALETTE[i % len(PALETTE)]}"></i>'
                f"{html.escape(s.name)}</span>"
                for i, s in enumerate(data.series)
            )
            body = f'<div class="plot" id="{plot_id}"></div><div class="legend">{legend}</div>'
        else:
            body = '<div class="nodata">No data</div>'
        blocks.append(f'<div class="panel" style="{style}"><h2>{title}</h2>{body}</div>')
    css = _CSS % {"topbar": TOPBAR_HEIGHT, "pad": PAGE_PADDING, "grid_height": panels_height}
    title = html.escape(str(dashboard.get("title", "dashboard")))
    note = f"rendered by scripts/render_dashboard.py from Prometheus, step {format_duration(step)}"
    tags = " ".join(html.escape(str(t)) for t in dashboard.get("tags", []))
    time_range = f"{_display_time(start)} <span>to</span> {_display_time(end)} <span>UTC</span>"
    # The figures are drawn once the page (and so every panel's final size) is laid out.
    script = (
        "window.addEventListener('load', function () {\n"
        f"  var figures = {json.dumps(figures)};\n"
        "  var config = {staticPlot: true, displayModeBar: false, responsive: false};\n"
        "  Object.keys(figures).forEach(function (id) {\n"
        "    Plotly.newPlot(id, figures[id].data, figures[id].layout, config);\n"
        "  });\n"
        "});"
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>{css}</style>
<script>{plotly.offline.get_plotlyjs()}</script>
</head><body style="width:{page_width}px;height:{page_height}px">
<div class="topbar"><div class="crumbs">Dashboards / {tags} / <b>{title}</b></div>
<div class="spacer"></div><div class="note">{html.escape(note)}</div>
<div class="range">{time_range}</div></div>
<div class="grid">{"".join(blocks)}</div>
<script>{script}</script>
</body></html>
"""
    return page, page_height


def _plotly_time(unix: float) -> str:
    # Plotly draws date strings as written, so UTC strings show UTC, as the dashboard asks.
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _display_time(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S")


# Processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def log(message: str) -> None:
    print(f"render_dashboard: {message}", file=sys.stderr, flush=True)


class Processes:
    """Child processes, each in its own process group, stopped (with their own children,
    such as uvicorn's workers) when the run ends however it ends."""

    def __init__(self) -> None:
        self._running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self, name: str, args: Sequence[str], *, cwd: Path, env: Mapping[str, str], output: Path
    ) -> subprocess.Popen[bytes]:
        with output.open("wb") as sink:
            process = subprocess.Popen(  # noqa: S603 - our own binaries, argument lists
                list(args),
                cwd=cwd,
                env=dict(env),
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._running.append((name, process))
        return process

    def stop_all(self) -> None:
        while self._running:
            name, process = self._running.pop()
            if process.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop in {STOP_TIMEOUT_SECONDS:.0f}s; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_until(what: str, probe_url: str, process: subprocess.Popen[bytes], output: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = output.read_text(errors="replace")[-2000:]
            raise RenderError(f"{what} exited with status {process.returncode}:\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            response = httpx.get(probe_url, timeout=2.0)
            if response.status_code == 200:
                return
        time.sleep(0.2)
    raise RenderError(f"{what} did not answer {probe_url} within {START_TIMEOUT_SECONDS:.0f}s")


def start_kassa(
    processes: Processes, kassa: Path, work: Path, port: int, workers: int
) -> subprocess.Popen[bytes]:
    home = work / "kassa"
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "KASSA_LOG_LEVEL": "WARNING",
        # The per-IP limit out of the way (all traffic comes from 127.0.0.1); the per-user
        # limit low enough that one greedy client's bursts are refused (counted per worker).
        "KASSA_RATE_LIMIT": "100000/minute",
        "KASSA_USER_RATE_LIMIT": "60/10seconds",
        # A card network's latency, so the processor panel has something to show.
        "KASSA_SIMULATOR_DELAY_MS": "25",
    }
    output = work / "kassa.log"
    args = [str(kassa), "serve", "--port", str(port), "--workers", str(workers)]
    process = processes.start("kassa", args, cwd=home, env=env, output=output)
    wait_until("kassa", f"http://127.0.0.1:{port}/healthz", process, output)
    return process


def start_prometheus(
    processes: Processes,
    prometheus: Path,
    work: Path,
    kassa_port: int,
    port: int,
    scrape_interval: float,
) -> subprocess.Popen[bytes]:
    home = work / "prometheus"
    (home / "data").mkdir(parents=True)
    shutil.copyfile(ALERT_RULES, home / ALERT_RULES.name)
    interval = format_duration(scrape_interval)
    config = home / "prometheus.yml"
    config.write_text(
        f"""global:
  scrape_interval: {interval}
  scrape_timeout: {interval}
  evaluation_interval: {interval}
rule_files:
  - {ALERT_RULES.name}
scrape_configs:
  - job_name: kassa
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:{kassa_port}"]
""",
        encoding="utf-8",
    )
    args = [
        str(prometheus),
        f"--config.file={config}",
        f"--storage.tsdb.path={home / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    output = work / "prometheus.log"
    process = processes.start("prometheus", args, cwd=home, env=env, output=output)
    wait_until("prometheus", f"http://127.0.0.1:{port}/-/ready", process, output)
    # Loaded rules and a first good scrape of kassa, so the load window is fully recorded.
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        targets = httpx.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5.0).json()
        active = targets["data"]["activeTargets"]
        if active and all(t["health"] == "up" for t in active):
            break
        time.sleep(scrape_interval / 2)
    else:
        raise RenderError(f"Prometheus never scraped kassa successfully: {active}")
    rules = httpx.get(f"http://127.0.0.1:{port}/api/v1/rules", timeout=5.0).json()
    if not rules["data"]["groups"]:
        raise RenderError(f"Prometheus loaded no rules from {ALERT_RULES.name}")
    return process


# Traffic ---------------------------------------------------------------------------------

OK_CARDS = ("4242424242424242", "5555555555554444", "4000056655665556")
DECLINED_CARDS = ("4000000000000002", "4000000000009995")
CURRENCIES = ("USD", "EUR", "GBP")


@dataclass
class Traffic:
    """What the load sent and what it got back, for the progress lines."""

    sent: int = 0
    classes: Counter[str] = field(default_factory=Counter)

    def record(self, status: int | None) -> None:
        self.sent += 1
        if status is None:
            self.classes["failed"] += 1
        elif status == 429:
            self.classes["429"] += 1
        else:
            self.classes[f"{status // 100}xx"] += 1

    def summary(self) -> str:
        order = ("2xx", "3xx", "4xx", "429", "5xx", "failed")
        parts = [f"{k} {self.classes[k]}" for k in order if self.classes[k]]
        return f"{self.sent} requests ({', '.join(parts) or 'none yet'})"


class Shopper:
    """One merchant account using the API the way a shop would."""

    def __init__(self, client: httpx.AsyncClient, traffic: Traffic, rng: random.Random) -> None:
        self.client = client
        self.traffic = traffic
        self.rng = rng
        self.email = f"shop-{uuid.uuid4().hex[:10]}@example.com"
        self.password = "correct horse " + uuid.uuid4().hex[:8]
        self.token = ""
        self.completed: list[dict[str, Any]] = []
        self._last_create: tuple[str, dict[str, Any]] | None = None

    async def call(
        self, method: str, url: str, *, auth: bool = True, **kwargs: Any
    ) -> httpx.Response | None:
        extra_headers = dict(kwargs.pop("headers", {}))
        for attempt in range(2):
            headers = dict(extra_headers)
            if auth:
                headers["Authorization"] = f"Bearer {self.token}"
            try:
                response = await self.client.request(method, url, headers=headers, **kwargs)
            except httpx.HTTPError:
                self.traffic.record(None)
                return None
            self.traffic.record(response.status_code)
            if response.status_code == 401 and auth and attempt == 0:
                await self.login()  # the access token expired on a long run
                continue
            return response
        return None

    async def sign_up(self) -> None:
        body = {"name": "Load Shop", "email": self.email, "password": self.password}
        response = await self.call("POST", "/api/auth/register", auth=False, json=body)
        if response is None or response.status_code != 201:
            raise RenderError(f"register failed: {response and response.text}")
        await self.login()

    async def login(self) -> None:
        body = {"email": self.email, "password": self.password}
        response = await self.call("POST", "/api/auth/login", auth=False, json=body)
        if response is None or response.status_code != 200:
            raise RenderError(f"login failed: {response and response.text}")
        self.token = response.json()["access_token"]

    def _payment_body(self) -> dict[str, Any]:
        amount = self.rng.randrange(300, 25_000)
        currency = self.rng.choice(CURRENCIES)
        if self.rng.random() < 0.3:
            token = "declined_funds" if self.rng.random() < 0.15 else f"tok_{uuid.uuid4().hex[:8]}"
            wallet = self.rng.choice(("apple_pay", "google_pay", "paypal"))
            details: dict[str, Any] = {"wallet": wallet, "token": token}
            method = "digital_wallet"
        else:
            number = self.rng.choice(DECLINED_CARDS if self.rng.random() < 0.15 else OK_CARDS)
            details = {"number": number, "exp_month": 12, "exp_year": 2099, "cvc": "123"}
            method = self.rng.choice(("credit_card", "credit_card", "debit_card"))
        return {
            "amount": amount,
            "currency": currency,
            "payment_method": method,
            "details": details,
        }

    async def create(self) -> dict[str, Any] | None:
        if self._last_create and self.rng.random() < 0.05:
            key, body = self._last_create  # a client retrying: answered by replay
        else:
            key, body = uuid.uuid4().hex, self._payment_body()
            self._last_create = (key, body)
        response = await self.call(
            "POST", "/api/payments", json=body, headers={"Idempotency-Key": key}
        )
        if response is None or response.status_code != 201:
            return None
        payment: dict[str, Any] = response.json()
        return payment

    async def buy(self) -> None:
        payment = await self.create()
        if payment is None or payment["status"] != "pending":
            return
        if self.rng.random() < 0.08:
            await self.call("POST", f"/api/payments/{payment['id']}/cancel")
            return
        response = await self.call(
            "POST", "/api/payments/process", json={"payment_id": payment["id"]}
        )
        if response is None or response.status_code != 200:
            return
        processed = response.json()
        await self.call("GET", f"/api/payments/{payment['id']}/status")
        if processed["status"] == "completed":
            self.completed.append(processed)

    async def refund(self) -> None:
        if not self.completed:
            return
        payment = self.completed.pop(self.rng.randrange(len(self.completed)))
        url = f"/api/payments/{payment['id']}/refund"
        if self.rng.random() < 0.5:
            part = max(1, payment["amount"] // self.rng.choice((2, 3, 4)))
            await self.call("POST", url, json={"amount": part, "reason": "partial return"})
        await self.call("POST", url)  # whatever is left

    async def browse(self) -> None:
        await self.call("GET", "/api/transactions", params={"limit": 20})
        if self.completed:
            await self.call("GET", f"/api/payments/{self.rng.choice(self.completed)['id']}")

    async def mistake(self) -> None:
        kind = self.rng.random()
        if kind < 0.4:
            await self.call("GET", f"/api/payments/{uuid.uuid4()}")  # 404
        elif kind < 0.8:
            body = self._payment_body()
            bad = "4242424242424241"  # fails the Luhn check
            body["details"] = {"number": bad, "exp_month": 12, "exp_year": 2099, "cvc": "123"}
            body["payment_method"] = "credit_card"
            await self.call("POST", "/api/payments", json=body)  # 422
        elif kind < 0.9:
            await self.call("POST", "/api/payments", json={"amount": -5, "currency": "USD"})
        else:
            body = {"email": f"nobody-{uuid.uuid4().hex[:6]}@example.com", "password": "wrong pw"}
            await self.call("POST", "/api/auth/login", auth=False, json=body)  # 401

    async def step(self) -> None:
        roll = self.rng.random()
        if roll < 0.55:
            await self.buy()
        elif roll < 0.7:
            await self.refund()
        elif roll < 0.85:
            await self.browse()
        elif roll < 0.95:
            await self.mistake()
        else:
            await self.call("GET", "/api/auth/profile")


async def _shop(shopper: Shopper, start: float, deadline: float, delay: float) -> None:
    await asyncio.sleep(delay)
    while time.monotonic() < deadline:
        await shopper.step()
        # Traffic rises and falls over the run, as real traffic does, instead of a flat line.
        wave = 1 + 0.6 * math.sin(2 * math.pi * (time.monotonic() - start) / 60)
        await asyncio.sleep(shopper.rng.uniform(0.05, 0.5) * wave)


async def _burst(shopper: Shopper, deadline: float, every: float, size: int) -> None:
    """A client that ignores RateLimit-Remaining: `size` quick reads every `every` seconds,
    which the per-user limit cuts short with 429s."""
    payment = None
    for _ in range(5):
        payment = payment or await shopper.create()
    if payment is None:
        raise RenderError("the burst client could not create its payment")
    url = f"/api/payments/{payment['id']}/status"
    gate = asyncio.Semaphore(12)

    async def one() -> None:
        async with gate:
            await shopper.call("GET", url)

    await asyncio.sleep(every / 2)
    while time.monotonic() + 2 < deadline:
        await asyncio.gather(*(one() for _ in range(size)))
        await asyncio.sleep(min(every, max(0.0, deadline - time.monotonic())))


async def _report(traffic: Traffic, start: float, duration: float) -> None:
    while True:
        await asyncio.sleep(PROGRESS_EVERY_SECONDS)
        elapsed = time.monotonic() - start
        log(f"load {elapsed:4.0f}s/{duration:.0f}s: {traffic.summary()}")


def _rng(seed: float) -> random.Random:
    return random.Random(seed)  # noqa: S311 - varied traffic, not secrets


async def drive_traffic(base_url: str, duration: float, shoppers: int, seed: int) -> Traffic:
    traffic = Traffic()
    rng = _rng(seed)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0, limits=limits) as client:
        people = [Shopper(client, traffic, _rng(rng.random())) for _ in range(shoppers)]
        greedy = Shopper(client, traffic, _rng(rng.random()))
        for person in [*people, greedy]:
            await person.sign_up()
        start = time.monotonic()
        deadline = start + duration
        reporter = asyncio.create_task(_report(traffic, start, duration))
        try:
            await asyncio.gather(
                *(
                    _shop(p, start, deadline, delay=i * duration * 0.04)
                    for i, p in enumerate(people)
                ),
                _burst(greedy, deadline, every=max(10.0, duration / 3), size=160),
            )
        finally:
            reporter.cancel()
    return traffic


# Screenshot ------------------------------------------------------------------------------


def screenshot(chromium: Path, page: Path, output: Path, height: int, work: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=work))
    args = [
        str(chromium),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        "--virtual-time-budget=10000",
        f"--window-size={PAGE_WIDTH},{height}",
        f"--screenshot={output}",
        page.resolve().as_uri(),
    ]
    result = subprocess.run(  # noqa: S603 - the browser binary, an argument list
        args, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_SECONDS, check=False
    )
    if result.returncode != 0 or not output.exists():
        raise RenderError(f"chromium failed ({result.returncode}): {result.stderr[-2000:]}")


# Main ------------------------------------------------------------------------------------


def summarize(fetched: Sequence[PanelData]) -> list[str]:
    lines = []
    for data in fetched:
        if data.panel.type == "row":
            continue
        points = sum(s.points for s in data.series)
        state = "ERROR" if data.errors else ("ok" if points else "EMPTY")
        lines.append(
            f"  {state:5} {data.panel.title!r}: {len(data.series)} series, {points} points"
        )
        lines.extend(f"        {error}" for error in data.errors)
    return lines


def check_supported(panels: Sequence[Panel]) -> None:
    for panel in panels:
        if panel.type not in TIMESERIES_TYPES | {"row"}:
            raise RenderError(f"panel {panel.title!r}: type {panel.type!r} is not rendered")
        if panel.type != "row" and not panel.targets:
            raise RenderError(f"panel {panel.title!r} has no Prometheus query")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=90.0, help="Seconds of load.")
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD)
    parser.add_argument("--screenshot", type=Path, default=SCREENSHOT)
    parser.add_argument("--html", type=Path, default=None, help="Also keep the page here.")
    parser.add_argument("--step", type=float, default=2.0, help="Query step, seconds.")
    parser.add_argument("--scrape-interval", type=float, default=1.0, help="Seconds.")
    parser.add_argument(
        "--rate-interval",
        default=None,
        help="$__rate_interval (default: Grafana's rule for the step and scrape interval).",
    )
    parser.add_argument("--shoppers", type=int, default=6, help="Concurrent API users.")
    parser.add_argument("--workers", type=int, default=2, help="kassa serve --workers.")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--kassa", type=Path, default=Path(sys.executable).parent / "kassa")
    parser.add_argument(
        "--prometheus", type=Path, default=Path(shutil.which("prometheus") or "prometheus")
    )
    parser.add_argument(
        "--chromium", type=Path, default=Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    )
    args = parser.parse_args(argv)
    if args.duration < 10:
        parser.error("--duration must be at least 10 seconds")
    for name in ("kassa", "prometheus", "chromium"):
        if not os.access(getattr(args, name), os.X_OK):
            parser.error(f"{name} not found at {getattr(args, name)}")
    return args


@contextlib.contextmanager
def _terminated_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the run the way Ctrl-C does, so the children are stopped too."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    dashboard = json.loads(args.dashboard.read_text(encoding="utf-8"))
    panels = load_panels(dashboard)
    check_supported(panels)
    rate_interval = (
        parse_duration(args.rate_interval)
        if args.rate_interval
        else grafana_rate_interval(args.step, args.scrape_interval)
    )
    began = time.monotonic()
    processes = Processes()
    with tempfile.TemporaryDirectory(prefix="render-dashboard-") as tmp:
        work = Path(tmp)
        try:
            kassa_port, prometheus_port = free_port(), free_port()
            log(f"starting kassa on 127.0.0.1:{kassa_port} ({args.workers} workers)")
            start_kassa(processes, args.kassa, work, kassa_port, args.workers)
            log(f"starting Prometheus on 127.0.0.1:{prometheus_port}")
            start_prometheus(
                processes,
                args.prometheus,
                work,
                kassa_port,
                prometheus_port,
                args.scrape_interval,
            )
            log(f"driving traffic for {args.duration:.0f}s with {args.shoppers} shoppers")
            start = time.time()
            traffic = asyncio.run(
                drive_traffic(
                    f"http://127.0.0.1:{kassa_port}", args.duration, args.shoppers, args.seed
                )
            )
            end = time.time()
            log(f"load done: {traffic.summary()}")
            time.sleep(2 * args.scrape_interval + 1)  # the last scrape and rule evaluation
            start = math.floor(start / args.step) * args.step  # Grafana aligns to the step
            end = math.floor(end / args.step) * args.step
            variables = {
                **dashboard_variables(dashboard),
                **builtin_variables(
                    step=args.step, rate_interval=rate_interval, range_seconds=end - start
                ),
            }
            log(f"querying Prometheus ($__rate_interval={variables['__rate_interval']})")
            fetched = fetch_panels(
                f"http://127.0.0.1:{prometheus_port}", panels, variables, start, end, args.step
            )
        except Exception:
            for name in ("kassa.log", "prometheus.log"):
                path = work / name
                tail = path.read_text(errors="replace")[-1500:].strip() if path.exists() else ""
                if tail:
                    log(f"last lines of {name}:\n{tail}")
            raise
        finally:
            processes.stop_all()
        print(f"{dashboard.get('title')}: {_display_time(start)} to {_display_time(end)} UTC")
        print("\n".join(summarize(fetched)), flush=True)
        drawn = [d for d in fetched if d.panel.type != "row"]
        if any(d.errors for d in drawn):
            raise RenderError("some panel queries failed (see above); no screenshot written")
        if not any(s.points for d in drawn for s in d.series):
            raise RenderError("every panel is empty; no screenshot written")
        page, height = render_html(dashboard, fetched, start, end, args.step)
        page_path = args.html or work / "dashboard.html"
        page_path.parent.mkdir(parents=True, exist_ok=True)
        page_path.write_text(page, encoding="utf-8")
        log(f"screenshotting {page_path} ({PAGE_WIDTH}x{height})")
        screenshot(args.chromium, page_path, args.screenshot, height, work)
    print(f"wrote {args.screenshot}" + (f" and {args.html}" if args.html else ""))
    print(f"took {time.monotonic() - began:.0f}s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with _terminated_as_interrupt():
            return run(args)
    except RenderError as exc:
        log(str(exc))
        return 1
    except KeyboardInterrupt:
        log("interrupted; stopped kassa and Prometheus")
        return 130


if __name__ == "__main__":
    sys.exit(main())
