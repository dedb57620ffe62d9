"""The burn-down chart as inline SVG, drawn on the server: no plotting library in the page, no
script, and every text in it (a change's description) escaped like the rest of the page."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from markupsafe import Markup, escape

from slo_engine.budget.accounting import over_time
from slo_engine.changes.events import Change
from slo_engine.spec.model import SLO

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 28
STEP = "1h"


@dataclass(frozen=True)
class BurnDown:
    group: str
    svg: Markup


def burn_downs(slo: SLO, ledger: pd.DataFrame, changes: Sequence[Change], start: datetime,
               end: datetime, limit: int) -> list[BurnDown]:
    """Budget remaining of each group (rolling period) from `start` to `end`, hourly, with
    the changes of the SLO's services marked where they happened."""
    frame = over_time(slo, ledger, step=STEP, windows=("1h",))
    charts = []
    for group, rows in list(frame.groupby("group", sort=True, observed=True))[:limit]:
        name = str(group)
        title = f"{slo.service}/{slo.name}" + (f" {{{name}}}" if name else "")
        charts.append(BurnDown(name, svg(rows, changes, start, end, title)))
    return charts


def svg(rows: pd.DataFrame, changes: Sequence[Change], start: datetime, end: datetime,
        title: str) -> Markup:
    """One group's chart: 100% at the top, the zero line marked, below it overspent."""
    times = pd.DatetimeIndex(rows["timestamp"])
    values = rows["error_budget_remaining"].to_numpy(dtype=float)
    finite = [v for v in values if math.isfinite(v)]
    low = float(min([0.0, *finite]))
    high = float(max([1.0, *finite]))
    span = (end - start).total_seconds() or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(moment: datetime | pd.Timestamp) -> float:
        offset = float((pd.Timestamp(moment) - pd.Timestamp(start)).total_seconds())
        return LEFT + plot_w * offset / span

    def y(value: float) -> float:
        return TOP + plot_h * (high - value) / (high - low)

    points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in zip(times, values, strict=True)
                      if math.isfinite(v) and start <= t <= end)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="burn-down" role="img" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" aria-labelledby="chart-{_id(title)}">',
        f'<title id="chart-{_id(title)}">Error budget remaining: {escape(title)}</title>',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" class="plot"/>',
    ]
    for value in sorted({high, 1.0, 0.5, 0.0, low}):
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" '
                     f'y2="{y(value):.1f}" class="{"zero" if value == 0 else "grid"}"/>')
        parts.append(f'<text x="{LEFT - 4}" y="{y(value) + 4:.1f}" class="axis" '
                     f'text-anchor="end">{value * 100:.0f}%</text>')
    for label_at in pd.date_range(pd.Timestamp(start).ceil("D"), end, freq="7D"):
        parts.append(f'<text x="{x(label_at):.1f}" y="{HEIGHT - 8}" class="axis" '
                     f'text-anchor="middle">{label_at:%b %d}</text>')
    for change in changes:
        if not start <= change.time <= end:
            continue
        where = f"{x(change.time):.1f}"
        label = " ".join(part for part in (change.kind, change.service, change.version or "",
                                           change.description or "") if part)
        parts.append(f'<g class="change change-{escape(change.kind)}"><title>'
                     f'{escape(f"{change.time:%Y-%m-%d %H:%M} UTC {label}")}</title>'
                     f'<line x1="{where}" x2="{where}" y1="{TOP}" y2="{TOP + plot_h}"/>'
                     f'<circle cx="{where}" cy="{TOP + 4}" r="3.5"/></g>')
    if points:
        parts.append(f'<polyline points="{points}" class="remaining"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _id(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title)
