"""Error-budget accounting over the event ledger: pure pandas, no I/O, `at` always given.

Budgets are counted in events (Occurrences): over a period, the budget is
(1 − objective) × total events, consumption is bad events over that budget, and the
remaining share is signed, going negative when overspent. Windows are sums of whole buckets
ending at `at`, so a quiet bucket adds 0 to both sides instead of poisoning a ratio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd

from slo_engine.budget.ledger import group_labels, key_codes
from slo_engine.spec.burn_rate import fires, rule_budget, rule_threshold
from slo_engine.spec.durations import parse_duration
from slo_engine.spec.model import SLO, Service

Calendar = Literal["week", "month"]
Status = Literal["healthy", "burning", "exhausted", "no_data"]
RATE_WINDOW = "1h"  # the "current" burn rate used for exhaustion forecasts
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class BudgetStatus:
    """One SLO (one group of a grouped SLO) at one instant: the report's row."""

    service: str
    slo: str
    group: str
    objective: float  # percent
    period: str
    period_start: datetime
    at: datetime
    total_events: float
    bad_events: float
    sli: float | None
    error_budget_events: float
    error_budget_consumed: float | None
    error_budget_remaining: float | None
    burn_rates: dict[str, float | None]
    time_to_exhaustion_s: float | None
    time_to_exhaustion_period_avg_s: float | None
    status: Status
    firing: tuple[str, ...]
    partial: bool
    labels: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The documented JSON contract of `slo-engine report --format json`."""
        return {
            "service": self.service,
            "slo": self.slo,
            "labels": self.labels,
            "objective": self.objective,
            "period": self.period,
            "period_start": iso_utc(self.period_start),
            "at": iso_utc(self.at),
            "total_events": _finite(self.total_events),
            "bad_events": _finite(self.bad_events),
            "sli": _finite(self.sli),
            "error_budget_events": _finite(self.error_budget_events),
            "error_budget_consumed": _finite(self.error_budget_consumed),
            "error_budget_remaining": _finite(self.error_budget_remaining),
            "burn_rates": {w: _finite(v) for w, v in self.burn_rates.items()},
            "time_to_exhaustion_s": _finite(self.time_to_exhaustion_s),
            "time_to_exhaustion_period_avg_s": _finite(self.time_to_exhaustion_period_avg_s),
            "status": self.status,
            "firing": list(self.firing),
            "partial": self.partial,
        }


def iso_utc(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def period_bounds(slo: SLO, at: datetime, calendar: Calendar | None = None) -> tuple[
        datetime, datetime]:
    """Start of the period `at` falls in, and the period's full end (for forecasts).

    Rolling periods end at `at`; calendar periods start at the week's Monday or the month's
    first day, 00:00 UTC, and reset there.
    """
    at = _utc(at)
    if calendar is None:
        return at - timedelta(seconds=slo.period_seconds), at
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if calendar == "week":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    start = day.replace(day=1)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("times inside the engine are timezone-aware UTC")
    return moment.astimezone(pd.Timestamp(0, tz="UTC").tzinfo)


class _Sums:
    """Cumulative sums of one group's buckets (in time order): any window in O(log n)."""

    def __init__(self, times: np.ndarray[Any, Any], total: np.ndarray[Any, Any],
                 bad: np.ndarray[Any, Any]) -> None:
        self.times = times
        self.total = np.concatenate(([0.0], np.cumsum(total)))
        self.bad = np.concatenate(([0.0], np.cumsum(bad)))

    @classmethod
    def of(cls, rows: pd.DataFrame) -> _Sums:
        return cls(_times(rows["timestamp"]), rows["total"].to_numpy(dtype=float),
                   rows["bad"].to_numpy(dtype=float))

    def between(self, start: datetime, end: datetime) -> tuple[float, float]:
        """Bad and total events in buckets ending in (start, end]."""
        lo = int(np.searchsorted(self.times, _ns(start), side="right"))
        hi = int(np.searchsorted(self.times, _ns(end), side="right"))
        return float(self.bad[hi] - self.bad[lo]), float(self.total[hi] - self.total[lo])

    def first(self) -> np.datetime64 | None:
        return self.times[0] if len(self.times) else None


def _times(stamps: pd.Series) -> np.ndarray[Any, Any]:
    """UTC instants as datetime64[ns], straight from the epoch integers (no tz copies)."""
    times: np.ndarray[Any, Any] = pd.DatetimeIndex(stamps).as_unit("ns").asi8.view(
        "datetime64[ns]")
    return times


