"""Checks the spec models cannot express: PromQL, windows against periods, tiers that can
never fire, label clashes and duplicates across files. Each returns located SpecIssues;
`check_warnings` returns what is valid but probably not meant, as SpecWarnings."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from slo_engine.errors import SpecIssue, SpecWarning
from slo_engine.spec.burn_rate import TierPolicy
from slo_engine.spec.conventions import (
    RESERVED_ANNOTATIONS,
    RESERVED_LABELS,
    SEVERITY_LABEL,
    operator_labels,
)
from slo_engine.spec.document import PrometheusRuleSpec, ServiceSpec, SLOSpec, TierSpec
from slo_engine.spec.durations import format_duration, parse_duration
from slo_engine.spec.model import burn_rate_threshold, custom_tiers, tier_policies
from slo_engine.spec.promql import (
    METRIC_NAME,
    SelectorSyntaxError,
    check_query,
    parse_selector,
    parser_problem,
)

if TYPE_CHECKING:
    from slo_engine.spec.loader import PathKey, SpecDocument

BASE_WINDOW_SECONDS = 300
# The selector parser's advice for a ratio selector, which a gauge selector needs reworded.
_RATE_HINT = "the engine adds rate() and the window itself (use a 'query' SLI for other PromQL)"


AlertWindows = Mapping[str, Sequence[TierSpec]]


def check_service(spec: ServiceSpec, document: SpecDocument) -> list[SpecIssue]:
    issues = list(_prometheus_rule(spec.prometheus_rule, document))
    issues.extend(check_slos(spec.labels, list(enumerate(spec.slos)), document,
                             spec.alert_windows))
    return issues


def check_slos(service_labels: Mapping[str, str], slos: Sequence[tuple[int, SLOSpec]],
               document: SpecDocument, alert_windows: AlertWindows | None = None,
               ) -> list[SpecIssue]:
    """Checks of a file's service labels, its alert window sets and its SLOs (by index in
    `slos:`).

    Also run on the well-formed parts of a file the spec models rejected, so every mistake
    is reported in one go.
    """
    windows = alert_windows or {}
    issues = list(_labels(service_labels, ("labels",), document))
    issues.extend(_window_sets(windows, document))
    seen: dict[str, int] = {}
    for index, slo in slos:
        path: PathKey = ("slos", index)
        if slo.name in seen:
            first = document.position(("slos", seen[slo.name], "name"))
            issues.append(document.issue((*path, "name"), f"duplicate SLO name {slo.name!r} "
                                         f"(first at line {first[0]}); names are unique per "
                                         "service"))
        seen.setdefault(slo.name, index)
        issues.extend(_sli(slo, path, document))
        issues.extend(_labels(slo.labels, (*path, "labels"), document))
        issues.extend(_clashes(service_labels, slo, path, document))
        issues.extend(_alerting(service_labels, slo, path, document, windows))
        issues.extend(_tiers(slo, path, document, windows))
    return issues


def _prometheus_rule(spec: PrometheusRuleSpec | None,
                     document: SpecDocument) -> Iterator[SpecIssue]:
    engine = operator_labels("")
    for name in spec.labels if spec else ():
        if name in engine:
            yield document.issue(("prometheus_rule", "labels", name),
                                 f"label {name!r} is set by the engine on every PrometheusRule "
                                 "it writes; choose another name",
                                 key=True)


def _alerting(service_labels: Mapping[str, str], slo: SLOSpec, path: PathKey,
              document: SpecDocument, windows: AlertWindows) -> Iterator[SpecIssue]:
    """The alerts' names, labels and annotations, and the tier set they use."""
    alerting = slo.alerting
    at: PathKey = (*path, "alerting")
    if alerting.windows is not None and alerting.tiers is not None:
        yield document.issue((*at, "windows"), "give either 'windows' (a set from "
                             "alert_windows) or 'tiers', not both; remove one of them")
    elif alerting.windows is not None and alerting.windows not in windows:
        known = (f"known sets: {', '.join(sorted(windows))}" if windows else
                 "this file defines no alert_windows; add the set under 'alert_windows:' at "
                 "the top of the file, or write the tiers under 'tiers'")
        yield document.issue((*at, "windows"),
                             f"unknown alert window set {alerting.windows!r}; {known}")
    page = alerting.page_alert.severity or "page"
    ticket = alerting.ticket_alert.severity or "ticket"
    if page == ticket:
        yield document.issue((*at, "ticket_alert", "severity"),
                             f"page and ticket alerts both have severity {page!r}; give them "
                             "different values, so Alertmanager and the engine can tell a page "
                             "from a ticket")
    sli = slo.sli.ratio or slo.sli.latency
    group_by = set(sli.group_by) if sli else set()
    static = set(service_labels) | set(slo.labels)
    for where, extra in (((), alerting), (("page_alert",), alerting.page_alert),
                         (("ticket_alert",), alerting.ticket_alert)):
        for name in extra.labels:
            problem = _label_clash(name, group_by, static)
            if problem:
                yield document.issue((*at, *where, "labels", name),
                                     f"label {name!r} {problem}", key=True)
        for name in extra.annotations:
            if name in RESERVED_ANNOTATIONS:
                fix = (f"set the SLO's (or the service's) {name} instead" if name.endswith("_url")
                       else "choose another name")
                yield document.issue((*at, *where, "annotations", name),
                                     f"annotation {name!r} is written by the engine on every "
                                     f"alert; {fix}", key=True)


