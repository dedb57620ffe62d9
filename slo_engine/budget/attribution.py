"""Budget attribution: how much error budget each incident spent, and the change before it.

For analysts and the report: which burns cost the budget, and which deploys, config changes
or flags preceded them. An incident is one burn of one SLO group. A burn usually fires
several tiers over overlapping intervals (the 1h page, then the 6h page, then the 1d
ticket), so the intervals of one SLO group that overlap or touch are merged into one
incident and its budget is counted once. Pure pandas over values; no clock, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from slo_engine.budget.backtest import BacktestResult
from slo_engine.changes.correlation import (
    DEFAULT_LOOKBACK_S,
    DEFAULT_SUSPECT_WINDOW_S,
    correlate,
    services_of,
)
from slo_engine.changes.events import DEFAULT_ROLLBACK_TEMPLATE, Change
from slo_engine.errors import LedgerError
from slo_engine.spec.model import SLO

INCIDENT_COLUMNS = (
    "service", "slo", "group", "severity", "tiers", "alerts", "onset", "start", "end",
    "duration", "bad_events", "budget_spent", "peak_burn_rate", "changes_before",
    "change_service", "change_kind", "change_version", "change_time", "change_author",
    "suspect", "rollback_command",
)
_REQUIRED = ("service", "slo", "start")
_NS = 1_000_000_000
_FOREVER = np.iinfo(np.int64).max  # the end of an interval still firing


def backtest_incidents(results: Iterable[BacktestResult]) -> pd.DataFrame:
    """The alert intervals of backtests as one frame, each row naming its service and SLO:
    the input `attribute_incidents` expects."""
    frames = [result.alerts.assign(service=result.service, slo=result.slo)
              for result in results if len(result.alerts)]
    if not frames:
        return pd.DataFrame(columns=["service", "slo", "group", "severity", "long_window",
                                     "short_window", "onset", "start", "end", "bad_events",
                                     "budget_spent", "peak_burn_rate"])
    return pd.concat(frames, ignore_index=True)


def attribute_incidents(intervals: pd.DataFrame, changes: Iterable[Change],
                        slos: Iterable[SLO] = (), ledger: pd.DataFrame | None = None, *,
                        lookback_s: float = DEFAULT_LOOKBACK_S,
                        suspect_window_s: float = DEFAULT_SUSPECT_WINDOW_S,
                        rollback_template: str = DEFAULT_ROLLBACK_TEMPLATE) -> pd.DataFrame:
    """One row per incident, oldest first, with the budget it spent and the change before it.

    `intervals`: alert intervals, as `backtest_incidents` makes of `BacktestResult.alerts`, or
    any frame with columns service, slo, start and optionally group ("" when absent),
    severity, long_window, short_window, onset (default: start), end (NaT: still firing),
    bad_events, budget_spent and peak_burn_rate. `changes`: the change events to attribute
    (from the state database, a JSON-lines file...). `slos`: the SLOs, for their
    `depends_on` services, error budget and period. `ledger`: the events, to count budgets
    exactly.

    Columns (INCIDENT_COLUMNS):
        service, slo, group   the SLO group that burnt
        severity              "page" if any merged interval was a page, else "ticket"
        tiers                 the tiers that fired, e.g. "page 1h/5m, ticket 1d/2h"
        alerts                how many alert intervals were merged into the incident
        onset, start, end     when the burn began (earliest onset), first fired, stopped
                              firing (latest end; NaT while still firing)
        duration              end − start: how long it kept someone alerted
        bad_events, budget_spent
                              with a ledger and the SLO: the bad events in buckets from the
                              onset (or the previous incident's end, if later) to the end, over
                              the error budget of the SLO's period ending at the last of them,
                              so no event counts for two incidents; otherwise the largest of
                              the merged intervals' own figures (each interval counts its own
                              events: the largest is a lower bound of their union, and summing
                              them would count the overlap two or three times)
        peak_burn_rate        the highest of the merged intervals'
        changes_before        changes of the SLO's service and its depends_on in
                              [onset − lookback, onset]
        change_*              the preceding change: the suspect (newest deploy, config or
                              feature_flag change within the suspect window), else the newest
                              change in the lookback; empty when there is none
        suspect               whether that change is the suspect
        rollback_command      the suspect's, given or derived from its previous_version
    """
    missing = [c for c in _REQUIRED if c not in intervals.columns]
    if missing:
        raise LedgerError(f"incidents: missing column(s) {', '.join(missing)}; give alert "
                          "intervals with service, slo, start (and group, severity, onset, "
                          "end, budget_spent), e.g. backtest_incidents(results)")
    by_slo = {(slo.service, slo.name): slo for slo in slos}
    known = list(changes)
    events = _LedgerIndex(ledger) if ledger is not None else None
    rows: list[dict[str, Any]] = []
    for incident in _merged(intervals):
        slo = by_slo.get((incident.service, incident.slo))
        if events is not None and slo is not None:
            incident.count_budget(events, slo)
        services = services_of(slo) if slo is not None else (incident.service,)
        correlation = correlate(known, incident.onset_time, lookback_s=lookback_s,
                                suspect_window_s=suspect_window_s,
                                rollback_template=rollback_template, services=services)
        preceding = correlation.suspect or next(iter(correlation.changes), None)
        rows.append({**incident.row(), "changes_before": len(correlation.changes),
                     **_change_columns(preceding),
                     "suspect": preceding is not None and preceding is correlation.suspect,
                     "rollback_command": correlation.rollback_command})
    frame = pd.DataFrame(rows, columns=list(INCIDENT_COLUMNS))
    for column in ("onset", "start", "end", "change_time"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    frame["duration"] = pd.to_timedelta(frame["duration"])
    frame["alerts"] = frame["alerts"].astype("int64")
    frame["suspect"] = frame["suspect"].astype(bool)
    for column in ("bad_events", "budget_spent", "peak_burn_rate"):
        frame[column] = frame[column].astype("float64")
    for column in ("severity", "change_service", "change_kind", "change_version",
                   "change_author", "rollback_command"):  # None, not NaN, where unknown
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return frame


def _change_columns(change: Change | None) -> dict[str, Any]:
    if change is None:
        return {"change_service": None, "change_kind": None, "change_version": None,
                "change_time": pd.NaT, "change_author": None}
    return {"change_service": change.service, "change_kind": change.kind,
            "change_version": change.version, "change_time": pd.Timestamp(change.time),
            "change_author": change.author}


@dataclass
class _Incident:
    """Alert intervals of one SLO group merged while they overlap or touch."""

    service: str
    slo: str
    group: str
    onset: int  # ns
    start: int
    end: int  # ns; _FOREVER while still firing
    severities: set[str] = field(default_factory=set)
    tiers: list[str] = field(default_factory=list)
    alerts: int = 0
    bad_events: float = math.nan
    budget_spent: float = math.nan
    peak_burn_rate: float = math.nan
    counted_from: int = 0  # ns: where its budget count starts (after the previous incident)

    def add(self, interval: Mapping[str, Any]) -> None:
        self.onset = min(self.onset, interval["onset"])
        self.end = max(self.end, interval["end"])
        self.alerts += 1
        if interval["severity"]:
            self.severities.add(interval["severity"])
        if interval["tier"] and interval["tier"] not in self.tiers:
            self.tiers.append(interval["tier"])
        for name in ("bad_events", "budget_spent", "peak_burn_rate"):
            value = interval[name]
            if not math.isnan(value):
                setattr(self, name, value if math.isnan(getattr(self, name))
                        else max(getattr(self, name), value))

    @property
    def onset_time(self) -> datetime:
        return _time(self.onset)

    def count_budget(self, events: _LedgerIndex, slo: SLO) -> None:
        counted = events.budget(slo, self.group, max(self.onset, self.counted_from), self.end)
        if counted is not None:
            self.bad_events, self.budget_spent = counted

    def row(self) -> dict[str, Any]:
        end = None if self.end == _FOREVER else _time(self.end)
        severity = "page" if "page" in self.severities else \
            next(iter(sorted(self.severities)), None)
        return {
            "service": self.service, "slo": self.slo, "group": self.group,
            "severity": severity, "tiers": ", ".join(self.tiers), "alerts": self.alerts,
            "onset": self.onset_time, "start": _time(self.start), "end": end,
            "duration": pd.NaT if end is None else pd.Timedelta(self.end - self.start, "ns"),
            "bad_events": self.bad_events, "budget_spent": self.budget_spent,
            "peak_burn_rate": self.peak_burn_rate,
        }


def _merged(intervals: pd.DataFrame) -> list[_Incident]:
    """Incidents of every SLO group in start order; each counts its budget from the previous
    incident's end at the earliest, so a long onset never reaches into the one before."""
    incidents: list[_Incident] = []
    current: _Incident | None = None
    for interval in sorted(_intervals(intervals),
                           key=lambda i: (i["key"], i["start"], i["end"])):
        if current is not None and (current.service, current.slo, current.group) == \
                interval["key"] and interval["start"] <= current.end:
            current.add(interval)
            continue
        previous_end = current.end if current is not None and \
            (current.service, current.slo, current.group) == interval["key"] else 0
        service, slo, group = interval["key"]
        current = _Incident(service, slo, group, onset=interval["onset"],
                            start=interval["start"], end=interval["end"],
                            counted_from=previous_end)
        current.add(interval)
        incidents.append(current)
    return sorted(incidents, key=lambda i: (i.start, i.service, i.slo, i.group))


