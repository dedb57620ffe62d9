"""Canary analysis: is the canary worse than the baseline on the SLO's own SLI?

`analyse` is pure statistics over two request counts; `measure` is the thin Prometheus edge
that fills them with `increase()` over the analysis window, the SLI's selectors narrowed by
the canary's or the baseline's label matchers.

Three checks, with the field guide's thresholds as defaults:

- **error_delta**: canary error ratio − baseline error ratio (for a latency SLI: the share of
  requests slower than the SLO's threshold), at most 0.5 percentage points;
- **burn_rate**: canary error ratio ÷ the SLO's error budget, at most 4x;
- **p95_delta** (latency SLIs): canary p95 ÷ baseline p95 − 1, at most 20 %.

Every check ends in `breach`, `pass` or `unclear`, and must earn its result with
significance level `alpha` (default 0.05, one-sided), so a handful of requests decides
nothing:

- a breach needs evidence that the value is over the threshold, not just observed over it:
  the Newcombe–Wilson lower bound of the ratio difference over the threshold (and Fisher's
  exact test agreeing that the canary has more bad requests than the baseline); a binomial
  test that the canary's error ratio is above `max_burn_rate × budget`; a binomial test that
  more than 5 % of the canary's requests are slower than baseline p95 × 1.2 (counting the
  requests of a bucket as spread evenly across it, as histogram_quantile does);
- a pass needs the upper confidence bound under the threshold: the Newcombe–Wilson bound of
  the ratio difference, the exact (Clopper–Pearson) bound of the burn rate, and for p95 the
  binomial test the other way (significantly fewer than 5 % slower than the limit).

The verdict is `rollback` when any check is a breach, `promote` when every check passes,
`inconclusive` otherwise. On a 99 % SLO, 3 errors in 40 requests against a baseline's 1 in 40
is inconclusive: the difference could be anywhere from −4 to +15 points (Fisher p = 0.31),
and 7.5x is not shown to be over 4x (p = 0.21). Against a baseline's 30 in 10,000 the same
canary is a rollback: even the lower bound of the difference, +2.7 points, is over the 0.5
allowed (at the baseline's 0.3 %, 3 errors or more in 40 requests happen 3 times in 10,000).
On a tighter SLO the burn rate alone can roll it back: at 99.5 %, 3 errors in 40 are
unlikely from a canary within 4x (2 % errors; p = 0.046), whatever the baseline does. One
error in 40 against a baseline's 0.1 % is inconclusive: the lower bound, +0.46 points, is
within the 0.5 allowed.

Promoting needs traffic: with no errors on either side, about 2.7 ÷ max_error_delta canary
requests (540 for 0.5 points), and 3 ÷ (max_burn_rate × error budget) for the burn rate (750
for 4x at 99.9 %).

Query SLIs are arbitrary PromQL that the engine cannot narrow to the canary's series, so they
are refused: give the SLO a ratio or latency SLI (or compare a ratio SLO defined on the same
metrics) to analyse canaries on it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from scipy.stats import binomtest, fisher_exact

from slo_engine.budget.accounting import iso_utc
from slo_engine.changes.events import Change, parse_change
from slo_engine.errors import ReleaseError
from slo_engine.rules.compile import le_matcher
from slo_engine.spec.durations import format_duration
from slo_engine.spec.model import (
    SLO,
    BoolGaugeSLI,
    ErrorRatioSLI,
    LatencySLI,
    QuerySLI,
    RatioSLI,
    Service,
)
from slo_engine.spec.promql import METRIC_NAME, Matcher, SelectorSyntaxError, parse_selector

if TYPE_CHECKING:
    from slo_engine.prometheus.source import PrometheusSource

Verdict = Literal["promote", "rollback", "inconclusive"]
Result = Literal["breach", "pass", "unclear"]
CheckName = Literal["error_delta", "burn_rate", "p95_delta"]

EXIT_CODES: dict[Verdict, int] = {"promote": 0, "rollback": 1, "inconclusive": 2}
QUANTILE = 0.95
_PRECISION = 12  # decimals kept before comparing an observed value with its threshold


@dataclass(frozen=True)
class Thresholds:
    """The field guide's canary policy: auto-rollback above these."""

    max_error_delta: float = 0.005  # error ratio difference, as a fraction (0.5 points)
    max_latency_delta: float = 0.20  # relative p95 difference
    max_burn_rate: float = 4.0
    alpha: float = 0.05  # one-sided significance of every test and bound

    def as_json(self) -> dict[str, float]:
        return {"max_error_delta": self.max_error_delta,
                "max_latency_delta": self.max_latency_delta,
                "max_burn_rate": self.max_burn_rate, "alpha": self.alpha}


