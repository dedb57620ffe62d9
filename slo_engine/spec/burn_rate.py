"""Burn-rate tiers and the one rule that decides whether a tier fires.

A tier is a multiwindow burn-rate alert (SRE Workbook, "Alerting on SLOs", table 5-8): it
fires while the error ratio over both its long and its short window, divided by the error
budget, is above its threshold and, with `min_events`, the long window holds at least that
many events. The default tiers are kept as data, the Workbook's for a 30d period; a shorter
or longer period gets the same tiers in its own time (`default_tiers`), and a threshold is
budget_fraction × period / long_window.

The generated PromQL, the engine's own evaluator, the backtest, the promtool-test replay and
the budget report all decide firing here, so none of them can disagree with what Prometheus
does with the rules. That is why the numbers are the ones the rules print (`number`: 14.4,
not 14.399999999999999) and why the comparisons are PromQL's: `>` for the burn, `>=` for the
events, and a NaN or missing value never fires (a comparison with NaN is false in PromQL and
drops the series; a window without samples returns nothing). The ratios and event counts
fed to the rule are each caller's own; where they must match Prometheus to the last digit,
`spec.promql` has its arithmetic (`divide`, `sum_over_time`, `avg_over_time`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from slo_engine.spec.durations import format_duration, parse_duration
from slo_engine.spec.promql import number

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class TierPolicy:
    severity: str
    long_window: str
    short_window: str
    budget_percent: float


# The SRE Workbook's tiers (table 5-8), for the period they were written for.
DEFAULT_TIERS: tuple[TierPolicy, ...] = (
    TierPolicy("page", "1h", "5m", 2),
    TierPolicy("page", "6h", "30m", 5),
    TierPolicy("ticket", "1d", "2h", 10),
    TierPolicy("ticket", "3d", "6h", 10),
)
DEFAULT_TIERS_PERIOD_SECONDS = 30 * 86400
# Windows are read from the 5m recorded rates: none can be shorter, all are whole minutes.
MIN_WINDOW_SECONDS = 300


def default_tiers(period_seconds: float) -> tuple[TierPolicy, ...]:
    """The Workbook's tiers in the period's own time: every window scaled by
    period / 30d, so each tier still spends the same share of the budget and fires at the
    same burn rate (14.4/6/3/1), never below 1x (Pyrra's approach; keeping the 30d windows
    would give 0.23x on 7d). Windows round down to whole minutes, which can only raise a
    threshold; a short window never goes below 5m, and a tier whose long window would not
    be longer than that is left out: the next tier, 6x longer, detects the same burns
    sooner in budget terms. A 30d period gets exactly DEFAULT_TIERS."""
    scale = period_seconds / DEFAULT_TIERS_PERIOD_SECONDS
    tiers: list[TierPolicy] = []
    for tier in DEFAULT_TIERS:
        long_seconds = _whole_minutes(parse_duration(tier.long_window) * scale)
        short_seconds = max(MIN_WINDOW_SECONDS,
                            _whole_minutes(parse_duration(tier.short_window) * scale))
        if long_seconds <= short_seconds:
            continue
        tiers.append(TierPolicy(tier.severity, format_duration(long_seconds),
                                format_duration(short_seconds), tier.budget_percent))
    return tuple(tiers)


def _whole_minutes(seconds: float) -> int:
    """`seconds` rounded down to a whole minute (a hair of float error is not a minute)."""
    return 60 * math.floor(seconds / 60 + 1e-9)


@dataclass(frozen=True)
class AlertTier:
    """A multiwindow burn-rate alert of one SLO, with its threshold already scaled."""

    severity: str
    long_window: str
    short_window: str
    long_seconds: float
    short_seconds: float
    budget_fraction: float
    burn_rate: float

    @property
    def name(self) -> str:
        return f"{self.severity} {self.long_window}/{self.short_window}"


def burn_rate_threshold(budget_percent: float, period_seconds: float, long_seconds: float) -> float:
    """Burn rate that spends `budget_percent` of the period's budget within the long window."""
    return budget_percent / 100 * period_seconds / long_seconds


