"""The engine's own paging mode: every SLO's burn-rate tiers, read from the recorded series.

Prometheus already records the error ratio of every window the generated alerts compare.
Reading those series with one instant query per window (not per SLO), and applying each
alert's own condition — both windows above the tier's burn rate, and at least `min_events`
in the long window — pages exactly when the rules would, without Alertmanager, in a number
of queries that does not grow with the number of SLOs.

At 10,000 SLOs an evaluation reads 70,000 series: `BurnPlan` works out once, for the SLOs
loaded, what each SLO's tiers read, and `BurnReadings` indexes each answer once by SLO and
group, so the work of an evaluation grows with the number of series, not with that number
times the number of SLOs.

What becomes a page from one firing set to the next (transitions, the held unseen tiers,
one message per incident) is decided in `paging.dedup`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from datetime import datetime
from typing import Any, NamedTuple

from slo_engine.paging.burn_alert import BurnAlert, Severity
from slo_engine.paging.dedup import tier_id
from slo_engine.rules.compile import recorded_windows
from slo_engine.spec import conventions as names
from slo_engine.spec.burn_rate import AlertTier, fires, rule_budget, rule_threshold
from slo_engine.spec.durations import format_duration, parse_duration
from slo_engine.spec.model import QUERY_SLIS, SLO
from slo_engine.spec.promql import Matcher, Selector

Result = list[dict[str, Any]]  # an instant query's result, as Prometheus returns it
Group = tuple[tuple[str, str], ...]

# Samples of the slow group are SLOW_GROUP_INTERVAL apart: an instant query's default
# 5m lookback can fall just between two of them, so those windows look back two intervals.
SLOW_LOOKBACK = format_duration(2 * parse_duration(names.SLOW_GROUP_INTERVAL))


def burn_queries(slos: Iterable[SLO]) -> dict[str, str]:
    """The instant queries one evaluation needs, by name: one per recorded window, and one
    per long window whose event count some SLO's `min_events` checks."""
    fast: set[str] = set()
    slow: set[str] = set()
    counted: set[str] = set()
    for slo in slos:
        every, slowly = recorded_windows(slo)
        tier_windows = {w for t in slo.tiers for w in (t.long_window, t.short_window)}
        fast |= tier_windows & every
        slow |= tier_windows & slowly
        if slo.min_events:
            counted |= {t.long_window for t in slo.tiers}
    queries = {_ratio_name(w, False): names.error_ratio_metric(w) for w in _ordered(fast)}
    queries.update({_ratio_name(w, True):
                    f"last_over_time({names.error_ratio_metric(w)}[{SLOW_LOOKBACK}])"
                    for w in _ordered(slow)})
    queries.update({_events_name(w): f"avg_over_time({names.TOTAL_EVENTS_RATE}[{w}]) * "
                                     f"{parse_duration(w):g}" for w in _ordered(counted)})
    return queries


class BurnPlan:
    """How an evaluation of a set of SLOs reads the results of `burn_queries`: each SLO's
    tiers, the results they read, their thresholds and the SLO's budget, worked out once
    for the SLOs loaded rather than every evaluation."""

    def __init__(self, slos: Iterable[SLO]) -> None:
        slos = list(slos)
        self.queries = burn_queries(slos)
        self.by_pair = {(slo.service, slo.name): slo for slo in slos}
        self.grouped = _grouped(slos)
        reads: dict[tuple[AlertTier, ...], list[_TierRead]] = {}  # most SLOs share tiers
        budgets: dict[float, float] = {}
        self.reads: list[tuple[SLO, tuple[str, str], float, list[_TierRead]]] = []
        for slo in slos:
            if slo.tiers not in reads:
                reads[slo.tiers] = _tier_reads(slo)
            if slo.error_budget not in budgets:
                budgets[slo.error_budget] = rule_budget(slo.error_budget)
            self.reads.append((slo, (slo.service, slo.name), budgets[slo.error_budget],
                               reads[slo.tiers]))

    def readings(self, results: Mapping[str, Result]) -> BurnReadings:
        return BurnReadings(self, results)


class BurnReadings:
    """The results of `burn_queries` indexed once per evaluation by SLO and group, so each
    SLO's tiers look up their own series instead of scanning every SLO's: an evaluation
    costs the size of the results, not that times the number of SLOs."""

    def __init__(self, plan: BurnPlan, results: Mapping[str, Result]) -> None:
        self.plan = plan
        self._values = {name: _values(result, plan.by_pair, plan.grouped)
                        for name, result in results.items()}

    def value(self, name: str, slo: SLO) -> Mapping[Group, float]:
        """Each group's value of `slo` in the result of query `name` (none: empty)."""
        return self._values.get(name, {}).get((slo.service, slo.name), {})

    def firing(self, at: datetime) -> dict[str, BurnAlert]:
        """Every tier whose condition holds, by `tier_id`.

        A window without a sample (no traffic, rules not loaded) or a NaN ratio never
        fires, as in Prometheus, where the alert's expression then returns nothing.
        """
        firing: dict[str, BurnAlert] = {}
        values = self._values
        for slo, pair, budget, reads in self.plan.reads:
            for read in reads:
                long = values.get(read.long, {}).get(pair)
                if not long:
                    continue
                short = values.get(read.short, {}).get(pair, {})
                events = values.get(read.events, {}).get(pair, {})
                for group in sorted(long):
                    burn_long = _burn(long[group], budget)
                    burn_short = _burn(short.get(group), budget)
                    if not fires(burn_long, burn_short, read.threshold, events.get(group),
                                 slo.min_events):
                        continue
                    alert = BurnAlert(
                        service=slo.service, slo=slo.name, group=group,
                        severity=read.severity, long_window=read.tier.long_window,
                        short_window=read.tier.short_window, firing=True, at=at,
                        burn_rate_long=burn_long, burn_rate_short=burn_short, source="engine")
                    firing[tier_id(alert)] = alert
        return firing

    def unseen(self, previous: Mapping[str, BurnAlert]) -> set[str]:
        """The firing tiers (of `previous`, by `tier_id`) of loaded SLOs whose long or short
        window has no sample at all (a NaN is a sample).

        No sample says nothing about the burn: after a Prometheus outage longer than the 5m
        lookback the recorded series are missing until their rules run again, and
        resolving the tier then would page again a minute later.
        """
        unseen: set[str] = set()
        for key, alert in previous.items():
            slo = self.plan.by_pair.get((alert.service, alert.slo))
            if slo is None or not any(
                    (t.long_window, t.short_window) == (alert.long_window, alert.short_window)
                    and ("page" if t.severity == "page" else "ticket") == alert.severity
                    for t in slo.tiers):
                continue  # an SLO or tier no longer loaded resolves at once
            every, _ = recorded_windows(slo)
            if any(alert.group not in self.value(_ratio_name(window, window not in every), slo)
                   for window in (alert.long_window, alert.short_window)):
                unseen.add(key)
        return unseen


