"""The web view's pages as plain values, built by pure functions from `app`'s snapshot: the
templates only lay them out, so what a page says is tested without a browser."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import pandas as pd

from slo_engine.app import ViewSnapshot, slo_view_path
from slo_engine.budget.accounting import BudgetStatus
from slo_engine.changes.correlation import services_of
from slo_engine.changes.events import Change
from slo_engine.release.gate import Release
from slo_engine.spec.durations import describe_seconds, parse_duration
from slo_engine.spec.model import SLO, budget_lifetime_seconds, detection_seconds

STATUSES = ("healthy", "burning", "exhausted", "no_data")
FILTERS = ("owner", "service", "status")
MAX_GROUP_CHARTS = 12  # a page of a few hundred groups' charts helps nobody


def percent(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value * 100:.{digits}f}%"


def burn(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2f}x"


def when(moment: datetime | pd.Timestamp | None) -> str:
    if moment is None or pd.isna(moment):
        return "-"
    return pd.Timestamp(moment).tz_convert("UTC").strftime("%Y-%m-%d %H:%M UTC")


# --- the SLO list ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SLORow:
    service: str
    slo: str
    group: str
    owner: str
    objective: float
    sli: float | None
    budget: float | None  # remaining share, signed
    burn_rates: dict[str, float | None]
    status: str
    firing: str
    href: str

    @property
    def budget_bar(self) -> int:
        """The bar's filled share in whole percent, 0 when the budget is spent."""
        return 0 if self.budget is None else max(0, min(100, round(self.budget * 100)))

    def key(self, column: str) -> Any:
        if column.startswith("burn_"):
            return self.burn_rates.get(column.removeprefix("burn_"))
        return getattr(self, column)


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    href: str  # the list sorted by this column, filters kept
    sorted: str  # "ascending", "descending" or "none" (aria-sort)


@dataclass(frozen=True)
class SLOList:
    rows: list[SLORow]
    columns: list[Column]
    windows: list[str]
    filters: dict[str, str]
    choices: dict[str, list[str]]  # the values each filter offers
    total: int


def slo_rows(snapshot: ViewSnapshot) -> list[SLORow]:
    owners = {(slo.service, slo.name): slo.owner for slo in snapshot.slos}
    return [SLORow(
        service=s.service, slo=s.slo, group=s.group, owner=owners.get((s.service, s.slo), ""),
        objective=s.objective, sli=s.sli, budget=s.error_budget_remaining,
        burn_rates=s.burn_rates, status=s.status, firing=", ".join(s.firing),
        href=slo_view_path(s.service, s.slo)) for s in snapshot.statuses]


def slo_list(rows: Sequence[SLORow], query: Mapping[str, str]) -> SLOList:
    """The list filtered by owner, service and status and sorted by `sort` (`order` asc or
    desc); the header's links keep the filters, so the URL says what is shown."""
    windows = sorted({w for row in rows for w in row.burn_rates}, key=parse_duration)
    keys = ["service", "slo", "owner", "objective", "sli", "budget",
            *(f"burn_{w}" for w in windows), "status", "firing"]
    filters = {name: query[name] for name in FILTERS if query.get(name)}
    shown = [row for row in rows
             if all(str(getattr(row, name)) == value for name, value in filters.items())]
    sort = query.get("sort", "")
    descending = query.get("order") == "desc"
    if sort in keys:
        present = [r for r in shown if r.key(sort) is not None]
        absent = [r for r in shown if r.key(sort) is None]  # unknowns last either way
        shown = sorted(present, key=lambda r: r.key(sort), reverse=descending) + absent
    labels = {"slo": "SLO", "sli": "SLI", "budget": "budget left", "firing": "firing tier",
              **{f"burn_{w}": f"burn {w}" for w in windows}}
    columns = []
    for key in keys:
        active = key == sort
        order = "asc" if not active or descending else "desc"
        columns.append(Column(key, labels.get(key, key), "/?" + urlencode(
            {**filters, "sort": key, "order": order}),
            ("descending" if descending else "ascending") if active else "none"))
    choices = {"owner": sorted({r.owner for r in rows}),
               "service": sorted({r.service for r in rows}), "status": list(STATUSES)}
    return SLOList(shown, columns, windows, filters, choices, len(rows))