@dataclass(frozen=True)
class Traffic:
    """One side's requests over the window; `buckets` are cumulative (upper bound, count)
    pairs in ascending order, the last one +Inf (latency SLIs only)."""

    requests: float
    bad: float
    p95_seconds: float | None = None
    buckets: tuple[tuple[float, float], ...] = ()

    def counts(self) -> tuple[int, int]:
        """Whole bad and total requests (increase() extrapolates to fractions)."""
        total = max(0, round(self.requests))
        return min(max(0, round(self.bad)), total), total

    @property
    def error_ratio(self) -> float | None:
        bad, total = self.counts()
        return bad / total if total else None


@dataclass(frozen=True)
class Check:
    name: CheckName
    result: Result
    observed: float | None
    threshold: float
    low: float | None  # one-sided confidence bounds of `observed` at 1 − alpha each
    high: float | None
    p_value: float | None  # Fisher's (error_delta); the binomial test's (burn_rate, and
    # p95_delta in the direction of the observed delta)
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "result": self.result, "observed": _finite(self.observed),
                "threshold": self.threshold, "low": _finite(self.low),
                "high": _finite(self.high), "p_value": _finite(self.p_value),
                "detail": self.detail}


@dataclass(frozen=True)
class Analysis:
    verdict: Verdict
    checks: tuple[Check, ...]
    canary: Traffic
    baseline: Traffic
    error_budget: float
    thresholds: Thresholds

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def reasons(self) -> list[str]:
        """The checks that made the verdict: breaches for a rollback, the unclear ones for an
        inconclusive verdict, every check for a promotion."""
        wanted = {"rollback": {"breach"}, "inconclusive": {"unclear"},
                  "promote": {"pass"}}[self.verdict]
        return [f"{c.name}: {c.detail}" for c in self.checks if c.result in wanted]


def analyse(canary: Traffic, baseline: Traffic, error_budget: float,
            thresholds: Thresholds | None = None, *, latency: bool = False) -> Analysis:
    """The verdict on a canary from its and the baseline's requests (see the module doc)."""
    limits = thresholds or Thresholds()
    checks = [error_delta(canary, baseline, limits, latency=latency),
              burn_rate(canary, baseline, error_budget, limits)]
    if latency:
        checks.append(p95_delta(canary, baseline, limits))
    return Analysis(verdict_of(checks), tuple(checks), canary, baseline, error_budget, limits)


def verdict_of(checks: Iterable[Check]) -> Verdict:
    results = [c.result for c in checks]
    if "breach" in results:
        return "rollback"
    return "promote" if results and all(r == "pass" for r in results) else "inconclusive"


def error_delta(canary: Traffic, baseline: Traffic, limits: Thresholds, *,
                latency: bool = False) -> Check:
    """Breach: the Newcombe–Wilson lower bound of the difference is over the threshold and
    Fisher's exact test agrees the canary has more bad requests (it guards the approximate
    bound at small counts); pass: the upper bound is within the threshold."""
    what = "slow-request share" if latency else "error ratio"
    (bad_c, n_c), (bad_b, n_b) = canary.counts(), baseline.counts()
    limit = limits.max_error_delta
    missing = _no_traffic(n_c, n_b)
    if missing:
        return Check("error_delta", "unclear", None, limit, None, None, None, missing)
    delta = bad_c / n_c - bad_b / n_b
    low, high = newcombe_bounds(bad_c, n_c, bad_b, n_b, limits.alpha)
    p_value = float(fisher_exact([[bad_c, n_c - bad_c], [bad_b, n_b - bad_b]],
                                 alternative="greater").pvalue)
    result: Result = "breach" if _round(low) > limit and p_value < limits.alpha else \
        "pass" if _round(high) <= limit else "unclear"
    detail = (f"{what} {bad_c:,}/{n_c:,} = {_pct(bad_c / n_c)} against the baseline's "
              f"{bad_b:,}/{n_b:,} = {_pct(bad_b / n_b)}: {_points(delta)} "
              f"({_confidence(limits)} bounds {_points(low, unit=False)} to {_points(high)}), "
              f"at most {_points(limit, sign=False)} allowed; Fisher's exact p = {p_value:.2g}")
    return Check("error_delta", result, delta, limit, low, high, p_value,
                 detail + _unclear(result, _round(delta) > limit, limits.alpha))


