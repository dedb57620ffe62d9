"""Budget charts: what a burn looked like, what changed just before it, and which SLOs burn.

Three kinds of chart, each drawn from `budget.over_time` frames (one row per SLO group per
step) and the backtest's alert intervals:

- burn-down: each SLO's rolling error budget remaining, incidents (alert intervals) shaded,
  change events as vertical lines labelled by version (deploys) or kind;
- SLI against its objective: the rolling period's SLI and the 1h SLI;
- a burn-rate heatmap: time × SLO, coloured by the 1h burn rate in the bands the default
  alert tiers care about.

Figures are built without pyplot: no global state, no GUI backend, and a notebook's inline
backend is left alone; PNGs are rendered by Agg, to files or (`png_bytes`, for the daily
digest's Slack upload) to memory. matplotlib is imported on first use, so commands that
draw nothing never pay for it.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from slo_engine.budget.accounting import over_time, slo_rows
from slo_engine.budget.backtest import BacktestResult, backtest_slos
from slo_engine.changes.events import Change
from slo_engine.spec.model import SLO, Service

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

SIZE_INCHES = (10.0, 4.0)
DPI = 100
SIZE_PX = (int(SIZE_INCHES[0] * DPI), int(SIZE_INCHES[1] * DPI))  # every PNG: width, height
RATE_WINDOW = "1h"
# Burn-rate bands of the heatmap: sustainable, slow (ticket pace), fast, page pace (30d).
BURN_BANDS = (0.0, 1.0, 3.0, 6.0, 14.4, np.inf)
BAND_COLOURS = ("#d9f0d3", "#fee391", "#fdae6b", "#f16913", "#a50f15")
NO_TRAFFIC = "#bdbdbd"
SEVERITY_COLOURS = {"page": "#d62728", "ticket": "#ff7f0e"}
KIND_COLOURS = {"deploy": "#1f77b4", "config": "#9467bd", "feature_flag": "#2ca02c",
                "migration": "#8c564b", "infrastructure": "#7f7f7f"}
KIND_LABELS = {"feature_flag": "flag", "infrastructure": "infra"}
GROUP_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#17becf", "#8c564b", "#e377c2")
PERIOD_POINTS = 300  # a period's burn-down: smooth at SIZE_PX, quick to compute for 30d

AlertsBySLO = Mapping[tuple[str, str], pd.DataFrame]


# --- the data the charts draw ---------------------------------------------------------------


def history(services: Iterable[Service], ledger: pd.DataFrame,
            step: str = "1h") -> pd.DataFrame:
    """`budget.over_time` of every SLO at `step`, with the 1h window: one frame for all
    charts (columns timestamp, service, slo, group, sli, error_ratio_1h, burn_rate_1h,
    error_budget_remaining)."""
    frames = [over_time(slo, ledger, step=step, windows=(RATE_WINDOW,))
              for service in services for slo in service.slos]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=["timestamp", "service", "slo", "group", "sli",
                                     f"error_ratio_{RATE_WINDOW}", f"burn_rate_{RATE_WINDOW}",
                                     "error_budget_remaining"])
    return pd.concat(frames, ignore_index=True)


def backtests(services: Iterable[Service], ledger: pd.DataFrame) -> list[BacktestResult]:
    """Backtests of every SLO's own tiers over the ledger: the incidents the charts shade.

    Alerts are evaluated from the longest alert window after the first bucket: before
    that, a window holds a few buckets only and a tier fires on noise."""
    slos = [slo for service in services for slo in service.slos]
    if ledger.empty or not slos:
        return []
    longest = max((t.long_seconds for slo in slos for t in slo.tiers), default=0.0)
    first = pd.Timestamp(ledger["timestamp"].min()).to_pydatetime()
    return backtest_slos(slos, ledger, since=first + timedelta(seconds=longest))


def alerts_by_slo(results: Iterable[BacktestResult]) -> dict[tuple[str, str], pd.DataFrame]:
    return {(result.service, result.slo): result.alerts for result in results}


# --- figures --------------------------------------------------------------------------------


def _figure() -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=SIZE_INCHES, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _rows(slo: SLO, frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return frame
    return frame[(frame["service"] == slo.service) & (frame["slo"] == slo.name)]


def _by_group(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    return [(str(group), part.sort_values("timestamp"))
            for group, part in rows.groupby("group", sort=True, observed=True)]


def _dates(times: Iterable[Any]) -> list[float]:
    """Times as matplotlib's date numbers (days since its epoch), which its typed API takes."""
    from matplotlib.dates import date2num

    stamps = pd.DatetimeIndex(list(times))
    stamps = stamps.tz_convert("UTC") if stamps.tz is not None else stamps.tz_localize("UTC")
    return [float(x) for x in date2num(stamps.to_pydatetime())]  # type: ignore[no-untyped-call]