def _label_clash(name: str, group_by: set[str], static: set[str]) -> str | None:
    """Why an extra alert label may not be set, or None: it would replace the engine's own."""
    if name == SEVERITY_LABEL:
        return ("is set by the engine; set its value with page_alert.severity and "
                "ticket_alert.severity")
    if name in RESERVED_LABELS:
        return "is set by the engine on every alert; choose another name"
    if name in group_by:
        return ("is a group_by label of this SLO, set per group by the engine; choose another "
                "name")
    if name in static:
        return ("is already set by 'labels' on every series and alert of the SLO; choose "
                "another name, or change it there")
    return None


def _window_sets(windows: AlertWindows, document: SpecDocument) -> Iterator[SpecIssue]:
    """What a tier set gets wrong whatever SLO uses it; the rest is checked per SLO."""
    for name, tiers in windows.items():
        for i, tier in enumerate(tiers):
            yield from _tier_windows(tier, ("alert_windows", name, i), document)


def _tier_windows(tier: TierSpec | TierPolicy, where: PathKey | None,
                  document: SpecDocument, fallback: PathKey = ()) -> Iterator[SpecIssue]:
    """A tier's windows: whole minutes of at least 5m, short shorter than long. At `where`
    (a tier in the file), else at `fallback` (the SLO's period, for default tiers)."""
    long_s, short_s = parse_duration(tier.long_window), parse_duration(tier.short_window)
    label = f"{tier.severity} tier {format_duration(long_s)}/{format_duration(short_s)}"
    for window, seconds in (("short_window", short_s), ("long_window", long_s)):
        if seconds < BASE_WINDOW_SECONDS or seconds % 60:
            yield document.issue((*where, window) if where else fallback,
                                 f"{label}: windows are whole minutes of at least 5m "
                                 "(the engine's base rate window)")
    if short_s >= long_s:
        yield document.issue(where or fallback, f"{label}: short_window must be shorter than "
                             "long_window (the SRE Workbook uses 1/12 of it)")


def _labels(labels: Mapping[str, str], path: PathKey,
            document: SpecDocument) -> Iterator[SpecIssue]:
    for name in labels:
        if name in RESERVED_LABELS:
            yield document.issue((*path, name), f"label {name!r} is set by the engine; "
                                 "choose another name", key=True)


def _clashes(service_labels: Mapping[str, str], slo: SLOSpec, path: PathKey,
             document: SpecDocument) -> Iterator[SpecIssue]:
    sli = slo.sli.ratio or slo.sli.latency or slo.sli.bool_gauge
    if sli is None:
        return
    kind = "ratio" if slo.sli.ratio else "latency" if slo.sli.latency else "bool_gauge"
    static = set(service_labels) | set(slo.labels)
    for i, label in enumerate(sli.group_by):
        where = (*path, "sli", kind, "group_by", i)
        if label in RESERVED_LABELS:
            yield document.issue(where, f"cannot group by {label!r}: the engine sets that label "
                                 "on every series; relabel it in the selector's exporter or "
                                 "group by another label")
        elif label in static:
            yield document.issue(where, f"cannot group by {label!r}: it is also a static label "
                                 "in 'labels'; remove one of them")
        elif label in sli.group_by[:i]:
            yield document.issue(where, f"{label!r} is listed twice in group_by")