def burn_rate(canary: Traffic, baseline: Traffic, error_budget: float,
              limits: Thresholds) -> Check:
    """Breach: over the threshold and a binomial test says the canary's error ratio is above
    max_burn_rate × budget; pass: the exact upper bound of the burn rate is within it."""
    bad, total = canary.counts()
    limit = limits.max_burn_rate
    if total == 0:
        return Check("burn_rate", "unclear", None, limit, None, None, None,
                     "no canary requests in the window")
    burn = bad / total / error_budget
    allowed = limit * error_budget  # the error ratio burning exactly at the limit
    interval = binomtest(bad, total).proportion_ci(1 - 2 * limits.alpha, method="exact")
    low, high = interval.low / error_budget, interval.high / error_budget
    if allowed >= 1:
        return Check("burn_rate", "pass", burn, limit, low, high, None,
                     f"{burn:.2f}x; even 100% errors burn at most {1 / error_budget:.2f}x, "
                     f"under the {limit:g}x allowed")
    p_value = float(binomtest(bad, total, allowed, alternative="greater").pvalue)
    above = _round(burn) > limit
    result: Result = "breach" if above and p_value < limits.alpha else \
        "pass" if _round(high) <= limit else "unclear"
    baseline_ratio = baseline.error_ratio
    note = ""
    if result == "breach" and baseline_ratio is not None and baseline_ratio / error_budget > limit:
        note = (f"; the baseline burns at {baseline_ratio / error_budget:.2f}x too, so the "
                "cause may not be the canary")
    detail = (f"{burn:.2f}x ({_confidence(limits)} bounds {low:.2f}x to {high:.2f}x) of an "
              f"error budget of {_pct(error_budget)}, at most {limit:g}x allowed; binomial p "
              f"= {p_value:.2g}")
    return Check("burn_rate", result, burn, limit, low, high, p_value,
                 f"{detail}{_unclear(result, above, limits.alpha)}{note}")


def p95_delta(canary: Traffic, baseline: Traffic, limits: Thresholds) -> Check:
    """p95 rises more than the threshold ⟺ more than 5 % of the canary's requests are slower
    than baseline p95 × (1 + threshold): a binomial test of that share against 5 %, either
    way, counting a bucket's requests as spread evenly across it (as histogram_quantile)."""
    limit = limits.max_latency_delta
    p95_c, p95_b = canary.p95_seconds, baseline.p95_seconds
    if p95_c is None or p95_b is None or p95_b <= 0 or not canary.buckets:
        return Check("p95_delta", "unclear", None, limit, None, None, None,
                     "no p95 for both sides (no histogram buckets in the window)")
    delta = p95_c / p95_b - 1
    slowest = p95_b * (1 + limit)
    total = max(0, round(canary.buckets[-1][1]))
    if total == 0:
        return Check("p95_delta", "unclear", delta, limit, None, None, None,
                     "no canary requests in the histogram")
    slower = min(total, max(0, round(share_above(canary.buckets, slowest))))
    share = 1 - QUANTILE
    worse = float(binomtest(slower, total, share, alternative="greater").pvalue)
    better = float(binomtest(slower, total, share, alternative="less").pvalue)
    above = _round(delta) > limit
    result: Result = "breach" if above and worse < limits.alpha else \
        "pass" if not above and better < limits.alpha else "unclear"
    p_value = worse if above else better
    detail = (f"canary p95 {_seconds(p95_c)} against the baseline's {_seconds(p95_b)}: "
              f"{delta:+.1%}, at most {limit:.0%} allowed; {slower:,} of {total:,} canary "
              f"requests ({_pct(slower / total)}) are slower than {_seconds(slowest)}, "
              f"against the {share:.0%} a p95 within the limit allows; binomial p = "
              f"{p_value:.2g}")
    return Check("p95_delta", result, delta, limit, None, None, p_value,
                 detail + _unclear(result, above, limits.alpha))