def _ns(moment: datetime) -> np.datetime64:
    """Integer arithmetic on the datetime: a pandas Timestamp costs 20 µs, and a report of
    10,000 SLOs makes 20 of these per SLO."""
    if isinstance(moment, pd.Timestamp):
        return np.datetime64(moment.value, "ns")
    return np.datetime64((moment - _EPOCH) // timedelta(microseconds=1) * 1000, "ns")


def burn_rate(slo: SLO, bad: float, total: float) -> float | None:
    return None if total <= 0 else bad / total / slo.error_budget


def status_of(slo: SLO, group: str, rows: pd.DataFrame, at: datetime,
              calendar: Calendar | None = None) -> BudgetStatus:
    """The budget of one group of one SLO at `at`, from its ledger rows (in time order)."""
    return _status(slo, group, _Sums.of(rows), _utc(at), calendar)


def _status(slo: SLO, group: str, sums: _Sums, at: datetime,
            calendar: Calendar | None) -> BudgetStatus:
    start, full_end = period_bounds(slo, at, calendar)
    period_seconds = (full_end - start).total_seconds()
    bad, total = sums.between(start, at)
    windows = dict.fromkeys((*slo.windows, RATE_WINDOW))
    events = {w: sums.between(at - timedelta(seconds=parse_duration(w)), at) for w in windows}
    burn_rates = {w: burn_rate(slo, *events[w]) for w in windows}
    firing = tuple(
        tier.name for tier in slo.tiers
        if fires(_rule_burn(slo, *events[tier.long_window]),
                 _rule_burn(slo, *events[tier.short_window]), rule_threshold(tier),
                 events[tier.long_window][1], slo.min_events)
    )
    budget_events = slo.error_budget * total
    consumed = bad / budget_events if budget_events > 0 else (None if total <= 0 else 0.0)
    remaining = None if consumed is None else 1 - consumed
    current = burn_rates[RATE_WINDOW]
    first = sums.first()
    partial = first is None or bool(first > _ns(start + timedelta(minutes=5)))
    # The windows may hold events the period does not (a calendar period at its first
    # instant): a firing tier is then "burning", never "no_data" beside it.
    if remaining is not None and remaining <= 0:
        status: Status = "exhausted"
    elif firing or (current or 0) > 1:
        status = "burning"
    elif total <= 0:
        status = "no_data"
    else:
        status = "healthy"
    return BudgetStatus(
        service=slo.service, slo=slo.name, group=group, labels=group_labels(group),
        objective=slo.objective * 100, period=calendar or slo.period, period_start=start, at=at,
        total_events=total, bad_events=bad, sli=None if total <= 0 else 1 - bad / total,
        error_budget_events=budget_events, error_budget_consumed=consumed,
        error_budget_remaining=remaining, burn_rates={w: burn_rates[w] for w in windows},
        time_to_exhaustion_s=_exhaustion(remaining, current, period_seconds, burning_only=True),
        time_to_exhaustion_period_avg_s=_exhaustion(remaining, consumed, period_seconds,
                                                    burning_only=False),
        status=status, firing=firing, partial=partial,
    )


def _rule_burn(slo: SLO, bad: float, total: float) -> float | None:
    """The burn rate as the rules compute it, over the budget as they print it, so the
    report says "firing" exactly when Prometheus would on the same sums."""
    return None if total <= 0 else bad / total / rule_budget(slo.error_budget)


def _exhaustion(remaining: float | None, burn: float | None, period_seconds: float, *,
                burning_only: bool) -> float | None:
    """Seconds until the remaining budget is gone at `burn` (R × period / burn).

    At or below 1x the budget is earned back as fast as it is spent, so the current-rate
    forecast is None then; an exhausted budget has 0 left.
    """
    if remaining is None or burn is None:
        return None
    if remaining <= 0:
        return 0.0
    if burn <= (1 if burning_only else 0):
        return None
    return remaining * period_seconds / burn


def report(services: list[Service], ledger: pd.DataFrame, at: datetime,
           calendar: Calendar | None = None) -> list[BudgetStatus]:
    """Every SLO and every group of it that has data, in spec order; no data is a row too.

    Rows are ordered by key once (a stable argsort of integer codes keeps each key's time
    order) and every group reads slices of the same arrays: no frame per group, so 1,000
    SLOs over 30 days of 5m buckets take a fraction of a second.
    """
    at = _utc(at)
    by_key = _key_slices(ledger)
    by_slo: dict[tuple[str, str], list[str]] = {}
    for service_name, slo_name, group_name in by_key:
        by_slo.setdefault((service_name, slo_name), []).append(group_name)
    empty = _Sums(np.array([], dtype="datetime64[ns]"), np.array([]), np.array([]))
    rows: list[BudgetStatus] = []
    for service in services:
        for slo in service.slos:
            groups = by_slo.get((slo.service, slo.name)) or by_slo.get(("", slo.name)) or []
            if not groups:
                rows.append(_status(slo, "", empty, at, calendar))
                continue
            for group in sorted(groups):
                key = (slo.service, slo.name, group)
                if key not in by_key:
                    key = ("", slo.name, group)
                rows.append(_status(slo, group, by_key[key], at, calendar))
    return rows


def _key_slices(ledger: pd.DataFrame) -> dict[tuple[str, str, str], _Sums]:
    if ledger.empty:
        return {}
    key, codes = key_codes(ledger)
    order = np.argsort(key, kind="stable")
    key = key[order]
    times = _times(ledger["timestamp"])[order]
    total = ledger["total"].to_numpy(dtype=float)[order]
    bad = ledger["bad"].to_numpy(dtype=float)[order]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(key)) + 1))
    ends = np.append(starts[1:], len(key))
    slices: dict[tuple[str, str, str], _Sums] = {}
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        row = int(order[start])
        name = (str(codes[0][row]), str(codes[1][row]), str(codes[2][row]))
        slices[name] = _Sums(times[start:end], total[start:end], bad[start:end])
    return slices


