"""SLO model → Prometheus rule groups. Pure: no files, no clocks, deterministic output.

Per SLO, two groups:
- `slo-engine:<service>:<slo>` (every minute): the only raw read (5m rates of bad and
  total events), then the error ratio of every window the fast tiers read, from those
  recorded rates (bad over total: traffic-weighted, and a quiet interval inside a window
  cannot make it NaN; the newest 5 minutes are the 5m rate itself, so a window sees a step
  as soon as a raw `rate()` over it would), then their burn-rate alerts, long window on the
  left of `and` so `$value` is its burn rate, and the data-absent alert;
- `slo-engine:<service>:<slo>:slow`, every 5m: the windows and alerts of tiers whose long
  window is a day or more, then the period's error ratio, the error budget remaining,
  objective and period. Long `sum_over_time`s are most of the evaluation cost, and neither
  a day-long window nor the budget moves much in a minute.

The `vmalert` layout is for VictoriaMetrics' vmalert, where a rule sees a series recorded
earlier in its own group only a cycle late (results go through remote write, and recent
samples are hidden by `-search.latencyOffset`): no rule reads a series its own group
records. The 5m rates get a group of their own, `slo-engine:<service>:<slo>:rates`, listed
first (`-replay` evaluates groups in file order); the alerts and the budget inline the
window and period ratios instead of reading them, so an alert lags the raw data by at most
one evaluation of the rates group, as in Prometheus. VictoriaMetrics' range windows are
left-open, (t − d, t], where Prometheus 2.42's are closed: the tiled range is one minute
longer there, so it sums the same one-a-minute samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from slo_engine.spec import conventions as names
from slo_engine.spec.burn_rate import AlertTier, budget_literal, threshold_literal
from slo_engine.spec.durations import format_duration, parse_duration
from slo_engine.spec.model import (
    SLO,
    BoolGaugeSLI,
    ErrorRatioSLI,
    LatencySLI,
    RatioSLI,
    Service,
)
from slo_engine.spec.promql import WINDOW_PLACEHOLDER, Matcher, number


@dataclass(frozen=True)
class RecordingRule:
    record: str
    expr: str
    labels: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class AlertingRule:
    alert: str
    expr: str
    labels: tuple[tuple[str, str], ...]
    annotations: tuple[tuple[str, str], ...]
    for_: str | None = None


Rule = RecordingRule | AlertingRule

# Which ruler evaluates the groups: Prometheus (and Thanos Ruler, the Mimir ruler), or
# VictoriaMetrics' vmalert.
Layout = Literal["prometheus", "vmalert"]

# The firing burn rate, as the alert's annotations show it (`$value` is the long window's).
VALUE_TEMPLATE = '{{ $value | printf "%.1f" }}'


@dataclass(frozen=True)
class RuleGroup:
    name: str
    rules: tuple[Rule, ...]
    interval: str | None = None


@dataclass(frozen=True)
class RuleSet:
    """Every group generated for one service, in spec order."""

    service: str
    source_file: str
    groups: tuple[RuleGroup, ...] = field(default_factory=tuple)
    namespace: str | None = None  # the PrometheusRule's metadata, from `prometheus_rule`
    labels: tuple[tuple[str, str], ...] = ()


def compile_service(service: Service, layout: Layout = "prometheus") -> RuleSet:
    groups: list[RuleGroup] = []
    for slo in service.slos:
        groups.extend(compile_slo(slo) if layout == "prometheus" else compile_slo_vmalert(slo))
    return RuleSet(service.name, service.source_file, tuple(groups), service.namespace,
                   service.rule_labels)


def compile_slo(slo: SLO) -> tuple[RuleGroup, RuleGroup]:
    fast = [t for t in slo.tiers if t.long_seconds < names.SLOW_TIER_SECONDS]
    slow = [t for t in slo.tiers if t.long_seconds >= names.SLOW_TIER_SECONDS]
    fast_windows, slow_windows = recorded_windows(slo)
    rules: list[Rule] = [*_event_rates(slo), *_window_ratios(slo, fast_windows)]
    rules.extend(burn_alert(slo, tier) for tier in fast)
    if slo.data_absent:
        rules.append(data_absent_alert(slo))
    slow_rules: list[Rule] = [*_window_ratios(slo, slow_windows)]
    slow_rules.extend(burn_alert(slo, tier) for tier in slow)
    slow_rules.extend(_period_rules(slo))
    return (RuleGroup(names.alert_group_name(slo.service, slo.name), tuple(rules),
                      names.FAST_GROUP_INTERVAL),
            RuleGroup(names.slow_group_name(slo.service, slo.name), tuple(slow_rules),
                      names.SLOW_GROUP_INTERVAL))


def compile_slo_vmalert(slo: SLO) -> tuple[RuleGroup, RuleGroup, RuleGroup]:
    """The vmalert layout (module docstring): the same records and alerts, none reading
    what its own group records."""
    fast = [t for t in slo.tiers if t.long_seconds < names.SLOW_TIER_SECONDS]
    slow = [t for t in slo.tiers if t.long_seconds >= names.SLOW_TIER_SECONDS]
    fast_windows, slow_windows = recorded_windows(slo)
    rules: list[Rule] = [*_window_ratios(slo, fast_windows, left_open=True)]
    rules.extend(burn_alert(slo, tier, inline=True) for tier in fast)
    if slo.data_absent:
        rules.append(data_absent_alert(slo))
    slow_rules: list[Rule] = [*_window_ratios(slo, slow_windows, left_open=True)]
    slow_rules.extend(burn_alert(slo, tier, inline=True) for tier in slow)
    slow_rules.extend(_period_rules(slo, inline=True))
    return (RuleGroup(names.rates_group_name(slo.service, slo.name),
                      tuple(_event_rates(slo, inline=True)), names.FAST_GROUP_INTERVAL),
            RuleGroup(names.alert_group_name(slo.service, slo.name), tuple(rules),
                      names.FAST_GROUP_INTERVAL),
            RuleGroup(names.slow_group_name(slo.service, slo.name), tuple(slow_rules),
                      names.SLOW_GROUP_INTERVAL))


def _windows(tiers: list[AlertTier]) -> set[str]:
    return {w for t in tiers for w in (t.long_window, t.short_window)}


def recorded_windows(slo: SLO) -> tuple[set[str], set[str]]:
    """The error-ratio windows recorded by the SLO's group evaluated every interval, and
    those recorded by its slow group (every SLOW_GROUP_INTERVAL): a reader of the latter
    must look back a whole slow interval to find the last sample."""
    fast = _windows([t for t in slo.tiers if t.long_seconds < names.SLOW_TIER_SECONDS])
    fast.add(names.BASE_WINDOW)
    slow = _windows([t for t in slo.tiers if t.long_seconds >= names.SLOW_TIER_SECONDS])
    return fast, slow - fast


def recorded(metric: str, slo: SLO) -> str:
    """A selector of one SLO's recorded series: `slo` and `service` identify it."""
    return f'{metric}{{{names.SLO_LABEL}="{slo.name}", {names.SERVICE_LABEL}="{slo.service}"}}'


