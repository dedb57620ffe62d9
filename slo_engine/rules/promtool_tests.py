"""promtool unit tests generated from the same model as the rules.

Each SLO gets scenarios (steady healthy traffic, a 100% outage and its recovery, a slow burn,
a small burn that must not alert, no data at all). The expected alerts at every change of
the firing set come from `simulate`, which replays the generated rules' arithmetic minute by
minute; promtool then proves that Prometheus evaluating the real rules agrees, to the minute.
"""

from __future__ import annotations

import bisect
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import product
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

import numpy as np

from slo_engine.rules.compile import VALUE_TEMPLATE, burn_alert, data_absent_alert, le_matcher
from slo_engine.rules.files import TESTS_DIR, header, rules_file_name
from slo_engine.spec import conventions as names
from slo_engine.spec.burn_rate import (
    AlertTier,
    burning,
    enough_events,
    fires_array,
    rule_budget,
    rule_threshold,
)
from slo_engine.spec.durations import format_duration
from slo_engine.spec.model import SLO, LatencySLI, QuerySLI, Service
from slo_engine.spec.promql import (
    Matcher,
    Selector,
    SelectorSyntaxError,
    avg_over_time,
    divide,
    number,
    parse_selector,
    sum_over_time,
)

EVENTS_PER_MINUTE = 100_000


Counts = np.ndarray[Any, np.dtype[np.int64]]


@dataclass(frozen=True, eq=False)
class Traffic:
    """Events per minute, from minute 1 on (counters read 0 at minute 0)."""

    total: Counts
    bad: Counts

    @property
    def minutes(self) -> int:
        return len(self.total)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    traffic: Traffic | None  # None: no series at all


@dataclass(frozen=True, eq=False)
class Series:
    """An input series with its role in the SLI, and its counter values per minute."""

    labels: tuple[tuple[str, str], ...]
    role: str  # bad | good | total | other
    values: Counts

    def promql(self) -> str:
        metric = dict(self.labels)["__name__"]
        rest = [Matcher(k, "=", v) for k, v in self.labels if k != "__name__"]
        return Selector(metric, tuple(rest)).render()


class NotDerivable(Exception):
    """The SLI's raw series cannot be synthesised (arbitrary PromQL); only no-data is tested."""


# --- synthesising input series from selectors -------------------------------------------


def _regex_examples(pattern: str) -> list[str]:
    """A few strings the (anchored) regex matches, for labels selected with =~."""
    try:
        parsed = sre_parse.parse(pattern)
    except re.error:
        return []
    examples = {_example(parsed, branch) for branch in range(3)}
    return sorted(e for e in examples if e is not None and re.fullmatch(pattern, e))


def _example(parsed: Any, branch: int) -> str | None:
    out: list[str] = []
    for op, arg in parsed:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(arg))
        elif name == "NOT_LITERAL":
            out.append("a" if chr(arg) != "a" else "b")
        elif name == "ANY":
            out.append("x")
        elif name == "IN":
            char = _in_example(arg)
            if char is None:
                return None
            out.append(char)
        elif name == "BRANCH":
            options = arg[1]
            sub = _example(options[min(branch, len(options) - 1)], branch)
            if sub is None:
                return None
            out.append(sub)
        elif name == "SUBPATTERN":
            sub = _example(arg[-1], branch)
            if sub is None:
                return None
            out.append(sub)
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, _, item = arg
            sub = _example(item, branch)
            if sub is None:
                return None
            out.append(sub * max(low, 1 if branch else low))
        elif name == "AT":
            continue
        else:
            return None
    return "".join(out)


def _in_example(items: Any) -> str | None:
    for op, arg in items:
        name = str(op)
        if name == "NEGATE":
            return None
        if name == "LITERAL":
            return chr(arg)
        if name == "RANGE":
            return chr(arg[0])
        if name == "CATEGORY":
            return {"CATEGORY_DIGIT": "0", "CATEGORY_WORD": "a", "CATEGORY_SPACE": " "}.get(
                str(arg))
    return None


def _candidates(label: str, selectors: Sequence[Selector]) -> list[str]:
    values = [""]
    for selector in selectors:
        for m in selector.matchers:
            if m.name != label:
                continue
            if m.op == "=":
                values.append(m.value)
            elif m.op == "=~":
                values.extend(_regex_examples(m.value))
    values.extend(["ok", "slo_engine_test"])
    return list(dict.fromkeys(values))


