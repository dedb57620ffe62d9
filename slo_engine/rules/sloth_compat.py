"""The series Sloth's Grafana dashboards read, derived from slo-engine's own recorded series
(`compile --sloth-compatible`), so a team keeps those dashboards while it migrates.

Names and labels are Sloth's (its `examples/_gen/*.yml`): `slo:sli_error:ratio_rate<window>`
per window and for the period, `slo:objective:ratio`, `slo:error_budget:ratio`,
`slo:time_period:days`, `slo:current_burn_rate:ratio`, `slo:period_burn_rate:ratio`,
`slo:period_error_budget_remaining:ratio` and `sloth_slo_info`, labelled `sloth_id`,
`sloth_service`, `sloth_slo` (and `sloth_window`) plus the spec's labels. They carry no `slo`
or `service` label, so a reader of the engine's own series (which share the name
`slo:objective:ratio`) never sees them. No raw series is read again: each ratio is the
engine's window ratio, relabelled.
"""

from __future__ import annotations

from dataclasses import replace

from slo_engine.rules.compile import RecordingRule, RuleGroup, RuleSet, recorded, recorded_windows
from slo_engine.spec import conventions as names
from slo_engine.spec.model import SLO, Service
from slo_engine.spec.promql import number

SLI_ERROR_FMT = "slo:sli_error:ratio_rate{window}"
OBJECTIVE = "slo:objective:ratio"
ERROR_BUDGET = "slo:error_budget:ratio"
TIME_PERIOD_DAYS = "slo:time_period:days"
CURRENT_BURN_RATE = "slo:current_burn_rate:ratio"
PERIOD_BURN_RATE = "slo:period_burn_rate:ratio"
PERIOD_BUDGET_REMAINING = "slo:period_error_budget_remaining:ratio"
SLO_INFO = "sloth_slo_info"
# What Sloth's CLI writes for Prometheus rule files; dashboards that filter on it keep working.
SLOTH_MODE = "cli-gen-prom"


def sli_error_metric(window: str) -> str:
    return SLI_ERROR_FMT.format(window=window)


def sloth_id(slo: SLO) -> str:
    return f"{slo.service}-{slo.name}"


def sloth_labels(slo: SLO, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    """The spec's labels and Sloth's identity labels, sorted as Sloth writes them."""
    own = {names.SLO_LABEL, names.SERVICE_LABEL}
    labels = {k: v for k, v in slo.labels if k not in own}
    labels.update({"sloth_id": sloth_id(slo), "sloth_service": slo.service,
                   "sloth_slo": slo.name})
    labels.update(extra)
    return tuple(sorted(labels.items()))


def _selector(metric: str, slo: SLO) -> str:
    return (f'{metric}{{sloth_id="{sloth_id(slo)}", sloth_service="{slo.service}", '
            f'sloth_slo="{slo.name}"}}')


def _relabelled(metric: str, slo: SLO) -> str:
    """One of the engine's series without its `slo`/`service` labels (its groups stay)."""
    return f"sum without ({names.SLO_LABEL}, {names.SERVICE_LABEL}) ({recorded(metric, slo)})"


def window_rules(slo: SLO, windows: set[str]) -> list[RecordingRule]:
    """`slo:sli_error:ratio_rate<w>` of the engine's windows in `windows`, in spec order."""
    return [RecordingRule(sli_error_metric(w), _relabelled(names.error_ratio_metric(w), slo),
                          sloth_labels(slo, ("sloth_window", w)))
            for w in slo.windows if w in windows]


def current_burn_rule(slo: SLO) -> RecordingRule:
    base = _selector(sli_error_metric(names.BASE_WINDOW), slo)
    return RecordingRule(CURRENT_BURN_RATE, f"{base} / {number(slo.error_budget)}",
                         sloth_labels(slo))


def period_rules(slo: SLO) -> list[RecordingRule]:
    """The period's error ratio and what Sloth derives from it, with its constants."""
    period = sli_error_metric(slo.period)
    labels = sloth_labels(slo)
    return [
        RecordingRule(period, _relabelled(names.PERIOD_ERROR_RATIO, slo),
                      sloth_labels(slo, ("sloth_window", slo.period))),
        RecordingRule(OBJECTIVE, f"vector({number(slo.objective)})", labels),
        RecordingRule(ERROR_BUDGET, f"vector({number(slo.error_budget)})", labels),
        RecordingRule(TIME_PERIOD_DAYS, f"vector({number(slo.period_seconds / 86400)})",
                      labels),
        RecordingRule(PERIOD_BURN_RATE,
                      f"{_selector(period, slo)} / {number(slo.error_budget)}", labels),
        RecordingRule(PERIOD_BUDGET_REMAINING, f"1 - {_selector(PERIOD_BURN_RATE, slo)}",
                      labels),
        RecordingRule(SLO_INFO, "vector(1)",
                      sloth_labels(slo, ("sloth_mode", SLOTH_MODE),
                                   ("sloth_objective", slo.objective_percent))),
    ]


def with_sloth_series(service: Service, rule_set: RuleSet) -> RuleSet:
    """The service's rule set with Sloth's series appended to each SLO's two groups: a
    window's ratio in the group that records it (so it is as fresh), the period's series in
    the slow group. The engine's own rules are unchanged and stay first."""
    extra: dict[str, list[RecordingRule]] = {}
    for slo in service.slos:
        fast, slow = (w - {slo.period} for w in recorded_windows(slo))  # named once
        extra[names.alert_group_name(slo.service, slo.name)] = [
            *window_rules(slo, fast), current_burn_rule(slo)]
        extra[names.slow_group_name(slo.service, slo.name)] = [
            *window_rules(slo, slow), *period_rules(slo)]
    groups = tuple(RuleGroup(g.name, (*g.rules, *extra.get(g.name, ())), g.interval)
                   for g in rule_set.groups)
    return replace(rule_set, groups=groups)
