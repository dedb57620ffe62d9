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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

import numpy as np
import yaml

from slo_engine.rules.compile import (
    VALUE_TEMPLATE,
    alert_labels,
    burn_alert,
    compile_service,
    data_absent_alert,
    le_matcher,
    tiled_minutes,
)
from slo_engine.rules.files import TESTS_DIR, header, render, rules_file_name
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
from slo_engine.spec.model import SLO, BoolGaugeSLI, ErrorRatioSLI, LatencySLI, QuerySLI, Service
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
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's when PyYAML has it


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
    role: str  # bad | good | total | other | gauge (a 0..1 gauge: floats, NaN = no sample)
    values: np.ndarray[Any, Any]

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


def _top_level_divide(query: str) -> tuple[str, str] | None:
    """`a / b` split at its only division outside brackets and strings, or None."""
    depth, quote, found = 0, "", []
    for i, char in enumerate(query):
        if quote:
            quote = "" if char == quote and query[i - 1] != "\\" else quote
        elif char in "\"'`":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "/" and depth == 0:
            found.append(i)
    if len(found) != 1:
        return None
    return query[:found[0]], query[found[0] + 1:]


def _ratio_selectors(query: str) -> tuple[Selector, Selector]:
    """The bad and total counters of an error-ratio query of the common shape
    `sum(rate(A[{{window}}])) / sum(rate(B[{{window}}]))`; other shapes are not derivable."""
    parts = _top_level_divide(query)
    if parts is None:
        raise NotDerivable("the query is not sum(rate(<selector>[{{window}}])) / "
                           "sum(rate(<selector>[{{window}}]))")
    return _query_selector(parts[0]), _query_selector(parts[1])


def _query_selector(query: str) -> Selector:
    match = _SUM_RATE.match(query)
    if not match:
        raise NotDerivable("the query is not sum(rate(<selector>[{{window}}]))")
    try:
        return parse_selector(match.group("selector"))
    except SelectorSyntaxError as error:
        raise NotDerivable(str(error)) from None


GROUP_VALUE = "slo-engine-test"


def _literal_prefix(pattern: str) -> str:
    """The regex's leading literal characters (`/api` of `/api.*`), escapes resolved."""
    prefix = []
    try:
        parsed = sre_parse.parse(pattern)
    except re.error:
        return ""
    for op, arg in parsed:
        if str(op) != "LITERAL":
            break
        prefix.append(chr(arg))
    return "".join(prefix)


def _value_candidates(matchers: Sequence[Matcher]) -> list[str]:
    """Values worth trying for a label: those the matchers name or their regexes produce,
    then the plain test value (which suits negative matchers)."""
    values: list[str] = []
    for m in matchers:
        if m.op == "=":
            values.append(m.value)
        elif m.op == "=~":
            prefix = _literal_prefix(m.value)
            values.extend(_regex_examples(m.value))
            values.extend(v for v in (prefix, f"{prefix}x", f"{prefix}/x", f"{prefix}0") if v)
    values.extend([GROUP_VALUE, "x", "0"])
    return list(dict.fromkeys(values))


def _sli_selectors(slo: SLO) -> list[Selector]:
    sli = slo.sli
    if isinstance(sli, LatencySLI):
        return [sli.selector]
    if isinstance(sli, QuerySLI | ErrorRatioSLI):
        return []
    if isinstance(sli, BoolGaugeSLI):
        return [sli.metric]
    return [s for s in (sli.total, sli.bad, sli.good) if s is not None]


def group_value(label: str, selectors: Sequence[Selector]) -> str:
    """A `group_by` label's value that every selector's matchers on that label accept: the
    test's one group must be selected by the rules, or nothing is recorded."""
    matchers = [m for s in selectors for m in s.matchers if m.name == label]
    for value in _value_candidates(matchers):
        if value and all(m.matches(value) for m in matchers):
            return value
    rendered = ", ".join(m.render() for m in matchers)
    raise NotDerivable(f"no value of the group_by label {label!r} found that satisfies "
                       f"{rendered} (tried the regex's examples and literal prefix)")


def input_series(slo: SLO, traffic: Traffic) -> list[Series]:
    """Counters that make the SLI see exactly `traffic` (one group when group_by is set)."""
    selectors = _sli_selectors(slo)
    fixed = {label: group_value(label, selectors) for label in slo.group_by}
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
    if isinstance(sli, BoolGaugeSLI):
        # One sample a minute, its value the minute's good share; none at minute 0, where
        # the counters of the other kinds read 0 and record no rate either.
        labels = labels_for(sli.metric.metric, [sli.metric], [], fixed)
        share = 1 - traffic.bad / traffic.total
        return [_gauge({**labels, "__name__": sli.metric.metric}, share)]
    total: Selector
    bad: Selector | None
    good: Selector | None = None
    if isinstance(sli, ErrorRatioSLI):
        bad, total = _ratio_selectors(sli.query)
    elif isinstance(sli, QuerySLI):
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