def _sli(slo: SLOSpec, path: PathKey, document: SpecDocument) -> Iterator[SpecIssue]:
    sli = slo.sli
    if sli.ratio is not None:
        for field in ("bad", "good", "total"):
            text = getattr(sli.ratio, field)
            if text is not None:
                yield from _selector(text, (*path, "sli", "ratio", field), document)
    if sli.latency is not None:
        base = (*path, "sli", "latency")
        metric = sli.latency.metric
        if not METRIC_NAME.fullmatch(metric):
            yield document.issue((*base, "metric"), f"{metric!r} is not a metric name")
        elif metric.endswith(("_bucket", "_count", "_sum")):
            yield document.issue((*base, "metric"), f"give the histogram's base name, without "
                                 f"the suffix: {metric.rsplit('_', 1)[0]!r}")
        yield from _selector(sli.latency.selector, (*base, "selector"), document,
                             allow_empty_name=True, metric=metric)
    if sli.query is not None:
        for field in ("bad", "good", "total"):
            text = getattr(sli.query, field)
            if text is None:
                continue
            problem = check_query(text) or parser_problem(text)
            if problem is not None:
                offset, message = problem
                yield document.issue((*path, "sli", "query", field), message,
                                     offset=offset or None)
    if sli.bool_gauge is not None:
        for issue in _selector(sli.bool_gauge.metric, (*path, "sli", "bool_gauge", "metric"),
                               document):
            yield replace(issue, message=issue.message.replace(
                _RATE_HINT, "the engine counts the gauge's samples over each window itself "
                "(use an error_ratio SLI for other PromQL)"))
    if sli.error_ratio is not None:
        problem = check_query(sli.error_ratio.query) or parser_problem(sli.error_ratio.query)
        if problem is not None:
            offset, message = problem
            yield document.issue((*path, "sli", "error_ratio", "query"), message,
                                 offset=offset or None)
        if slo.alerting.min_events:
            yield document.issue((*path, "alerting", "min_events"), (
                "an error_ratio SLI has no event counts (its query gives the ratio only), so "
                "min_events cannot be checked; remove it, or use a ratio or query SLI over "
                "the counters to guard low traffic"))


def _selector(text: str, path: PathKey, document: SpecDocument, *,
              allow_empty_name: bool = False, metric: str = "") -> Iterator[SpecIssue]:
    """Our parser first (it names the column and the fix), then the real one on what the
    compiler would write: the latency selector joined to its histogram's name."""
    try:
        selector = parse_selector(text, allow_empty_name=allow_empty_name)
    except SelectorSyntaxError as error:
        yield document.issue(path, f"invalid selector '{text}': {error}",
                             offset=error.offset or None)
        return
    if allow_empty_name and selector.metric:
        yield document.issue(path, "give only the label matchers here, e.g. '{job=\"api\"}'; "
                             "the metric name goes in 'metric'")
        return
    full = f"{metric}{text}" if allow_empty_name else text
    problem = parser_problem(full) if METRIC_NAME.fullmatch(selector.metric or metric) else None
    if problem is not None:
        yield document.issue(path, f"invalid selector '{text}': {problem[1]}")


def _tiers(slo: SLOSpec, path: PathKey, document: SpecDocument,
           windows: AlertWindows) -> Iterator[SpecIssue]:
    period = parse_duration(slo.period)
    objective = slo.objective / 100
    max_burn = 1 / (1 - objective)
    alerting = slo.alerting
    tiers = custom_tiers(slo, windows)
    custom = tiers is not None
    # A set's tiers are shared: their own mistakes are reported once, at the set (see
    # _window_sets); what depends on this SLO is reported at its 'windows'.
    shared = alerting.tiers is None and alerting.windows
    # tier_policies() drops disabled tiers; keep each one's index in the file to point at it.
    indices = [i for i, t in enumerate(tiers or ())
               if t.enabled and (alerting.page if t.severity == "page" else alerting.ticket)]
    policies = tier_policies(slo, windows)
    never: list[str] = []  # tiers that cannot fire, when the objective looks like a fraction
    for i, tier in zip(indices if custom else range(len(policies)), policies, strict=True):
        where: PathKey = ((*path, "alerting", "windows") if shared else
                          (*path, "alerting", "tiers", i) if custom else (*path, "period"))
        long_s = parse_duration(tier.long_window)
        label = f"{tier.severity} tier {tier.long_window}/{tier.short_window}"
        if shared:
            label += f" of alert window set {alerting.windows!r}"
        else:
            yield from _tier_windows(tier, where if custom else None, document, where)
        if long_s > period:  # only custom tiers: the default ones scale with the period
            yield document.issue(where, (
                f"period {slo.period} is shorter than the long window of the {label}; use a "
                "set with shorter windows or a longer period") if shared else (
                f"period {slo.period} is shorter than the {label}'s long window; shorten its "
                "long_window"))
            continue
        burn = burn_rate_threshold(tier.budget_percent, period, long_s)
        if burn > max_burn and slo.objective < 1:
            never.append(f"{label} ({burn:.4g}x)")
        elif burn > max_burn:
            fix = ("lower the tier's budget_percent" if custom else
                   "set 'alerting.tiers' with a smaller budget_percent")
            yield document.issue(
                where if custom else (*path, "objective"),
                f"{label} can never fire: it needs a burn rate of {burn:.4g}x, but at objective "
                f"{slo.objective:g}% even 100% errors burn only {max_burn:.4g}x; raise the "
                f"objective, or {fix}",
            )
    if never:
        # One mistake (a fraction for a percent), so one issue, not one per tier.
        yield document.issue(
            (*path, "objective"),
            f"the objective is a percent: {slo.objective:g} means {slo.objective:g}%, at "
            f"which even 100% errors burn only {max_burn:.4g}x and {', '.join(never)} can "
            f"never fire; did you mean {slo.objective * 100:g}?",
        )