def slo_rows(slo: SLO, ledger: pd.DataFrame) -> pd.DataFrame:
    """The ledger rows of one SLO (matching rows without a service column too)."""
    mask = (ledger["slo"] == slo.name) & ledger["service"].isin([slo.service, ""])
    return ledger[mask]


def over_time(slo: SLO, ledger: pd.DataFrame, *, step: str = "1h",
              windows: tuple[str, ...] | None = None) -> pd.DataFrame:
    """SLI, burn rates and budget remaining over time, one row per group per step: the
    frame analysts plot. Columns: timestamp, service, slo, group, sli, error_ratio_<w> and
    burn_rate_<w> for each window, error_budget_remaining (rolling period)."""
    windows = windows or (*slo.windows,)
    frames: list[pd.DataFrame] = []
    for group, rows in slo_rows(slo, ledger).groupby("group", sort=True, observed=True):
        sums = _Sums.of(rows)
        times = pd.date_range(rows["timestamp"].min().ceil(step), rows["timestamp"].max(),
                              freq=step, tz="UTC")
        data: dict[str, Any] = {"timestamp": times, "service": slo.service, "slo": slo.name,
                                "group": group}
        period = timedelta(seconds=slo.period_seconds)
        budget = np.array([_remaining(slo, *sums.between(t - period, t)) for t in times])
        period_sli = np.array([_sli(*sums.between(t - period, t)) for t in times])
        data["sli"] = period_sli
        for w in windows:
            span = timedelta(seconds=parse_duration(w))
            ratios = np.array([_ratio(*sums.between(t - span, t)) for t in times])
            data[f"error_ratio_{w}"] = ratios
            data[f"burn_rate_{w}"] = ratios / slo.error_budget
        data["error_budget_remaining"] = budget
        frames.append(pd.DataFrame(data))
    if not frames:
        return pd.DataFrame(columns=["timestamp", "service", "slo", "group", "sli",
                                     "error_budget_remaining"])
    return pd.concat(frames, ignore_index=True)


def _ratio(bad: float, total: float) -> float:
    return bad / total if total > 0 else math.nan


def _sli(bad: float, total: float) -> float:
    return 1 - bad / total if total > 0 else math.nan


def _remaining(slo: SLO, bad: float, total: float) -> float:
    return 1 - bad / (slo.error_budget * total) if total > 0 else math.nan


def budget_spent_per_day(slo: SLO, ledger: pd.DataFrame) -> pd.DataFrame:
    """Budget spent each UTC day, as a share of the period's budget at that day's traffic:
    which days cost the most. Columns: date, service, slo, group, total, bad,
    budget_spent."""
    rows = slo_rows(slo, ledger)
    if rows.empty:
        return pd.DataFrame(columns=["date", "service", "slo", "group", "total", "bad",
                                     "budget_spent"])
    days = rows.assign(date=rows["timestamp"].dt.floor("D"))
    daily = days.groupby(["group", "date"], as_index=False, observed=True)[
        ["total", "bad"]].sum()
    periods_per_day = slo.period_seconds / 86400
    allowed = slo.error_budget * daily["total"] * periods_per_day
    daily["budget_spent"] = np.where(allowed > 0, daily["bad"] / allowed.where(allowed > 0, 1),
                                     0.0)
    daily.insert(1, "service", slo.service)
    daily.insert(2, "slo", slo.name)
    return daily[["date", "service", "slo", "group", "total", "bad", "budget_spent"]]