def _intervals(frame: pd.DataFrame) -> Iterable[dict[str, Any]]:
    def times(column: str, default: pd.Series) -> np.ndarray[Any, Any]:
        values = pd.to_datetime(frame[column], utc=True) if column in frame.columns \
            else default
        return np.asarray(pd.DatetimeIndex(values).as_unit("ns").asi8, dtype=np.int64)

    def texts(column: str) -> list[str]:
        if column not in frame.columns:
            return [""] * len(frame)
        return ["" if pd.isna(v) else str(v) for v in frame[column]]

    def numbers(column: str) -> list[float]:
        if column not in frame.columns:
            return [math.nan] * len(frame)
        return [float(v) for v in pd.to_numeric(frame[column], errors="coerce")]

    start = pd.to_datetime(frame["start"], utc=True)
    if start.isna().any():
        raise LedgerError("incidents: column start has an empty value; every alert interval "
                          "has the time it began firing")
    nat = np.iinfo(np.int64).min
    starts = times("start", start)
    onsets = times("onset", start)
    onsets = np.where(onsets == nat, starts, np.minimum(onsets, starts))
    ends = times("end", pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]"))
    ends = np.where(ends == nat, _FOREVER, ends)
    severities = texts("severity")
    long_windows, short_windows = texts("long_window"), texts("short_window")
    bad, spent, peak = numbers("bad_events"), numbers("budget_spent"), numbers("peak_burn_rate")
    for i, (service, slo, group) in enumerate(zip(texts("service"), texts("slo"),
                                                  texts("group"), strict=True)):
        windows = f"{long_windows[i]}/{short_windows[i]}" if long_windows[i] else ""
        yield {"key": (service, slo, group), "onset": int(onsets[i]), "start": int(starts[i]),
               "end": int(ends[i]), "severity": severities[i],
               "tier": f"{severities[i]} {windows}".strip() if windows else severities[i],
               "bad_events": bad[i], "budget_spent": spent[i], "peak_burn_rate": peak[i]}