def _matches(selector: Selector, metric: str, labels: dict[str, str]) -> bool:
    if selector.metric != metric:
        return False
    return all(m.matches(labels.get(m.name, "")) for m in selector.matchers)


def labels_for(metric: str, required: Sequence[Selector], excluded: Sequence[Selector],
               fixed: dict[str, str]) -> dict[str, str]:
    """Labels of a `metric` series that every `required` selector matches and no `excluded`
    one does; `fixed` labels (group_by values, le) are kept as given."""
    names_ = sorted({m.name for s in (*required, *excluded) for m in s.matchers} - set(fixed))
    options = [_candidates(name, [*required, *excluded]) for name in names_]
    for combination in product(*options):
        labels = {**fixed, **{k: v for k, v in zip(names_, combination, strict=True) if v}}
        if all(_matches(s, metric, labels) for s in required) and not any(
                _matches(s, metric, labels) for s in excluded):
            return labels
        if len(options) and math.prod(len(o) for o in options) > 20_000:
            break
    raise NotDerivable(f"no label values satisfy {[s.render() for s in required]}")


_SUM_RATE = re.compile(
    r"^\s*sum\s*(?:by\s*\(\s*\))?\s*\(\s*rate\s*\(\s*(?P<selector>.+?)\s*\[\s*\{\{window\}\}\s*\]"
    r"\s*\)\s*\)\s*$"
)


def _query_selector(query: str) -> Selector:
    match = _SUM_RATE.match(query)
    if not match:
        raise NotDerivable("the query is not sum(rate(<selector>[{{window}}]))")
    try:
        return parse_selector(match.group("selector"))
    except SelectorSyntaxError as error:
        raise NotDerivable(str(error)) from None


def input_series(slo: SLO, traffic: Traffic) -> list[Series]:
    """Counters that make the SLI see exactly `traffic` (one group when group_by is set)."""
    fixed = {label: "slo-engine-test" for label in slo.group_by}
    good_counts = traffic.total - traffic.bad
    sli = slo.sli
    if isinstance(sli, LatencySLI):
        le = le_matcher(sli.threshold_seconds)
        le_value = le.value if le.op == "=" else le.value.split("|")[0]
        base = labels_for(sli.selector.metric, [sli.selector], [], fixed)
        return [
            _series({**base, "le": le_value, "__name__": sli.bucket.metric}, "good", good_counts),
            _series({**base, "le": "+Inf", "__name__": sli.bucket.metric}, "other", traffic.total),
            _series({**base, "__name__": sli.count.metric}, "total", traffic.total),
        ]
    if isinstance(sli, QuerySLI):
        total = _query_selector(sli.total)
        bad = _query_selector(sli.bad) if sli.bad is not None else None
        good = _query_selector(sli.good) if sli.good is not None else None
    else:
        total, bad, good = sli.total, sli.bad, sli.good
    part, part_role, part_counts = (bad, "bad", traffic.bad) if bad is not None else \
        (good, "good", good_counts)
    assert part is not None
    rest_role, rest_counts = ("good", good_counts) if part_role == "bad" else ("bad", traffic.bad)
    if part.metric == total.metric:
        # One counter split by a label: the part matches both selectors, the rest only total.
        part_labels = labels_for(total.metric, [part, total], [], fixed)
        rest_labels = labels_for(total.metric, [total], [part], fixed)
        return [_series({**part_labels, "__name__": total.metric}, part_role, part_counts),
                _series({**rest_labels, "__name__": total.metric}, rest_role, rest_counts)]
    part_labels = labels_for(part.metric, [part], [total], fixed)
    total_labels = labels_for(total.metric, [total], [part], fixed)
    return [_series({**part_labels, "__name__": part.metric}, part_role, part_counts),
            _series({**total_labels, "__name__": total.metric}, "total", traffic.total)]


def _series(labels: dict[str, str], role: str, per_minute: Counts) -> Series:
    values = np.concatenate(([0], np.cumsum(per_minute, dtype=np.int64)))
    ordered = (("__name__", labels["__name__"]),
               *sorted((k, v) for k, v in labels.items() if k != "__name__"))
    return Series(ordered, role, values)


