"""The budget report as a person (rich table), a program (JSON) or a spreadsheet (CSV) reads it."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from slo_engine.budget.accounting import BudgetStatus, iso_utc
from slo_engine.budget.backtest import BacktestResult
from slo_engine.spec.durations import describe_seconds

FORMATS = ("table", "json", "csv")
_STATUS_STYLE = {"healthy": "green", "burning": "yellow", "exhausted": "bold red",
                 "no_data": "dim"}


def _percent(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def _burn(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _row_name(service: str, slo: str, group: str) -> str:
    return f"{service}/{slo}" + (f" {{{group}}}" if group else "")


def table(rows: Sequence[BudgetStatus], width: int = 160) -> str:
    """The report for a terminal. The SLO cell folds rather than ends in "…": rows that
    differ only at the end of a long name or group would otherwise read the same."""
    view = Table(title="Error budgets", show_lines=False)
    names = [_row_name(row.service, row.slo, row.group) for row in rows]
    view.add_column("SLO", overflow="fold")
    for name, justify in (("objective", "right"), ("period", "right"),
                          ("SLI", "right"), ("budget left", "right"), ("burn 5m", "right"),
                          ("burn 1h", "right"), ("burn 6h", "right"), ("burn 3d", "right"),
                          ("exhausted in", "right"), ("status", "left"), ("firing", "left")):
        view.add_column(name, justify=justify)  # type: ignore[arg-type]
    for name, row in zip(names, rows, strict=True):
        style = _STATUS_STYLE[row.status]
        view.add_row(
            name, f"{row.objective:g}%", row.period + (" (partial)" if row.partial else ""),
            _percent(row.sli, 3), _percent(row.error_budget_remaining),
            *(_burn(row.burn_rates.get(w)) for w in ("5m", "1h", "6h", "3d")),
            describe_seconds(row.time_to_exhaustion_s), f"[{style}]{row.status}[/{style}]",
            ", ".join(row.firing) or "-",
        )
    console = Console(file=io.StringIO(), width=width, force_terminal=False, color_system=None)
    console.print(view)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    return str(output).rstrip()


def as_json(rows: Sequence[BudgetStatus]) -> str:
    return json.dumps([row.as_json() for row in rows], indent=2, sort_keys=False) + "\n"


def as_csv(rows: Sequence[BudgetStatus]) -> str:
    windows = list(dict.fromkeys(w for row in rows for w in row.burn_rates))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["service", "slo", "group", "objective", "period", "period_start", "at",
                     "total_events", "bad_events", "sli", "error_budget_remaining",
                     *(f"burn_rate_{w}" for w in windows), "time_to_exhaustion_s", "status",
                     "firing", "partial"])
    for row in rows:
        data = row.as_json()
        writer.writerow([row.service, row.slo, row.group, row.objective, row.period,
                         data["period_start"], data["at"], data["total_events"],
                         data["bad_events"], data["sli"], data["error_budget_remaining"],
                         *(data["burn_rates"].get(w) for w in windows),
                         data["time_to_exhaustion_s"], row.status, ";".join(row.firing),
                         row.partial])
    return out.getvalue()


def render(rows: Sequence[BudgetStatus], fmt: str) -> str:
    if fmt == "json":
        return as_json(rows)
    if fmt == "csv":
        return as_csv(rows)
    return table(rows) + "\n"


def _when(value: Any) -> str:
    if value is None or pd.isna(value):
        return "-"
    return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M")


def _span(value: Any) -> str:
    if value is None or pd.isna(value):
        return "-"
    return describe_seconds(pd.Timedelta(value).total_seconds())


def backtest_table(results: Sequence[BacktestResult], width: int = 160) -> str:
    """Every page and ticket a policy would have sent, then what each SLO's budget did."""
    alerts = Table(title="Alerts the policy would have sent")
    alerts.add_column("SLO", overflow="fold")
    for name in ("tier", "start", "end", "delay", "peak burn", "budget spent"):
        alerts.add_column(name)
    summary = Table(title="Summary")
    summary.add_column("SLO", overflow="fold")
    for name in ("pages", "tickets", "budget spent", "spent while nothing fired"):
        summary.add_column(name)
    for result in results:
        for row in result.alerts.itertuples(index=False):
            alerts.add_row(_row_name(result.service, result.slo, str(row.group)),
                           f"{row.severity} {row.long_window}/{row.short_window}",
                           _when(row.start), _when(row.end), _span(row.delay),
                           f"{row.peak_burn_rate:.1f}x", f"{row.budget_spent:.1%}")
        summary.add_row(f"{result.service}/{result.slo}", str(result.pages), str(result.tickets),
                        f"{result.budget_spent:.1%}", f"{result.unalerted_budget_spent:.1%}")
    console = Console(file=io.StringIO(), width=width, force_terminal=False, color_system=None)
    console.print(alerts)
    console.print(summary)
    return str(console.file.getvalue()).rstrip() + "\n"  # type: ignore[attr-defined]


def backtest_json(results: Sequence[BacktestResult]) -> str:
    documents = []
    for result in results:
        alerts = result.alerts.copy()
        for column in ("start", "end", "onset"):
            alerts[column] = [None if pd.isna(v) else iso_utc(pd.Timestamp(v).to_pydatetime())
                              for v in alerts[column]]
        alerts["delay"] = [None if pd.isna(v) else pd.Timedelta(v).total_seconds()
                           for v in alerts["delay"]]
        documents.append({
            "service": result.service, "slo": result.slo, "pages": result.pages,
            "tickets": result.tickets, "budget_spent": result.budget_spent,
            "unalerted_budget_spent": result.unalerted_budget_spent,
            "alerts": alerts.rename(columns={"delay": "delay_s"}).to_dict(orient="records"),
        })
    return json.dumps(documents, indent=2, default=str) + "\n"