class _LedgerIndex:
    """Cumulative bad and total events of each ledger key: any span's sums in O(log n)."""

    def __init__(self, ledger: pd.DataFrame) -> None:
        missing = [c for c in ("timestamp", "slo", "total", "bad") if c not in ledger.columns]
        if missing:
            raise LedgerError(f"ledger: missing column(s) {', '.join(missing)}; a ledger has "
                              "columns timestamp, service, slo, group, total, bad")
        frame = ledger.assign(
            service=ledger["service"].astype(str) if "service" in ledger.columns else "",
            group=ledger["group"].astype(str) if "group" in ledger.columns else "",
            slo=ledger["slo"].astype(str))
        self._keys: dict[tuple[str, str, str], tuple[np.ndarray[Any, Any], np.ndarray[Any, Any],
                                                     np.ndarray[Any, Any]]] = {}
        for key, rows in frame.groupby(["service", "slo", "group"], sort=False):
            rows = rows.sort_values("timestamp", kind="stable")
            stamps = np.asarray(pd.DatetimeIndex(pd.to_datetime(rows["timestamp"], utc=True))
                                .as_unit("ns").asi8, dtype=np.int64)
            bad = np.concatenate(([0.0], np.cumsum(rows["bad"].to_numpy(dtype=float))))
            total = np.concatenate(([0.0], np.cumsum(rows["total"].to_numpy(dtype=float))))
            service, slo, group = (str(part) for part in key)
            self._keys[(service, slo, group)] = (stamps, bad, total)

    def budget(self, slo: SLO, group: str, since: int, end: int) -> tuple[float, float] | None:
        """Bad events in buckets at [since, end) and their share of the error budget of the
        period's events ending at the last of them; None when the ledger lacks the group."""
        found = self._keys.get((slo.service, slo.name, group)) or \
            self._keys.get(("", slo.name, group))
        if found is None:
            return None
        stamps, bad, total = found
        lo = int(np.searchsorted(stamps, since, side="left"))
        hi = int(np.searchsorted(stamps, end, side="left"))
        if hi <= lo:
            return 0.0, 0.0
        bad_events = float(bad[hi] - bad[lo])
        period_from = int(np.searchsorted(stamps, stamps[hi - 1] - int(slo.period_seconds * _NS),
                                          side="right"))
        period_total = float(total[hi] - total[period_from])
        spent = bad_events / (slo.error_budget * period_total) if bad_events > 0 else 0.0
        return bad_events, spent


def _time(ns: int) -> datetime:
    stamp: datetime = pd.Timestamp(ns, unit="ns", tz="UTC").to_pydatetime(warn=False)
    return stamp