def _by(slo: SLO) -> str:
    return f"sum by ({', '.join(slo.group_by)}) " if slo.group_by else "sum"


def _rate(selector: str) -> str:
    return f"rate({selector}[{names.BASE_WINDOW}])"


def le_matcher(threshold_seconds: float) -> Matcher:
    """Bucket boundary as exporters write it: Go writes 1, client_python 1.0."""
    text = number(threshold_seconds)
    if "." in text or "e" in text:
        return Matcher("le", "=", text)
    return Matcher("le", "=~", f"{text}|{text}\\.0")


def _event_rates(slo: SLO, *, inline: bool = False) -> list[Rule]:
    """The two 5m rates. The bad one defaults to 0 (or subtracts from) the total: the
    recorded total at t in Prometheus, the total's own expression when `inline` (vmalert
    would read the recorded one a cycle late)."""
    by = _by(slo)
    sli = slo.sli
    if isinstance(sli, RatioSLI):
        total = f"{by}({_rate(sli.total.render())})"
        total_recorded = f"({total})" if inline else \
            f"{by}({recorded(names.TOTAL_EVENTS_RATE, slo)})"
        if sli.bad is not None:
            bad = f"{by}({_rate(sli.bad.render())}) or 0 * {total_recorded}"
        else:
            assert sli.good is not None
            good = f"{by}({_rate(sli.good.render())})"
            bad = f"clamp_min({total_recorded} - ({good} or 0 * {total_recorded}), 0)"
    elif isinstance(sli, BoolGaugeSLI):
        total, bad = bool_gauge_rates(sli, names.BASE_WINDOW, 300)
    elif isinstance(sli, ErrorRatioSLI):
        total, bad = error_ratio_rates(sli, names.BASE_WINDOW)
    elif isinstance(sli, LatencySLI):
        total = f"{by}({_rate(sli.count.render())})"
        total_recorded = f"({total})" if inline else \
            f"{by}({recorded(names.TOTAL_EVENTS_RATE, slo)})"
        good = f"{by}({_rate(sli.bucket.render((le_matcher(sli.threshold_seconds),)))})"
        # No `or 0` default: a threshold that is no bucket bound matches no `le` series, and
        # reading that as "nothing was fast" would page at 100% on healthy traffic. Without
        # the bucket, bad has no sample, the SLI has no value, and SLODataAbsent says why.
        bad = f"clamp_min({total_recorded} - {good}, 0)"
    else:
        total = _window(sli.total, names.BASE_WINDOW)
        if sli.bad is not None and inline:
            bad = f"({_window(sli.bad, names.BASE_WINDOW)}) or (0 * ({total}))"
        elif sli.bad is not None:
            # The zero default per label set of the query (a target without a failure
            # counter still gets an SLI); the recorded total also has the labels this rule
            # sets, which the query's output lacks until then: they are ignored.
            rule_labels = ", ".join(name for name, _ in slo.labels)
            bad = f"({_window(sli.bad, names.BASE_WINDOW)}) or ignoring ({rule_labels}) " \
                  f"(0 * {recorded(names.TOTAL_EVENTS_RATE, slo)})"
        else:
            assert sli.good is not None
            bad = f"clamp_min(({total}) - ({_window(sli.good, names.BASE_WINDOW)}), 0)"
    return [
        RecordingRule(names.TOTAL_EVENTS_RATE, total, slo.labels),
        RecordingRule(names.BAD_EVENTS_RATE, bad, slo.labels),
    ]