def alert_tier(policy: TierPolicy, period_seconds: float) -> AlertTier:
    """A policy's tier with its threshold scaled to a period."""
    long_seconds = parse_duration(policy.long_window)
    return AlertTier(
        severity=policy.severity,
        long_window=policy.long_window,
        short_window=policy.short_window,
        long_seconds=long_seconds,
        short_seconds=parse_duration(policy.short_window),
        budget_fraction=policy.budget_percent / 100,
        burn_rate=burn_rate_threshold(policy.budget_percent, period_seconds, long_seconds),
    )


def tier_of(tiers: Iterable[AlertTier], severity: str, long_window: str,
            short_window: str) -> AlertTier | None:
    """The tier an alert reports by its labels; None when the spec no longer has it."""
    return next((t for t in tiers if (t.severity, t.long_window, t.short_window)
                 == (severity, long_window, short_window)), None)


def most_sensitive_tier(tiers: Iterable[AlertTier], severity: str) -> AlertTier | None:
    """The tier of `severity` with the lowest threshold: the first of them to fire."""
    return min((t for t in tiers if t.severity == severity), key=lambda t: t.burn_rate,
               default=None)


# --- the numbers as the rules print them ---------------------------------------------------


def threshold_literal(tier: AlertTier) -> str:
    """The tier's threshold as the rule writes it."""
    return number(tier.burn_rate)


def budget_literal(error_budget: float) -> str:
    """The error budget (1 − objective) as the rule divides by it."""
    return number(error_budget)


def rule_threshold(tier: AlertTier) -> float:
    """The threshold Prometheus compares with: the printed one, not the exact quotient."""
    return float(threshold_literal(tier))


def rule_budget(error_budget: float) -> float:
    """The budget Prometheus divides by: the printed one (1 − 0.999 prints as 0.001)."""
    return float(budget_literal(error_budget))


# --- the firing rule -----------------------------------------------------------------------


def burning(burn: float | None, threshold: float) -> bool:
    """One window's half of the rule: `burn > threshold`; None (no sample) or NaN never."""
    return burn is not None and burn > threshold


def enough_events(events: float | None, min_events: int) -> bool:
    """The `min_events` guard: `events >= min_events`, absent when min_events is 0."""
    return not min_events or (events is not None and events >= min_events)


def fires(burn_long: float | None, burn_short: float | None, threshold: float,
          events: float | None = None, min_events: int = 0) -> bool:
    """Whether a tier fires: both windows burning above its threshold and, with
    `min_events`, at least that many events in the long window."""
    return (burning(burn_long, threshold) and burning(burn_short, threshold)
            and enough_events(events, min_events))


def burning_array(burn: npt.NDArray[Any], threshold: float) -> Bools:
    """`burning` element-wise; NaN marks a missing sample and never burns."""
    with np.errstate(invalid="ignore"):
        result: Bools = np.greater(burn, threshold)
    return result


def enough_events_array(events: npt.NDArray[Any], min_events: int) -> Bools:
    """`enough_events` element-wise; NaN marks a missing sample and never has enough."""
    if not min_events:
        return np.ones(np.shape(events), dtype=bool)
    with np.errstate(invalid="ignore"):
        result: Bools = np.greater_equal(events, min_events)
    return result


def fires_array(burn_long: npt.NDArray[Any], burn_short: npt.NDArray[Any], threshold: float,
                events: npt.NDArray[Any] | None = None, min_events: int = 0) -> Bools:
    """`fires` element-wise: the same rule over arrays of burn rates (NaN = no sample)."""
    result = burning_array(burn_long, threshold) & burning_array(burn_short, threshold)
    if min_events:
        assert events is not None, "min_events needs the long window's events"
        result &= enough_events_array(events, min_events)
    return result