def check_warnings(spec: ServiceSpec, document: SpecDocument) -> list[SpecWarning]:
    """What a valid file probably does not mean; the file still loads and compiles."""
    return [warning for index, slo in enumerate(spec.slos)
            for warning in _slow_tiers(slo, ("slos", index), document, spec.alert_windows)]


def _slow_tiers(slo: SLOSpec, path: PathKey, document: SpecDocument,
                windows: AlertWindows) -> Iterator[SpecWarning]:
    """Custom tiers below 1x: they fire on a burn that leaves budget at the end of the
    period (a steady 0.6x leaves 40%), and stay open for as long as it lasts."""
    period = parse_duration(slo.period)
    shared = slo.alerting.tiers is None and slo.alerting.windows
    field = "windows" if shared else "tiers"
    switches = {"page": slo.alerting.page, "ticket": slo.alerting.ticket}
    for i, tier in enumerate(custom_tiers(slo, windows) or ()):
        if not (tier.enabled and switches[tier.severity]):
            continue
        long_s = parse_duration(tier.long_window)
        burn = burn_rate_threshold(tier.budget_percent, period, long_s)
        if burn >= 1 or long_s > period:
            continue
        longest = format_duration(60 * int(tier.budget_percent / 100 * period // 60))
        yield document.warning(
            (*path, "alerting", "windows") if shared else (*path, "alerting", "tiers", i),
            f"{tier.severity} tier {tier.long_window}/{tier.short_window}"
            f"{f' of alert window set {slo.alerting.windows!r}' if shared else ''} fires at "
            f"{burn:.4g}x, below 1x: it opens on burns that leave budget at the end of the "
            f"{slo.period} period; raise budget_percent to at least "
            f"{100 * long_s / period:.4g}, shorten long_window to at most {longest}, or drop "
            f"'alerting.{field}' for the default tiers of a {slo.period} period")


def check_across(documents: list[tuple[ServiceSpec, SpecDocument]]) -> list[SpecIssue]:
    """Files of one service must agree on it, and never define the same SLO twice."""
    issues: list[SpecIssue] = []
    first_file: dict[str, tuple[ServiceSpec, SpecDocument]] = {}
    slo_at: dict[tuple[str, str], tuple[SpecDocument, PathKey]] = {}
    for spec, document in documents:
        first = first_file.setdefault(spec.service, (spec, document))
        if first[1] is not document:
            for field in ("owner", "runbook_url", "dashboard_url", "labels", "prometheus_rule"):
                if getattr(spec, field) != getattr(first[0], field):
                    if (field,) in first[1].key_positions:
                        line, column = first[1].position((field,))
                        there = f"{first[1].file}:{line}:{column} with a different {field}"
                    else:
                        there = f"{first[1].file} without {field}"
                    issues.append(document.issue(
                        (field,), f"service {spec.service!r} is also defined in {there}; "
                        "make them equal"))
        for index, slo in enumerate(spec.slos):
            path: PathKey = ("slos", index, "name")
            earlier = slo_at.setdefault((spec.service, slo.name), (document, path))
            if earlier[0] is not document:
                line, column = earlier[0].position(earlier[1])
                issues.append(document.issue(path, f"duplicate SLO name {slo.name!r}: service "
                                             f"{spec.service!r} already defines it in "
                                             f"{earlier[0].file}:{line}:{column}"))
    return issues