def _gauge(labels: dict[str, str], per_minute: np.ndarray[Any, Any]) -> Series:
    values = np.concatenate(([np.nan], np.asarray(per_minute, dtype=np.float64)))
    ordered = (("__name__", labels["__name__"]),
               *sorted((k, v) for k, v in labels.items() if k != "__name__"))
    return Series(ordered, "gauge", values)


def gauge_notation(values: np.ndarray[Any, Any]) -> str:
    """promtool values of a gauge: `_` for no sample, runs of one value as `v+0xn` (exact:
    a non-zero step would add rounding at every value)."""
    parts: list[str] = []
    i = 0
    while i < len(values):
        value = float(values[i])
        end = i + 1
        while end < len(values) and (float(values[end]) == value or
                                     (math.isnan(value) and math.isnan(float(values[end])))):
            end += 1
        if math.isnan(value):
            parts.extend(["_"] * (end - i))
        else:
            parts.append(repr(value) if end - i == 1 else f"{value!r}+0x{end - i - 1}")
        i = end
    return " ".join(parts)


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



def _gauge_rates(values: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any],
                                                       np.ndarray[Any, Any]]:
    """The recorded total and bad rates of a 0/1 gauge sampled each minute (NaN: none),
    as the rules compute them: count_over_time and sum_over_time over the 5m range (both
    ends included in Prometheus 2.42), count − sum clamped at 0, each over 300."""
    total = np.full(len(values), np.nan)
    bad = np.full(len(values), np.nan)
    for t in range(len(values)):
        window = [float(v) for v in values[max(0, t - 5):t + 1] if not math.isnan(v)]
        if window:
            count = float(len(window))
            total[t] = count / 300
            bad[t] = max(count - sum_over_time(window), 0.0) / 300
    return total, bad