def bool_gauge_rates(sli: BoolGaugeSLI, window: str, window_seconds: int) -> tuple[str, str]:
    """Total and bad events per second of a 0/1 gauge: each sample is an event, so the
    samples per second, and among them the zeros (count − sum; never below 0, should the
    gauge read above 1)."""
    by = f"sum by ({', '.join(sli.group_by)}) " if sli.group_by else "sum"
    metric = sli.metric.render()
    total = f"{by}(count_over_time({metric}[{window}])) / {window_seconds}"
    bad = (f"{by}(clamp_min(count_over_time({metric}[{window}]) - "
           f"sum_over_time({metric}[{window}]), 0)) / {window_seconds}")
    return total, bad


def error_ratio_rates(sli: ErrorRatioSLI, window: str) -> tuple[str, str]:
    """An error ratio as event rates: one event per second wherever the ratio has a value,
    and the ratio as the bad share of it, so every window averages the 5m ratios (each
    minute weighs the same). An undefined ratio (0/0, no traffic) records nothing rather
    than a NaN that would poison every window holding it; a ratio above 1 counts as 1."""
    ratio = f"({_window(sli.query, window)}) >= 0"
    return f"({ratio}) * 0 + 1", f"clamp_max({ratio}, 1)"


def _window(query: str, window: str) -> str:
    return query.replace(WINDOW_PLACEHOLDER, window).strip()