def newcombe_bounds(bad_a: int, total_a: int, bad_b: int, total_b: int,
                    alpha: float) -> tuple[float, float]:
    """One-sided 1 − alpha bounds of ratio_a − ratio_b (Newcombe's hybrid score interval from
    two Wilson intervals): good coverage with few requests and with ratios near 0."""
    confidence = 1 - 2 * alpha
    a = binomtest(bad_a, total_a).proportion_ci(confidence, method="wilson")
    b = binomtest(bad_b, total_b).proportion_ci(confidence, method="wilson")
    ratio_a, ratio_b = bad_a / total_a, bad_b / total_b
    delta = ratio_a - ratio_b
    low = delta - math.hypot(ratio_a - a.low, b.high - ratio_b)
    high = delta + math.hypot(a.high - ratio_a, ratio_b - b.low)
    return float(low), float(high)


def share_above(buckets: Sequence[tuple[float, float]], bound: float) -> float:
    """Requests slower than `bound` in a cumulative histogram, interpolating linearly inside
    the bucket that holds it as histogram_quantile does (from 0 in the first bucket;
    everything in the +Inf bucket counts as slower)."""
    ordered = sorted(buckets)
    total = ordered[-1][1]
    previous_le, previous_count = 0.0, 0.0
    for upper, raw in ordered:
        count = max(raw, previous_count)  # increase() per bucket may break monotonicity
        if upper >= bound:
            if math.isinf(upper):
                return total - previous_count
            lower = previous_le if previous_le < upper else upper
            below = count if upper == lower else \
                previous_count + (count - previous_count) * (bound - lower) / (upper - lower)
            return max(0.0, total - below)
        previous_le, previous_count = upper, count
    return max(0.0, total - previous_count)


def _no_traffic(canary: int, baseline: int) -> str:
    if canary == 0 and baseline == 0:
        return "no requests on either side in the window"
    if canary == 0:
        return "no canary requests in the window"
    return "" if baseline else "no baseline requests in the window"


def _unclear(result: Result, above: bool, alpha: float) -> str:
    """Why a check decided nothing: noise over the threshold, or too few requests under it."""
    if result != "unclear":
        return ""
    if above:
        return f": over the threshold, but not significantly at {alpha:g}"
    return ": the upper bound is over the threshold; more requests are needed to tell"


def _confidence(limits: Thresholds) -> str:
    return f"{1 - limits.alpha:.0%}"


def _round(value: float) -> float:
    return round(value, _PRECISION)


def _pct(value: float) -> str:
    return f"{value * 100:.3g}%"


def _points(value: float, *, sign: bool = True, unit: bool = True) -> str:
    number = f"{value * 100:+.2f}" if sign else f"{value * 100:.2f}"
    return f"{number} points" if unit else number


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.3g}s"


def _times(value: float) -> str:
    return f"{value:.2f}x"


def _maybe(render: Callable[[float], str], value: float | None) -> str:
    return "-" if value is None else render(value)


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


# --- selectors and SLOs -------------------------------------------------------------------


def label_matchers(text: str, option: str = "--canary") -> tuple[Matcher, ...]:
    """`track="canary"` or `{track="canary", version="v2"}` as matchers, or ReleaseError."""
    written = text.strip()
    whole = written.startswith("{") or re.match(rf"{METRIC_NAME.pattern}\s*({{|$)", written)
    try:  # a whole selector as written, or matchers without their braces
        selector = parse_selector(written if whole else f"{{{written}}}", allow_empty_name=True)
    except SelectorSyntaxError as error:
        character = error.offset + (1 if whole else 0)
        raise ReleaseError(f"{option} {text!r}: {error} (at character {character}); write "
                           "label matchers, e.g. 'track=\"canary\"'") from None
    if selector.metric:
        raise ReleaseError(f"{option} {text!r}: give label matchers only, without a metric "
                           "name; they are added to the SLI's own selectors")
    if not selector.matchers:
        raise ReleaseError(f"{option} needs at least one label matcher, e.g. 'track=\"canary\"'")
    return selector.matchers