def expanding(values: Sequence[int] | Counts) -> str:
    """promtool's expanding notation for a counter: runs of equal steps as `a+bxn`.

    Greedy from the left: a run takes every following value its first step predicts; the
    next value starts a new run. Runs of equal steps are found with numpy, so a counter of
    thousands of minutes costs a few runs' worth of Python.
    """
    array = np.asarray(values, dtype=np.int64)
    steps = np.diff(array)
    run_ends = [*(np.flatnonzero(np.diff(steps)) + 1).tolist(), len(steps)]  # exclusive
    parts: list[str] = []
    i = 0
    while i < len(array):
        if i >= len(steps):
            parts.append(str(array[i]))
            break
        end = run_ends[bisect.bisect_right(run_ends, i)]
        parts.append(f"{array[i]}+{steps[i]}x{end - i}")
        i = end + 1
    return " ".join(parts)


# --- replaying the generated rules --------------------------------------------------------


def _rates5m(counter: Counts) -> np.ndarray[Any, np.dtype[np.float64]]:
    """rate(x[5m]) at every minute for a counter sampled each minute from 0. In Prometheus
    2.42 a counter that starts at 0 extrapolates to zero, so the extrapolation factor is 1;
    the increase is multiplied by that factor over the range (1/300), not divided by 300,
    which differs in the last digit (720 × (1/300) is 2.4000000000000004). Minute 0 has one
    sample and no rate (NaN here)."""
    values = np.asarray(counter, dtype=np.float64)
    rates = np.full(len(values), np.nan)
    earlier = values[np.maximum(np.arange(len(values)) - 5, 0)]
    rates[1:] = (values[1:] - earlier[1:]) * (1.0 / 300)
    return rates