def _time_axis(axes: Axes) -> None:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator(minticks=4, maxticks=10)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    axes.grid(True, alpha=0.3, linewidth=0.5)


def _percent_axis(axes: Axes, decimals: int | None = None) -> None:
    from matplotlib.ticker import PercentFormatter

    axes.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=decimals))


def _shade_alerts(axes: Axes, alerts: pd.DataFrame | None, until: pd.Timestamp) -> list[str]:
    """Firing intervals, merged per severity so overlapping tiers shade once."""
    if alerts is None or alerts.empty:
        return []
    shaded = []
    for severity in ("ticket", "page"):
        rows = alerts[alerts["severity"] == severity]
        ends = rows["end"].fillna(until)
        spans = sorted(zip(_dates(rows["start"]), _dates(ends), strict=True))
        merged: list[list[float]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        for start, end in merged:
            axes.axvspan(start, end, color=SEVERITY_COLOURS[severity], alpha=0.18, linewidth=0)
        if merged:
            shaded.append(severity)
    return shaded


def change_label(change: Change) -> str:
    """A deploy by its version's tag (the image name is the service), anything else by its
    kind: the notebook's incident table has the details."""
    if change.kind == "deploy" and change.version:
        return change.version.rsplit(":", 1)[-1].rsplit("-", 1)[-1]
    return KIND_LABELS.get(change.kind, change.kind)


LABEL_LEVELS = 3  # labels too close to the previous one step down, up to this many rows


def _mark_changes(axes: Axes, changes: Iterable[Change], service: str,
                  start: pd.Timestamp, end: pd.Timestamp) -> None:
    """A line per change of `service`; labels step down a row where they would overlap."""
    gap = (end - start) * 0.012
    last: list[pd.Timestamp | None] = [None] * LABEL_LEVELS
    for change in sorted(changes, key=lambda c: c.time):
        moment = pd.Timestamp(change.time)
        if change.service != service or not start <= moment <= end:
            continue
        colour = KIND_COLOURS.get(change.kind, "#7f7f7f")
        axes.axvline(_dates([moment])[0], color=colour, linewidth=0.8, alpha=0.7)
        level = next((n for n, seen in enumerate(last) if seen is None or moment - seen > gap),
                     None)
        if level is None:
            continue  # the line stays; its label would sit on top of others
        last[level] = moment
        axes.annotate(change_label(change), xy=(moment, 1.0 - 0.3 * level),
                      xycoords=("data", "axes fraction"), xytext=(1, -2),
                      textcoords="offset points", rotation=90, va="top", ha="left",
                      fontsize=6, color=colour)


def burn_down(slo: SLO, history: pd.DataFrame, changes: Iterable[Change] = (),
              alerts: pd.DataFrame | None = None) -> Figure:
    """The SLO's rolling error budget remaining per group, incidents shaded, changes of its
    service marked."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    figure = _figure()
    axes = figure.add_subplot()
    rows = _rows(slo, history)
    handles: list[Any] = []
    for number, (group, part) in enumerate(_by_group(rows)):
        (line,) = axes.plot(part["timestamp"], part["error_budget_remaining"], linewidth=1.4,
                            color=GROUP_COLOURS[number % len(GROUP_COLOURS)],
                            label=group or "remaining")
        handles.append(line)
    axes.axhline(0.0, color="#d62728", linewidth=0.8, linestyle="--")
    title = f"{slo.service}/{slo.name}: error budget remaining (rolling {slo.period})"
    if not rows.empty:
        start, end = rows["timestamp"].min(), rows["timestamp"].max()
        for severity in _shade_alerts(axes, alerts, end):
            handles.append(Patch(color=SEVERITY_COLOURS[severity], alpha=0.3,
                                 label=f"{severity} firing"))
        changes = list(changes)
        _mark_changes(axes, changes, slo.service, start, end)
        kinds = sorted({c.kind for c in changes if c.service == slo.service})
        handles.extend(Line2D([], [], color=KIND_COLOURS.get(k, "#7f7f7f"), linewidth=0.8,
                              label=k.replace("_", " ")) for k in kinds)
        axes.set_xlim(start, end)
        low = float(np.nanmin(rows["error_budget_remaining"].to_numpy(dtype=float),
                              initial=0.0))
        axes.set_ylim(min(low - 0.05, -0.05), 1.05)
    else:
        title += ": no data"
    axes.set_title(title, fontsize=10)
    axes.set_ylabel("budget remaining")
    _percent_axis(axes)
    _time_axis(axes)
    if handles:
        axes.legend(handles=handles, loc="lower left", fontsize=7, ncols=min(len(handles), 5),
                    framealpha=0.8)
    return figure


def period_burn_down(slo: SLO, ledger: pd.DataFrame, start: datetime,
                     changes: Iterable[Change] = (), ledger_step_seconds: float = 60.0,
                     ) -> Figure | None:
    """The burn-down of the SLO's current period (which began at `start`): the budget spent
    since then, so the line ends at the budget the digest reports; incidents of its own tiers
    shaded, its service's changes marked. The digest attaches it. None when the ledger holds
    no events of the SLO since `start`.

    Its alerts are backtested from the ledger's rows before `start` too, up to the longest
    alert window, so that incidents early in the period are shaded when those rows exist."""
    rows = slo_rows(slo, ledger)
    period = rows[rows["timestamp"] > pd.Timestamp(start)]
    if period.empty:
        return None
    one = Service(slo.service, slo.owner, slo.source_file, (slo,))
    frame = history([one], period, period_step(slo, ledger_step_seconds))
    if frame.empty:
        return None
    longest = timedelta(seconds=max((t.long_seconds for t in slo.tiers), default=0.0))
    warm = rows[rows["timestamp"] > pd.Timestamp(start - longest)]
    alerts = alerts_by_slo(backtests([one], warm)).get((slo.service, slo.name))
    return burn_down(slo, frame, changes, alerts)


def period_step(slo: SLO, ledger_step_seconds: float, points: int = PERIOD_POINTS) -> str:
    """The step drawing one period in about `points` points: a whole number of ledger steps,
    so every point falls on a bucket's end."""
    buckets = max(1, math.ceil(slo.period_seconds / points / ledger_step_seconds))
    return f"{int(buckets * ledger_step_seconds)}s"


def sli_chart(slo: SLO, history: pd.DataFrame) -> Figure:
    """The SLI over the rolling period and over the last hour, against the objective."""
    figure = _figure()
    axes = figure.add_subplot()
    rows = _rows(slo, history)
    for number, (group, part) in enumerate(_by_group(rows)):
        colour = GROUP_COLOURS[number % len(GROUP_COLOURS)]
        suffix = f" {group}" if group else ""
        axes.plot(part["timestamp"], 1 - part[f"error_ratio_{RATE_WINDOW}"], linewidth=0.7,
                  alpha=0.5, color=colour, label=f"SLI {RATE_WINDOW}{suffix}")
        axes.plot(part["timestamp"], part["sli"], linewidth=1.6, color=colour,
                  label=f"SLI {slo.period}{suffix}")
    axes.axhline(slo.objective, color="#d62728", linewidth=1.0, linestyle="--",
                 label=f"objective {slo.objective_percent}%")
    budget = slo.error_budget
    axes.set_ylim(max(0.0, 1 - 5 * budget), 1 + 0.25 * budget)
    if not rows.empty:
        axes.set_xlim(rows["timestamp"].min(), rows["timestamp"].max())
    axes.set_title(f"{slo.service}/{slo.name}: SLI against the {slo.objective_percent}% "
                   "objective" + ("" if not rows.empty else ": no data"), fontsize=10)
    _percent_axis(axes, decimals=max(1, len(slo.objective_percent.partition(".")[2]) + 1))
    _time_axis(axes)
    axes.legend(loc="lower left", fontsize=7, ncols=3, framealpha=0.8)
    return figure


def burn_rate_heatmap(history: pd.DataFrame, window: str = RATE_WINDOW) -> Figure:
    """Time × SLO group, coloured by burn-rate band; grey where there was no traffic."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    figure = _figure()
    axes = figure.add_subplot()
    column = f"burn_rate_{window}"
    if history.empty or column not in history.columns:
        axes.set_title(f"burn rate ({window}): no data", fontsize=10)
        return figure
    names = history["service"].astype(str) + "/" + history["slo"].astype(str)
    groups = history["group"].astype(str)
    rows = names.where(groups == "", names + " {" + groups + "}")
    table = (history.assign(row=rows).pivot_table(index="row", columns="timestamp",
                                                   values=column, aggfunc="first",
                                                   dropna=False, observed=True)
             .reindex(index=list(dict.fromkeys(rows))))
    times = pd.DatetimeIndex(table.columns)
    step = times[1] - times[0] if len(times) > 1 else pd.Timedelta(hours=1)
    edges = _dates(times.insert(0, times[0] - step))
    colours = ListedColormap(list(BAND_COLOURS)).with_extremes(bad=NO_TRAFFIC)
    raw = table.to_numpy(dtype=float)
    bands = np.ma.masked_where(np.isnan(raw), np.digitize(np.nan_to_num(raw), BURN_BANDS[1:-1]))
    norm = BoundaryNorm(np.arange(len(BAND_COLOURS) + 1) - 0.5, colours.N)
    mesh = axes.pcolormesh(edges, np.arange(len(table.index) + 1), bands, cmap=colours,
                           norm=norm, shading="flat")
    axes.set_yticks(np.arange(len(table.index)) + 0.5, labels=list(table.index), fontsize=7)
    axes.invert_yaxis()
    axes.xaxis_date()
    _time_axis(axes)
    axes.grid(False)
    bar = figure.colorbar(mesh, ax=axes, ticks=np.arange(len(BAND_COLOURS)), pad=0.01)
    bar.ax.set_yticklabels(band_labels(), fontsize=7)
    bar.set_label(f"burn rate ({window})", fontsize=8)
    axes.set_title(f"Burn rate over {window} across SLOs (grey: no traffic)", fontsize=10)
    return figure


def band_labels() -> list[str]:
    bounds = [f"{b:g}x" for b in BURN_BANDS[1:-1]]
    return [f"< {bounds[0]}", *(f"{lo}-{hi}" for lo, hi in pairwise(bounds)), f"> {bounds[-1]}"]


# --- files ----------------------------------------------------------------------------------


def chart_name(kind: str, slo: SLO) -> str:
    """`burn-down--checkout--checkout-success.png`: stable, filesystem-safe names."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{slo.service}--{slo.name}")
    return f"{kind}--{safe}.png"