def find_slo(services: Sequence[Service], name: str) -> SLO:
    """`service/slo`, or an SLO name that only one service has; ReleaseError otherwise."""
    import difflib

    slos = [slo for service in services for slo in service.slos]
    wanted = name.split("/", 1)
    found = [s for s in slos if (s.service, s.name) == tuple(wanted)] if len(wanted) == 2 \
        else [s for s in slos if s.name == name]
    if len(found) == 1:
        return found[0]
    if found:
        options = ", ".join(f"{s.service}/{s.name}" for s in found)
        raise ReleaseError(f"--slo {name!r} is the name of several SLOs ({options}); "
                           "write SERVICE/NAME")
    known = [f"{s.service}/{s.name}" for s in slos]
    close = difflib.get_close_matches(name, known + [s.name for s in slos], n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known SLOs: {', '.join(known)}"
    raise ReleaseError(f"--slo {name!r}: no such SLO in the given files; {hint}")


# --- Prometheus ------------------------------------------------------------------------------


def traffic_queries(slo: SLO, matchers: tuple[Matcher, ...], window_seconds: float) -> dict[
        str, str]:
    """The instant queries of one side: total and bad (or good) requests over the window;
    for latency SLIs also the cumulative buckets and the p95."""
    sli = slo.sli
    window = format_duration(window_seconds)

    def increase(selector: str) -> str:
        return f"sum(increase({selector}[{window}]))"

    if isinstance(sli, BoolGaugeSLI | ErrorRatioSLI):
        kind = "bool_gauge" if isinstance(sli, BoolGaugeSLI) else "error_ratio"
        raise ReleaseError(
            f"{slo.service}/{slo.name} has a {kind} "
            "SLI: canary analysis compares request counts of the canary and the baseline, "
            "which it does not have. Define a ratio or latency SLI over the service's "
            "request metrics to compare canaries on it")
    if isinstance(sli, QuerySLI):
        raise ReleaseError(
            f"{slo.service}/{slo.name} has a query SLI: arbitrary PromQL the engine cannot "
            "narrow to the canary's and the baseline's series. Canary analysis needs a ratio "
            "or latency SLI; define one over the same metrics to compare canaries on it")
    if isinstance(sli, LatencySLI):
        buckets = f"sum by (le) (increase({sli.bucket.render(matchers)}[{window}]))"
        return {
            "total": increase(sli.count.render(matchers)),
            "good": increase(sli.bucket.render((*matchers,
                                                le_matcher(sli.threshold_seconds)))),
            "buckets": buckets,
            "p95": f"histogram_quantile({QUANTILE}, {buckets})",
        }
    assert isinstance(sli, RatioSLI)
    queries = {"total": increase(sli.total.render(matchers))}
    if sli.bad is not None:
        queries["bad"] = increase(sli.bad.render(matchers))
    else:
        assert sli.good is not None
        queries["good"] = increase(sli.good.render(matchers))
    return queries


def measure(source: PrometheusSource, slo: SLO, matchers: tuple[Matcher, ...],
            window_seconds: float, at: datetime) -> Traffic:
    """One side's traffic at `at`; SourceUnavailable / QueryError name the URL and query."""
    values: dict[str, float | None] = {}
    buckets: list[tuple[float, float]] = []
    for kind, query in traffic_queries(slo, matchers, window_seconds).items():
        result = source.instant(query, at)
        if kind == "buckets":
            buckets = sorted((float(item["metric"].get("le", "+Inf")), float(item["value"][1]))
                             for item in result)
            continue
        numbers = [float(item["value"][1]) for item in result]
        values[kind] = next((n for n in numbers if math.isfinite(n)), None)
    if buckets and values.get("good") is None:
        raise ReleaseError(_not_a_bucket(slo, buckets))
    total = values.get("total") or 0.0
    bad = (values["bad"] or 0.0) if "bad" in values else total - (values.get("good") or 0.0)
    return Traffic(requests=total, bad=min(max(bad, 0.0), total), p95_seconds=values.get("p95"),
                   buckets=tuple(buckets) if buckets and math.isinf(buckets[-1][0]) else ())


def _not_a_bucket(slo: SLO, buckets: Sequence[tuple[float, float]]) -> str:
    """Without a bucket at the threshold every request would count as slow: a rollback
    of any canary, for a mistake in the SLO."""
    assert isinstance(slo.sli, LatencySLI)
    bounds = ", ".join(f"{upper:g}" for upper, _ in buckets if math.isfinite(upper))
    return (f"{slo.service}/{slo.name}: its histogram has no bucket at the SLO's threshold "
            f"({slo.sli.threshold_seconds:g}s), only le = {bounds}; set the threshold to one "
            "of them, or add that bucket to the histogram")


@dataclass(frozen=True)
class CanaryRun:
    """An analysis with its context: what was compared, where, over which window."""

    slo: SLO
    canary_selector: str
    baseline_selector: str
    window_seconds: float
    at: datetime
    analysis: Analysis
    url: str = ""
    queries: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.slo.service}/{self.slo.name}"

    def summary(self) -> str:
        reasons = self.analysis.reasons()
        return f"canary {self.analysis.verdict} on {self.name} over " \
            f"{format_duration(self.window_seconds)}" + (f": {reasons[0]}" if reasons else "")

    def change(self, version: str | None = None) -> Change:
        """The verdict as a change event, so a later page shows what the canary concluded."""
        return parse_change({"time": self.at, "service": self.slo.service, "kind": "deploy",
                             "version": version, "description": self.summary()[:2000],
                             "source": "canary"}, "canary --record")

    def as_json(self) -> dict[str, Any]:
        analysis = self.analysis
        return {
            "slo": self.name,
            "verdict": analysis.verdict,
            "exit_code": analysis.exit_code,
            "at": iso_utc(self.at),
            "duration": format_duration(self.window_seconds),
            "prometheus_url": self.url,
            "canary": self._side(self.canary_selector, analysis.canary),
            "baseline": self._side(self.baseline_selector, analysis.baseline),
            "thresholds": analysis.thresholds.as_json(),
            "checks": [c.as_json() for c in analysis.checks],
            "reasons": analysis.reasons(),
        }

    def _side(self, selector: str, traffic: Traffic) -> dict[str, Any]:
        bad, total = traffic.counts()
        ratio = traffic.error_ratio
        return {"selector": selector, "requests": total, "bad": bad,
                "error_ratio": ratio,
                "burn_rate": None if ratio is None else ratio / self.analysis.error_budget,
                "p95_seconds": _finite(traffic.p95_seconds)}

    def render_text(self) -> str:
        analysis = self.analysis
        lines = [f"canary {self.name} over {format_duration(self.window_seconds)}: "
                 f"{analysis.verdict.upper()}"]
        canary, baseline = (self._side("", analysis.canary), self._side("", analysis.baseline))
        bad = "slow" if isinstance(self.slo.sli, LatencySLI) else "errors"
        rows = [("", "canary", "baseline"),
                ("selector", self.canary_selector, self.baseline_selector),
                ("requests", f"{canary['requests']:,}", f"{baseline['requests']:,}"),
                (bad, f"{canary['bad']:,}", f"{baseline['bad']:,}"),
                ("ratio", _maybe(_pct, canary["error_ratio"]),
                 _maybe(_pct, baseline["error_ratio"])),
                ("burn rate", _maybe(_times, canary["burn_rate"]),
                 _maybe(_times, baseline["burn_rate"]))]
        if isinstance(self.slo.sli, LatencySLI):
            rows.append(("p95", _maybe(_seconds, canary["p95_seconds"]),
                         _maybe(_seconds, baseline["p95_seconds"])))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines += ["  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
                  for row in rows]
        lines += [f"  {c.result:<7} {c.name}: {c.detail}" for c in analysis.checks]
        return "\n".join(lines) + "\n"