# --- an SLO's page --------------------------------------------------------------------------


@dataclass(frozen=True)
class TierRow:
    severity: str
    windows: str
    threshold: str
    budget_spent: str
    outage_fires_in: str
    budget_gone_in: str


@dataclass(frozen=True)
class IncidentRow:
    service: str
    slo: str
    group: str
    severity: str
    tiers: str
    start: str
    end: str
    budget_spent: str
    change: str  # the change before the onset, described
    suspect: bool
    rollback_command: str
    href: str


@dataclass(frozen=True)
class GateView:
    decision: str  # ship, hold, freeze or undecided
    message: str
    reasons: list[str]


@dataclass(frozen=True)
class SLOPage:
    slo: SLO
    sli_kind: str
    groups: list[BudgetStatus]
    windows: list[str]
    tiers: list[TierRow]
    incidents: list[IncidentRow]
    gate: GateView
    changes: list[Change]  # of the SLO's service and its dependencies, in the period


def tier_rows(slo: SLO) -> list[TierRow]:
    """What `slo-engine explain` says of each tier: its threshold and how long a full outage
    takes to page."""
    rows = []
    for tier in slo.tiers:
        detect = detection_seconds(slo, tier)
        rows.append(TierRow(
            tier.severity, f"{tier.long_window}/{tier.short_window}", f"{tier.burn_rate:.4g}x",
            f"{tier.budget_fraction:.0%}",
            "never" if detect is None else describe_seconds(detect),
            describe_seconds(budget_lifetime_seconds(slo, tier))))
    return rows


def incident_rows(incidents: pd.DataFrame) -> list[IncidentRow]:
    """Newest first, as an on-call reads them."""
    rows = []
    for row in incidents.sort_values("start", ascending=False).to_dict("records"):
        change = " ".join(_text(part) for part in (
            row.get("change_kind"), row.get("change_service"), row.get("change_version"))
            if _text(part))
        if change and not pd.isna(row.get("change_time")):
            change += f" at {when(row['change_time'])}"
        if change and _text(row.get("change_author")):
            change += f" by {row['change_author']}"
        spent = row.get("budget_spent")
        rows.append(IncidentRow(
            service=str(row["service"]), slo=str(row["slo"]), group=str(row.get("group", "")),
            severity=str(row["severity"]), tiers=str(row["tiers"]), start=when(row["start"]),
            end="still firing" if pd.isna(row["end"]) else when(row["end"]),
            budget_spent=percent(None if pd.isna(spent) else float(spent)),
            change=change, suspect=bool(row.get("suspect")),
            rollback_command=_text(row.get("rollback_command")),
            href=slo_view_path(str(row["service"]), str(row["slo"]))))
    return rows


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else \
        str(value)


def gate_view(outcome: Release) -> GateView:
    return GateView(outcome.result.outcome, outcome.message,
                    [verdict.reason() for verdict in outcome.result.verdicts])


def slo_page(snapshot: ViewSnapshot, slo: SLO, incidents: pd.DataFrame,
             outcome: Release) -> SLOPage:
    groups = [s for s in snapshot.statuses if (s.service, s.slo) == (slo.service, slo.name)]
    windows = sorted({w for s in groups for w in s.burn_rates}, key=parse_duration)
    related = set(services_of(slo))
    return SLOPage(
        slo=slo, sli_kind=type(slo.sli).__name__.removesuffix("SLI").lower(), groups=groups,
        windows=windows, tiers=tier_rows(slo), incidents=incident_rows(incidents),
        gate=gate_view(outcome),
        changes=[c for c in reversed(snapshot.changes) if c.service in related])


def find_slo(snapshot: ViewSnapshot, service: str, name: str) -> SLO | None:
    return next((s for s in snapshot.slos if (s.service, s.name) == (service, name)), None)


# --- changes and incidents ------------------------------------------------------------------


def changes_timeline(snapshot: ViewSnapshot, service: str | None) -> list[Change]:
    """Newest first, of one service when asked."""
    return [c for c in reversed(snapshot.changes) if not service or c.service == service]