@dataclass(frozen=True)
class Replay:
    """What the generated rules compute, minute by minute, for one group of one SLO."""

    slo: SLO
    total_rate: np.ndarray[Any, np.dtype[np.float64]]  # NaN where not recorded (minute 0)
    bad_rate: np.ndarray[Any, np.dtype[np.float64]]

    @classmethod
    def of(cls, slo: SLO, series: Sequence[Series], minutes: int) -> Replay:
        rates = {s.role: _rates5m(s.values[:minutes + 1]) for s in series}
        # One counter split in two by a label: sum() adds both series.
        total = rates["total"] if "total" in rates else rates["bad"] + rates["good"]
        subtract = isinstance(slo.sli, LatencySLI) or getattr(slo.sli, "good", None) is not None
        bad = np.maximum(total - rates["good"], 0.0) if subtract else rates["bad"]
        return cls(slo, total, bad)

    def _span(self, window_seconds: float, t: int) -> slice:
        return slice(max(1, t - int(window_seconds // 60)), t + 1)

    def error_ratio(self, window_seconds: float, t: int) -> float:
        """As Prometheus computes it: sum_over_time's compensated sum in time order."""
        if int(window_seconds // 60) == 5:
            return divide(float(self.bad_rate[t]), float(self.total_rate[t])) if t else math.nan
        span = self._span(window_seconds, t)
        if span.start >= span.stop:
            return math.nan
        return divide(sum_over_time(self.bad_rate[span].tolist()),
                      sum_over_time(self.total_rate[span].tolist()))

    def events(self, window_seconds: float, t: int) -> float:
        """avg_over_time(total[w]) * w, with Prometheus 2.42's incremental mean."""
        span = self.total_rate[self._span(window_seconds, t)].tolist()
        return avg_over_time(span) * float(number(window_seconds))

    def burn(self, tier: AlertTier, window_seconds: float, t: int) -> float:
        return self.error_ratio(window_seconds, t) / rule_budget(self.slo.error_budget)

    def firing(self, tier: AlertTier, t: int) -> bool:
        """Exactly as Prometheus decides: its sums and means, in float64."""
        threshold, min_events = rule_threshold(tier), self.slo.min_events
        # `fires`, its parts short-circuited: the events' running mean is slow to replay.
        return (burning(self.burn(tier, tier.long_seconds, t), threshold)
                and burning(self.burn(tier, tier.short_seconds, t), threshold)
                and enough_events(self.events(tier.long_seconds, t) if min_events else None,
                                  min_events))

    def firing_matrix(self) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """Firing state of every tier at every minute: [tier, minute].

        Prefix sums decide every minute at once; the few minutes where a value is within
        rounding distance of its threshold are decided again by the exact `firing`.
        """
        bad = np.nan_to_num(self.bad_rate)
        total = np.nan_to_num(self.total_rate)
        budget = rule_budget(self.slo.error_budget)
        minutes = np.arange(len(bad))
        result = np.zeros((len(self.slo.tiers), len(bad)), dtype=bool)
        for row, tier in enumerate(self.slo.tiers):
            threshold = rule_threshold(tier)
            long, short = (_window_ratio(bad, total, int(seconds // 60), minutes) / budget
                           for seconds in (tier.long_seconds, tier.short_seconds))
            with np.errstate(invalid="ignore"):
                close = (np.abs(long - threshold) <= 1e-9 * max(1.0, threshold)) \
                    | (np.abs(short - threshold) <= 1e-9 * max(1.0, threshold))
            events = None
            if self.slo.min_events:
                window = int(tier.long_seconds // 60)
                events = _window_mean(total, window, minutes) * tier.long_seconds
                with np.errstate(invalid="ignore"):
                    close |= np.abs(events - self.slo.min_events) <= 1e-6 * self.slo.min_events
            firing = fires_array(long, short, threshold, events, self.slo.min_events)
            for t in np.flatnonzero(close):
                firing[t] = self.firing(tier, int(t))
            result[row] = firing
        return result

    def firing_tiers(self, t: int) -> tuple[AlertTier, ...]:
        return tuple(tier for tier in self.slo.tiers if self.firing(tier, t))


def _window_mean(values: np.ndarray[Any, np.dtype[np.float64]], window: int,
                 minutes: np.ndarray[Any, np.dtype[np.int_]]) -> np.ndarray[Any, Any]:
    sums = np.concatenate(([0.0], np.cumsum(values)))
    start = np.maximum(minutes - window, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean: np.ndarray[Any, Any] = (sums[minutes + 1] - sums[start]) / (minutes + 1 - start)
    return mean


def _window_ratio(bad: np.ndarray[Any, np.dtype[np.float64]],
                  total: np.ndarray[Any, np.dtype[np.float64]], window: int,
                  minutes: np.ndarray[Any, np.dtype[np.int_]]) -> np.ndarray[Any, Any]:
    with np.errstate(invalid="ignore", divide="ignore"):
        if window == 5:
            ratio = bad / total
        else:
            bad_sums, total_sums = np.concatenate(([0.0], np.cumsum(bad))), \
                np.concatenate(([0.0], np.cumsum(total)))
            start = np.maximum(minutes - window, 0)
            ratio = (bad_sums[minutes + 1] - bad_sums[start]) / \
                (total_sums[minutes + 1] - total_sums[start])
    ratio[0] = np.nan  # no recorded sample yet
    return ratio


# --- scenarios ------------------------------------------------------------------------------


def _steady(minutes: int, burn: float, budget: float) -> tuple[Counts, Counts]:
    bad = round(EVENTS_PER_MINUTE * min(burn * budget, 1.0))
    return (np.full(minutes, EVENTS_PER_MINUTE, dtype=np.int64),
            np.full(minutes, bad, dtype=np.int64))


def _concat(*parts: tuple[Counts, Counts]) -> Traffic:
    return Traffic(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


def scenarios(slo: SLO) -> list[Scenario]:
    """The situations every SLO's alerts are proven against."""
    budget = slo.error_budget
    longest = max((int(t.long_seconds // 60) for t in slo.tiers), default=60)
    slowest_short = max((int(t.short_seconds // 60) for t in slo.tiers), default=5)
    page = [t.burn_rate for t in slo.tiers if t.severity == "page"]
    ticket = [t.burn_rate for t in slo.tiers if t.severity == "ticket"]
    found: list[Scenario] = [Scenario(
        "no data", "no series at all: only the data-absent alert fires, after 10m", None)]
    if not slo.tiers:
        return found
    lowest = min(t.burn_rate for t in slo.tiers)
    # At a constant error ratio every window holds that ratio however full it is, so six
    # hours say as much as three days, at a fraction of promtool's time.
    found.append(Scenario(
        "steady healthy traffic",
        f"errors at a steady {number(lowest / 2)}x burn, the slowest tier's half: no alert",
        _concat(_steady(min(longest, 360) + 10, lowest / 2, budget))))
    # Page tiers only need their own windows of clean history; a day keeps promtool quick.
    clean = min(longest, 1440)
    outage = 30
    found.append(Scenario(
        "100% outage and recovery",
        f"healthy for {format_duration(clean * 60)}, every request failing for {outage}m, then "
        "healthy again: alerts fire when the windows say and clear once the short windows pass",
        _concat(_steady(clean, 0, budget), _steady(outage, 1 / budget, budget),
                _steady(slowest_short + 60, 0, budget))))
    if page and ticket and min(ticket) < min(page):
        between = math.sqrt(min(ticket) * min(page))
        rate = 2.0 if min(ticket) < 2 < min(page) else round(between, 1) \
            if min(ticket) < round(between, 1) < min(page) else between
        slow = [t for t in slo.tiers if t.burn_rate < rate]
        detect = max(int(t.budget_fraction * slo.period_seconds / rate / 60) for t in slow)
        found.append(Scenario(
            "slow burn",
            f"a steady {number(rate)}x burn after a clean {format_duration(longest * 60)}: "
            f"tickets within budget_fraction x period / {number(rate)}, never a page",
            _concat(_steady(longest, 0, budget), _steady(detect + 60, rate, budget))))
    smallest = min(t.budget_fraction for t in slo.tiers)
    burst_burn = min(1 / budget, 3 * max(t.burn_rate for t in slo.tiers))
    burst = max(1, int(0.75 * smallest * slo.period_seconds / 60 / burst_burn))
    found.append(Scenario(
        "small burn",
        f"a {number(burst_burn)}x burst for {burst}m spends "
        f"{number(75 * smallest)}% of the budget, under every tier's share: no alert",
        _concat(_steady(clean, 0, budget), _steady(burst, burst_burn, budget),
                _steady(slowest_short + 60, 0, budget))))
    return found


# --- promtool test files --------------------------------------------------------------------


def _alert_labels(slo: SLO, series: Sequence[Series], tier: AlertTier) -> dict[str, str]:
    labels = dict(slo.labels)
    any_series = dict(series[0].labels) if series else {}
    labels.update({k: any_series[k] for k in slo.group_by if k in any_series})
    labels.update(burn_alert(slo, tier).labels)
    return labels


# Firing tiers (index, $value as printed) at each checked minute.
Timeline = tuple[tuple[int, tuple[tuple[int, str], ...]], ...]
_TIMELINES: dict[tuple[Any, ...], Timeline] = {}


def expected_timeline(slo: SLO, scenario: Scenario, series: Sequence[Series]) -> Timeline:
    """The firing tiers at every minute where they change (and the minute before).

    Only the numbers matter here (budget, period, tiers, guard, how the SLI combines its
    series), so SLOs of the same shape share one replay: an organisation's thousand SLOs
    have a handful of shapes.
    """
    assert scenario.traffic is not None
    subtract = isinstance(slo.sli, LatencySLI) or getattr(slo.sli, "good", None) is not None
    key = (slo.error_budget, slo.period_seconds, slo.tiers, slo.min_events, subtract,
           tuple(s.role for s in series), scenario.name)
    if key not in _TIMELINES:
        replay = Replay.of(slo, series, scenario.traffic.minutes)
        matrix = replay.firing_matrix()
        changed = np.flatnonzero((matrix[:, 1:] != matrix[:, :-1]).any(axis=0)) + 1
        times = {0, scenario.traffic.minutes}
        for t in changed:
            times.update((int(t) - 1, int(t)))
        _TIMELINES[key] = tuple(
            (t, tuple((i, f"{replay.burn(tier, tier.long_seconds, t):.1f}")
                      for i, tier in enumerate(slo.tiers) if replay.firing(tier, t)))
            for t in sorted(times))
    return _TIMELINES[key]


def _burn_alerts(slo: SLO, series: Sequence[Series],
                 firing: tuple[tuple[int, str], ...]) -> list[dict[str, Any]]:
    alerts = []
    for index, value in firing:
        tier = slo.tiers[index]
        annotations = {k: v.replace(VALUE_TEMPLATE, value)
                       for k, v in burn_alert(slo, tier).annotations}
        alerts.append({"exp_labels": _alert_labels(slo, series, tier),
                       "exp_annotations": annotations})
    return alerts


def _eval_time(minutes: int) -> str:
    return format_duration(minutes * 60) if minutes else "0m"


def test_group(slo: SLO, scenario: Scenario) -> dict[str, Any]:
    if scenario.traffic is None:
        absent = data_absent_alert(slo)
        fired = [{"exp_labels": dict(absent.labels), "exp_annotations": dict(absent.annotations)}]
        checks: list[dict[str, Any]] = [
            {"eval_time": "9m", "alertname": names.DATA_ABSENT_ALERT, "exp_alerts": []},
            {"eval_time": "10m", "alertname": names.DATA_ABSENT_ALERT,
             "exp_alerts": fired if slo.data_absent else []},
            {"eval_time": "10m", "alertname": slo.alerting.name, "exp_alerts": []},
        ]
        return {"name": f"{slo.name}: {scenario.name}", "interval": "1m",
                "input_series": [{"series": "slo_engine_unrelated_total", "values": "0+1x10"}],
                "alert_rule_test": checks}
    series = input_series(slo, scenario.traffic)
    checks = [{"eval_time": _eval_time(t), "alertname": slo.alerting.name,
               "exp_alerts": _burn_alerts(slo, series, firing)}
              for t, firing in expected_timeline(slo, scenario, series)]
    checks.append({"eval_time": _eval_time(scenario.traffic.minutes),
                   "alertname": names.DATA_ABSENT_ALERT, "exp_alerts": []})
    return {
        "name": f"{slo.name}: {scenario.name}",
        "interval": "1m",
        "input_series": [{"series": s.promql(), "values": expanding(s.values)} for s in series],
        "alert_rule_test": checks,
    }


def test_file(slo: SLO, service_slos: Sequence[SLO] = ()) -> str:
    groups: list[dict[str, Any]] = []
    notes: list[str] = []
    for scenario in scenarios(slo):
        try:
            groups.append(test_group(slo, scenario))
            notes.append(f"# - {scenario.name}: {scenario.description}")
        except NotDerivable as why:
            notes.append(f"# - {scenario.name}: not generated ({why}); write this case by hand")
    body = {
        "rule_files": [f"../{rules_file_name(slo.service)}"],
        "evaluation_interval": "1m",
        # promtool evaluates every group at every step, in random order unless told: the
        # slow group reads what the fast one records, as it does in Prometheus.
        "group_eval_order": [name for other in (service_slos or (slo,)) for name in (
            names.alert_group_name(other.service, other.name),
            names.slow_group_name(other.service, other.name))],
        "tests": groups,
    }
    intro = (f"# promtool unit tests of {slo.service}/{slo.name}; run: promtool test rules "
             "<this file>\n# Expected alerts replay the rules' arithmetic minute by minute "
             "(slo_engine.rules.promtool_tests). The body is JSON, which is YAML.\n"
             + "\n".join(notes) + "\n")
    return header(slo.source_file) + intro + _json_lines(body)


def _json_lines(body: dict[str, Any]) -> str:
    """JSON with one input series or one check per line: diffable, and written by the C
    encoder (an indented json.dumps falls back to Python, 10x slower for 1,000 SLOs)."""
    dump = json.dumps
    groups = []
    for group in body["tests"]:
        head = {k: v for k, v in group.items() if k not in ("input_series", "alert_rule_test")}
        series = ",\n   ".join(dump(s) for s in group["input_series"])
        checks = ",\n   ".join(dump(c) for c in group["alert_rule_test"])
        groups.append(f' {dump(head)[:-1]},\n  "input_series": [\n   {series}\n  ],\n'
                      f'  "alert_rule_test": [\n   {checks}\n  ]}}')
    tests = ",\n".join(groups)
    return (f'{{"rule_files": {dump(body["rule_files"])}, '
            f'"evaluation_interval": {dump(body["evaluation_interval"])},\n'
            f'"group_eval_order": {dump(body["group_eval_order"])},\n'
            f'"tests": [\n{tests}\n]}}\n')


def test_file_name(slo: SLO) -> str:
    return f"{TESTS_DIR}/{slo.service}--{slo.name}.test.yml"


def rule_test_files(services: Iterable[Service]) -> dict[str, str]:
    return {test_file_name(slo): test_file(slo, s.slos) for s in services for slo in s.slos}