@dataclass(frozen=True)
class Replay:
    """What the generated rules compute, minute by minute, for one group of one SLO."""

    slo: SLO
    total_rate: np.ndarray[Any, np.dtype[np.float64]]  # NaN where not recorded (minute 0)
    bad_rate: np.ndarray[Any, np.dtype[np.float64]]

    @classmethod
    def of(cls, slo: SLO, series: Sequence[Series], minutes: int) -> Replay:
        if isinstance(slo.sli, BoolGaugeSLI):
            return cls(slo, *_gauge_rates(series[0].values[:minutes + 1]))
        rates = {s.role: _rates5m(s.values[:minutes + 1]) for s in series}
        if isinstance(slo.sli, ErrorRatioSLI):
            # sum(rate(A)) / sum(rate(B)), B being both series when one counter is split.
            denominator = rates["total"] if "total" in rates else rates["bad"] + rates["good"]
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = rates["bad"] / denominator
            ratio[~(ratio >= 0)] = np.nan
            return cls(slo, np.where(np.isnan(ratio), np.nan, 1.0), np.minimum(ratio, 1.0))
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
        tiled = tiled_minutes(window_seconds)
        if tiled is not None:
            return self._tiled_ratio(tiled, t)
        span = self._span(window_seconds, t)
        if span.start >= span.stop:
            return math.nan
        recorded = ~np.isnan(self.total_rate[span])  # no sample where nothing was recorded
        return divide(sum_over_time(self.bad_rate[span][recorded].tolist()),
                      sum_over_time(self.total_rate[span][recorded].tolist()))

    def _tiled_ratio(self, tiled: int, t: int) -> float:
        """compile.window_ratio_expr: the sum of the 5m rates in the closed range [t − 3m −
        tiled, t − 3m] (0 when it holds none), plus 5 times the rate at t (none: no value)."""
        if not t or math.isnan(self.total_rate[t]):
            return math.nan
        end = t - names.EDGE_MINUTES
        span = slice(max(1, end - tiled), max(1, end + 1))
        recorded = ~np.isnan(self.total_rate[span])
        bad = sum_over_time(self.bad_rate[span][recorded].tolist()) + 5 * float(self.bad_rate[t])
        total = sum_over_time(self.total_rate[span][recorded].tolist()) \
            + 5 * float(self.total_rate[t])
        return divide(bad, total)

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
            long, short = (_window_ratio(bad, total, int(seconds // 60), minutes,
                                         ~np.isnan(self.total_rate)) / budget
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
                  minutes: np.ndarray[Any, np.dtype[np.int_]],
                  recorded: np.ndarray[Any, np.dtype[np.bool_]]) -> np.ndarray[Any, Any]:
    """Every minute's error ratio over `window` minutes, from prefix sums (`recorded`: the
    minutes with a 5m rate; `bad` and `total` are 0 at the others)."""
    tiled = tiled_minutes(window * 60)
    with np.errstate(invalid="ignore", divide="ignore"):
        if window == 5:
            ratio = bad / total
        elif tiled is not None:
            bad_sums, total_sums = np.concatenate(([0.0], np.cumsum(bad))), \
                np.concatenate(([0.0], np.cumsum(total)))
            stop = np.maximum(minutes - names.EDGE_MINUTES + 1, 0)
            start = np.minimum(np.maximum(minutes - names.EDGE_MINUTES - tiled, 0), stop)
            ratio = (bad_sums[stop] - bad_sums[start] + 5 * bad) / \
                (total_sums[stop] - total_sums[start] + 5 * total)
            ratio[~recorded] = np.nan
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


def _minutes(seconds: float) -> int:
    return int(seconds // 60)


def _round_up(minutes: float, step: int = 30) -> int:
    return int(math.ceil(minutes / step) * step)


def slow_burn(slo: SLO, clean: int) -> Scenario | None:
    """A steady burn between the slowest ticket and the slowest page, after `clean` minutes
    of clean history; None when no ticket tier is slower than every page tier.

    With `clean` at least the longest window, the tickets fire when
    budget_fraction x period / rate says (the detection claim, on the replay); the generated
    tests use an hour, so a window longer than the history reads all of it and the tickets
    fire sooner, still minute by minute as the replay predicts.
    """
    page = [t.burn_rate for t in slo.tiers if t.severity == "page"]
    ticket = [t.burn_rate for t in slo.tiers if t.severity == "ticket"]
    if not (page and ticket and min(ticket) < min(page)):
        return None
    between = math.sqrt(min(ticket) * min(page))
    rate = 2.0 if min(ticket) < 2 < min(page) else round(between, 1) \
        if min(ticket) < round(between, 1) < min(page) else between
    slow = [t for t in slo.tiers if t.burn_rate < rate]
    full = max(int(t.budget_fraction * slo.period_seconds / rate / 60) for t in slow)
    # A window longer than the history holds the clean minutes and d minutes of burn, so its
    # burn rate, rate x d / (clean + d), crosses a threshold at threshold x clean / (rate -
    # threshold); with full windows it is budget_fraction x period / rate, whichever first.
    partial = max(math.ceil(t.burn_rate * clean / (rate - t.burn_rate)) for t in slow)
    burn = min(full, partial) + 15
    return Scenario(
        "slow burn",
        f"a steady {number(rate)}x burn after a clean {format_duration(clean * 60)}: "
        "the tickets under that rate fire, never a page",
        _concat(_steady(clean, 0, slo.error_budget), _steady(burn, rate, slo.error_budget)))


def small_burn(slo: SLO, quiet: Sequence[AlertTier] | None = None) -> Scenario:
    """A burst spending 75% of the smallest tier's share of the budget, after enough clean
    history that none of the `quiet` tiers (default: all) sees it above its threshold,
    however much of its window the history fills (with a fifth to spare).

    With every tier quiet the history runs to most of a day: the no-alert claim, on the
    replay. The generated tests keep the pages quiet, a few hours; a ticket whose window is
    longer than the history reads all of it and may fire, to the minute the replay says.
    """
    budget = slo.error_budget
    smallest = min(t.budget_fraction for t in slo.tiers)
    burst_burn = min(1 / budget, 3 * max(t.burn_rate for t in slo.tiers))
    burst = max(1, int(0.75 * smallest * slo.period_seconds / 60 / burst_burn))
    spent = burst * burst_burn
    tiers = slo.tiers if quiet is None else quiet
    history = _round_up(max(min(_minutes(t.long_seconds), 1.2 * spent / t.burn_rate)
                            for t in tiers))
    claim = "no alert" if set(tiers) == set(slo.tiers) else \
        f"no {' or '.join(sorted({t.severity for t in tiers}))}"
    return Scenario(
        "small burn",
        f"a {number(burst_burn)}x burst for {burst}m after a clean "
        f"{format_duration(history * 60)} spends {number(75 * smallest)}% of the budget, "
        f"under every tier's share: {claim}",
        _concat(_steady(history, 0, budget), _steady(burst, burst_burn, budget),
                _steady(15, 0, budget)))


def scenarios(slo: SLO) -> list[Scenario]:
    """The situations every SLO's alerts are proven against.

    promtool evaluates every rule at every minute of a scenario, so a scenario's length is
    its cost: each is as long as the claim it makes needs, not as long as the longest window.
    """
    budget = slo.error_budget
    found: list[Scenario] = [Scenario(
        "no data", "no series at all: only the data-absent alert fires, after 10m", None)]
    if not slo.tiers:
        return found
    longest = max(_minutes(t.long_seconds) for t in slo.tiers)
    pages = [t for t in slo.tiers if t.severity == "page"]
    lowest = min(t.burn_rate for t in slo.tiers)
    # At a constant error ratio every window holds that ratio however full it is, so an
    # hour says as much as three days.
    found.append(Scenario(
        "steady healthy traffic",
        f"errors at a steady {number(lowest / 2)}x burn, the slowest tier's half: no alert",
        _concat(_steady(min(longest, 60) + 10, lowest / 2, budget))))
    # An hour of clean history: the fastest page tier's window is full, so it fires when it
    # would in production; longer windows read all of the history and fire sooner, as the
    # replay says. The recovery lasts until the page tiers' short windows have passed.
    clean = min(longest, 60)
    recovery = max((_minutes(t.short_seconds) for t in pages), default=30) + 10
    outage = 30
    found.append(Scenario(
        "100% outage and recovery",
        f"healthy for {format_duration(clean * 60)}, every request failing for {outage}m, then "
        f"healthy for {recovery}m: alerts fire when the windows say, pages clear once their "
        "short windows pass",
        _concat(_steady(clean, 0, budget), _steady(outage, 1 / budget, budget),
                _steady(recovery, 0, budget))))
    burn = slow_burn(slo, min(longest, 60))
    if burn is not None:
        found.append(burn)
    found.append(small_burn(slo, pages or slo.tiers))
    return found


# --- promtool test files --------------------------------------------------------------------


def _alert_labels(slo: SLO, series: Sequence[Series], tier: AlertTier) -> dict[str, str]:
    labels = dict(slo.labels)
    any_series = dict(series[0].labels) if series else {}
    labels.update({k: any_series[k] for k in slo.group_by if k in any_series})
    labels.update(alert_labels(slo, tier))
    return labels


# Firing tiers (index, $value as printed) at each checked minute.
Timeline = tuple[tuple[int, tuple[tuple[int, str], ...]], ...]
_TIMELINES: dict[tuple[Any, ...], Timeline] = {}


def expected_timeline(slo: SLO, scenario: Scenario, series: Sequence[Series]) -> Timeline:
    """The firing tiers at every minute where they change (and the minute before), and
    where the traffic changes and 5 minutes later (when the 5m rates have caught up): the
    minutes an alert that the replay does not expect would most likely fire.

    Only the numbers matter here (budget, period, tiers, guard, how the SLI combines its
    series), so SLOs of the same shape share one replay: an organisation's thousand SLOs
    have a handful of shapes.
    """
    assert scenario.traffic is not None
    subtract = isinstance(slo.sli, LatencySLI) or getattr(slo.sli, "good", None) is not None
    key = (slo.error_budget, slo.period_seconds, slo.tiers, slo.min_events, subtract,
           type(slo.sli).__name__, tuple(s.role for s in series), scenario.name)
    if key not in _TIMELINES:
        replay = Replay.of(slo, series, scenario.traffic.minutes)
        matrix = replay.firing_matrix()
        changed = np.flatnonzero((matrix[:, 1:] != matrix[:, :-1]).any(axis=0)) + 1
        minutes = scenario.traffic.minutes
        times = {0, minutes}
        for t in changed:
            times.update((int(t) - 1, int(t)))
        traffic = scenario.traffic
        shifts = np.flatnonzero((np.diff(traffic.total) != 0) | (np.diff(traffic.bad) != 0))
        for t in shifts + 1:  # minute t+1 is the first sample of the new traffic
            times.update(m for m in (int(t) + 1, int(t) + 6) if m <= minutes)
        _TIMELINES[key] = tuple(
            (t, tuple((i, f"{replay.burn(tier, tier.long_seconds, t):.1f}")
                      for i, tier in enumerate(slo.tiers) if replay.firing(tier, t)))
            for t in sorted(times))
    return _TIMELINES[key]


def _burn_alerts(slo: SLO, series: Sequence[Series], firing: tuple[tuple[int, str], ...],
                 tier_annotations: Sequence[tuple[tuple[str, str], ...]] = ()
                 ) -> list[dict[str, Any]]:
    """The expected alerts; `tier_annotations` (each tier's, in order) spares building
    each tier's alert again at every check."""
    alerts = []
    for index, value in firing:
        tier = slo.tiers[index]
        template = tier_annotations[index] if tier_annotations else \
            burn_alert(slo, tier).annotations
        annotations = {k: v.replace(VALUE_TEMPLATE, value) for k, v in template}
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
    tier_annotations = [burn_alert(slo, tier).annotations for tier in slo.tiers]
    checks = [{"eval_time": _eval_time(t), "alertname": slo.alerting.name,
               "exp_alerts": _burn_alerts(slo, series, firing, tier_annotations)}
              for t, firing in expected_timeline(slo, scenario, series)]
    checks.append({"eval_time": _eval_time(scenario.traffic.minutes),
                   "alertname": names.DATA_ABSENT_ALERT, "exp_alerts": []})
    return {
        "name": f"{slo.name}: {scenario.name}",
        "interval": "1m",
        "input_series": [{"series": s.promql(), "values": gauge_notation(s.values)
                           if s.role == "gauge" else expanding(s.values)} for s in series],
        "alert_rule_test": checks,
    }


def test_file(slo: SLO, rules_file: str | None = None) -> str:
    """The SLO's test file; it loads `rules_file` (relative to the tests directory), by
    default the service's own rule file, which must hold only this SLO's groups: promtool
    evaluates every loaded group, and a sibling SLO's would raise its data-absent alert."""
    groups: list[dict[str, Any]] = []
    notes: list[str] = []
    for scenario in scenarios(slo):
        try:
            groups.append(test_group(slo, scenario))
            notes.append(f"# - {scenario.name}: {scenario.description}")
        except NotDerivable as why:
            notes.append(f"# - {scenario.name}: not generated ({why}); write this case by hand")
    body = {
        "rule_files": [rules_file or f"../{rules_file_name(slo.service)}"],
        "evaluation_interval": "1m",
        # promtool evaluates every group at every step, in random order unless told: the
        # slow group reads what the fast one records, as it does in Prometheus.
        "group_eval_order": [names.alert_group_name(slo.service, slo.name),
                             names.slow_group_name(slo.service, slo.name)],
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


def slo_rules_file_name(slo: SLO) -> str:
    """Where the test of an SLO with siblings finds its rules: next to the test file."""
    return f"{TESTS_DIR}/{slo.service}--{slo.name}.rules.yml"


class ServiceRules:
    """A service's rule file cut into its groups once, so each of its SLOs takes its own
    (cutting it again per SLO parsed every group name once per sibling)."""

    def __init__(self, service_rules: str) -> None:
        self.head, body = service_rules.split("groups:\n", 1)
        self.groups = [(_group_name(g), g) for g in re.split(r"(?m)^(?=- name: )", body) if g]

    def of(self, slo: SLO) -> str:
        """The SLO's groups, header kept: byte for byte what Prometheus loads, and nothing
        else, so a test file's time does not grow with its siblings and none of them fires
        in it."""
        wanted = {names.alert_group_name(slo.service, slo.name),
                  names.slow_group_name(slo.service, slo.name)}
        return f"{self.head}groups:\n{''.join(g for name, g in self.groups if name in wanted)}"


def _group_name(group: str) -> str:
    return str(yaml.load(group.split("\n", 1)[0], Loader=_LOADER)[0]["name"])


def rule_test_files(services: Iterable[Service],
                    rule_files: Mapping[str, str] | None = None) -> dict[str, str]:
    """One test file per SLO; for a service of several SLOs, one rule file per SLO too, cut
    from the service's rule file (`rule_files`, by name, as `compile` writes them; rendered
    here when not given)."""
    files: dict[str, str] = {}
    for service in services:
        if len(service.slos) == 1:
            files[test_file_name(service.slos[0])] = test_file(service.slos[0])
            continue
        name = rules_file_name(service.name)
        service_rules = ServiceRules(rule_files[name] if rule_files and name in rule_files
                                     else render(compile_service(service)))
        for slo in service.slos:
            rules = slo_rules_file_name(slo)
            files[rules] = service_rules.of(slo)
            files[test_file_name(slo)] = test_file(slo, rules.removeprefix(f"{TESTS_DIR}/"))
    return files