def write_charts(out_dir: Path, services: Sequence[Service], ledger: pd.DataFrame,
                 changes: Iterable[Change] = (), step: str = "1h",
                 alerts: AlertsBySLO | None = None) -> list[Path]:
    """Every chart as a PNG of SIZE_PX under `out_dir`: a burn-down and an SLI chart per
    SLO, and one burn-rate heatmap. `alerts` defaults to the backtest of the SLOs' own
    tiers over `ledger`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = history(services, ledger, step)
    found = alerts_by_slo(backtests(services, ledger)) if alerts is None else alerts
    changes = list(changes)
    written: list[Path] = []
    for service in services:
        for slo in service.slos:
            for kind, figure in (
                    ("burn-down", burn_down(slo, frame, changes,
                                            found.get((slo.service, slo.name)))),
                    ("sli", sli_chart(slo, frame))):
                written.append(save(figure, out_dir / chart_name(kind, slo)))
    written.append(save(burn_rate_heatmap(frame), out_dir / "burn-rate-heatmap.png"))
    return written


def save(figure: Figure, path: Path) -> Path:
    """A PNG of exactly the figure's size (no tight bounding box), for stable layouts."""
    figure.savefig(path, format="png", dpi=DPI)
    return path


def png_bytes(figure: Figure) -> bytes:
    """The PNG `save` writes, in memory: a Slack upload needs the bytes, not a file."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()