def error_ratio_expr(slo: SLO, window: str) -> str:
    """The error ratio over `window` (or the period) as the sum of bad over the sum of total
    of every recorded 5m rate in it."""
    bad, total = recorded(names.BAD_EVENTS_RATE, slo), recorded(names.TOTAL_EVENTS_RATE, slo)
    if window == names.BASE_WINDOW:
        return f"{bad} / {total}"
    return f"sum_over_time({bad}[{window}]) / sum_over_time({total}[{window}])"


def tiled_minutes(window_seconds: float) -> int | None:
    """The range, in minutes, of the 5m rates that tile a window before its newest 5
    minutes; None for a window too short to have one (it sums its samples instead)."""
    minutes = int(window_seconds // 60)
    tiled = minutes - 2 * names.EDGE_MINUTES  # closed [t − W + 3m, t − 3m]: W − 5 samples
    return tiled if window_seconds % 60 == 0 and tiled > 0 else None


def window_ratio_expr(slo: SLO, window: str, *, left_open: bool = False) -> str:
    """A window's error ratio without the lag of a sum of 5m rates: such a sum weighs each
    minute of the window's newest 4 by 1/5 to 4/5, so a step shows 2 minutes late. Here the
    newest 5 minutes are the 5m rate at t (times 5: one sample a minute), and the 5m rates
    from t − W + 3m to t − 3m tile the rest (none yet in a new SLO's first 3 minutes: the
    window is its 5 minutes); a step counts in full from its first minute.

    `left_open`: for a store whose range (t − d, t] leaves out the sample at t − d
    (VictoriaMetrics), the range is a minute longer, to hold the same samples."""
    tiled = tiled_minutes(parse_duration(window))
    if tiled is None:
        return error_ratio_expr(slo, window)
    tiled += 1 if left_open else 0
    edge = names.WINDOW_EDGE

    def events(metric: str) -> str:
        series = recorded(metric, slo)
        return f"((sum_over_time({series}[{tiled}m] offset {edge}) or 0 * {series}) + 5 * {series})"

    return f"{events(names.BAD_EVENTS_RATE)}\n/\n{events(names.TOTAL_EVENTS_RATE)}"


def _window_ratios(slo: SLO, windows: set[str], *, left_open: bool = False) -> list[Rule]:
    return [
        RecordingRule(names.error_ratio_metric(w), window_ratio_expr(slo, w, left_open=left_open),
                      slo.labels)
        for w in slo.windows if w in windows
    ]


def burn_condition(slo: SLO, tier: AlertTier, *, inline: bool = False) -> str:
    """The tier's firing rule (`burn_rate.fires`) in PromQL, with the same printed numbers;
    `inline` computes the windows' ratios (vmalert layout) instead of reading their records."""
    budget, threshold = budget_literal(slo.error_budget), threshold_literal(tier)

    def burning(window: str) -> str:
        if not inline:
            return f"{recorded(names.error_ratio_metric(window), slo)} / {budget} > {threshold}"
        ratio = window_ratio_expr(slo, window, left_open=True).replace("\n", " ")
        return f"({ratio}) / {budget} > {threshold}"

    expr = f"{burning(tier.long_window)}\nand\n{burning(tier.short_window)}"
    if slo.min_events:
        events = (f"avg_over_time({recorded(names.TOTAL_EVENTS_RATE, slo)}[{tier.long_window}])"
                  f" * {number(tier.long_seconds)} >= {slo.min_events}")
        expr += f"\nand\n{events}"
    return expr


def alert_labels(slo: SLO, tier: AlertTier) -> tuple[tuple[str, str], ...]:
    """The labels a tier's alert carries: the SLO's, its severity and window pair, and what
    the alerting section adds for that severity."""
    extra = slo.alerting.of(tier.severity)
    return (*slo.labels, (names.SEVERITY_LABEL, extra.severity),
            (names.LONG_WINDOW_LABEL, tier.long_window),
            (names.SHORT_WINDOW_LABEL, tier.short_window), *extra.labels)


def burn_alert(slo: SLO, tier: AlertTier, *, inline: bool = False) -> AlertingRule:
    threshold = threshold_literal(tier)
    lasts = format_duration(round(slo.period_seconds / tier.burn_rate / 60) * 60)
    what = f"{slo.description.rstrip('.')}. " if slo.description else ""
    extra = slo.alerting.of(tier.severity)
    return AlertingRule(
        alert=slo.alerting.name,
        expr=burn_condition(slo, tier, inline=inline),
        labels=alert_labels(slo, tier),
        annotations=(*_links(slo, (
            ("summary", f"{slo.service}/{slo.name}: error budget burning "
                        f"{VALUE_TEMPLATE}x as fast as sustainable "
                        f"(over {threshold}x for {tier.long_window} and {tier.short_window})"),
            ("description", f"{what}Objective {slo.objective_percent}% over {slo.period}. A burn "
                            f"of {threshold}x spends {number(tier.budget_fraction * 100)}% of "
                            f"the error budget in {tier.long_window} and all of it in {lasts}."),
        )), *extra.annotations),
    )


def data_absent_alert(slo: SLO) -> AlertingRule:
    """No SLI: the total events are absent, or (latency) the threshold's bucket is, per group.
    A ticket, with the ticket tiers' `severity` value so it routes like them.

    The two halves never overlap (the second needs the total the first says is absent), so
    the alert never holds two samples with one label set.
    """
    total = recorded(names.TOTAL_EVENTS_RATE, slo)
    expr = f"absent({total})"
    description = ("The SLI's total-events series is absent, so burn-rate alerts cannot fire. "
                   "Check that the service is scraped and the selector still matches its "
                   "metrics.")
    if isinstance(slo.sli, ErrorRatioSLI):
        description += (" For an error_ratio SLI also when the ratio has had no value (0/0: no "
                        "traffic, or a counter of its query does not exist yet).")
    elif isinstance(slo.sli, LatencySLI):
        expr += f"\nor\n{total} unless {recorded(names.BAD_EVENTS_RATE, slo)}"
        description += (f" Or the histogram has no bucket le=\"{number(slo.sli.threshold_seconds)}"
                        "\": the threshold must be one of its bucket bounds (slo-engine validate "
                        "--prometheus-url URL lists them).")
    return AlertingRule(
        alert=names.DATA_ABSENT_ALERT,
        expr=expr,
        for_=names.DATA_ABSENT_FOR,
        labels=(*slo.labels, (names.SEVERITY_LABEL, slo.alerting.ticket.severity)),
        annotations=_links(slo, (
            ("summary", f"{slo.service}/{slo.name}: no SLI data for {names.DATA_ABSENT_FOR}"),
            ("description", description),
        )),
    )


def _links(slo: SLO, annotations: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    links = [("runbook_url", slo.runbook_url), ("dashboard_url", slo.dashboard_url)]
    return (*annotations, *((k, v) for k, v in links if v))


def _period_rules(slo: SLO, *, inline: bool = False) -> tuple[Rule, ...]:
    period = slo.period
    ratio = f"({error_ratio_expr(slo, period)})" if inline else \
        recorded(names.PERIOD_ERROR_RATIO, slo)
    return (
        RecordingRule(names.PERIOD_ERROR_RATIO, error_ratio_expr(slo, period), slo.labels),
        RecordingRule(names.ERROR_BUDGET_REMAINING,
                      f"1 - {ratio} / {number(slo.error_budget)}", slo.labels),
        RecordingRule(names.OBJECTIVE, f"vector({number(slo.objective)})", slo.labels),
        RecordingRule(names.PERIOD_SECONDS, f"vector({number(slo.period_seconds)})", slo.labels),
    )