def firing_tiers(slos: Iterable[SLO], results: Mapping[str, Result],
                 at: datetime) -> dict[str, BurnAlert]:
    """Every tier whose condition holds in `results` (of `burn_queries`): see
    `BurnReadings.firing`."""
    return BurnPlan(slos).readings(results).firing(at)


def unseen_tiers(previous: Mapping[str, BurnAlert], slos: Iterable[SLO],
                 results: Mapping[str, Result]) -> set[str]:
    """The firing tiers of `previous` without samples in `results`: see
    `BurnReadings.unseen`."""
    return BurnPlan(slos).readings(results).unseen(previous) if previous else set()


def alert_burn_queries(slo: SLO, alert: BurnAlert) -> tuple[str, str]:
    """The instant queries of one alert's long and short window for its SLO group: a page
    from Alertmanager shows the burn rates the engine's own would."""
    every, _ = recorded_windows(slo)
    matchers = (Matcher(names.SLO_LABEL, "=", slo.name),
                Matcher(names.SERVICE_LABEL, "=", slo.service),
                *(Matcher(name, "=", value) for name, value in alert.group))

    def query(window: str) -> str:
        selector = Selector(names.error_ratio_metric(window), matchers).render()
        return selector if window in every else f"last_over_time({selector}[{SLOW_LOOKBACK}])"

    return query(alert.long_window), query(alert.short_window)


def burn_rate_in(result: Result, slo: SLO) -> float | None:
    """The burn rate an `alert_burn_queries` result shows (the worst series, if several)."""
    pair = (slo.service, slo.name)
    ratios = [v for groups in _values(result, {pair: slo}, _grouped([slo])).values()
              for v in groups.values() if v == v]
    return _burn(max(ratios), rule_budget(slo.error_budget)) if ratios else None


class _TierRead(NamedTuple):
    """Which results one tier reads, and its threshold: the same for every SLO with the same
    tiers, so a `BurnPlan` works them out once for each set of tiers."""

    tier: AlertTier
    long: str
    short: str
    events: str
    threshold: float
    severity: Severity


def _tier_reads(slo: SLO) -> list[_TierRead]:
    """`slo`'s tiers' reads; they depend on its tiers only (as `recorded_windows` does)."""
    every, _ = recorded_windows(slo)
    return [_TierRead(tier, _ratio_name(tier.long_window, tier.long_window not in every),
                      _ratio_name(tier.short_window, tier.short_window not in every),
                      _events_name(tier.long_window), rule_threshold(tier),
                      "page" if tier.severity == "page" else "ticket")
            for tier in slo.tiers]


def _ordered(windows: set[str]) -> list[str]:
    return sorted(windows, key=parse_duration)


def _ratio_name(window: str, slow: bool) -> str:
    return f"ratio{'-slow' if slow else ''}:{window}"


def _events_name(window: str) -> str:
    return f"events:{window}"


def _values(result: Result, by_pair: Mapping[tuple[str, str], SLO],
            grouped: Set[tuple[str, str]]) -> dict[tuple[str, str], dict[Group, float]]:
    """A query's values by (service, SLO), then group; series of SLOs not loaded are left
    out. An SLO not in `grouped` (of `_grouped`) has one group, (): no labels to sort."""
    values: dict[tuple[str, str], dict[Group, float]] = {}
    service_label, slo_label = names.SERVICE_LABEL, names.SLO_LABEL
    for item in result:
        labels = item.get("metric", {})
        pair = (labels.get(service_label, ""), labels.get(slo_label, ""))
        slo = by_pair.get(pair)
        if slo is None:
            continue
        try:
            value = float(item["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if pair in grouped:
            values.setdefault(pair, {})[BurnAlert.group_for(slo, labels)] = value
        else:
            values[pair] = {(): value}
    return values


def _grouped(slos: Iterable[SLO]) -> set[tuple[str, str]]:
    """The SLOs whose series may have groups: a group_by, or a query SLI's own labels."""
    return {(slo.service, slo.name) for slo in slos
            if slo.group_by or isinstance(slo.sli, QUERY_SLIS)}


def _burn(ratio: float | None, budget: float) -> float | None:
    """The burn rate as the rule computes it: over the budget as the rule writes it
    (`rule_budget`)."""
    return None if ratio is None or ratio != ratio else ratio / budget
