"""The compiled view of an SLO file: fractions, seconds and burn-rate thresholds.

Generators and the budget maths see only these frozen values, never YAML or spec models.
The alert tiers, their thresholds and the rule that decides when one fires live in
`burn_rate`; they are re-exported here for the code that reads them off an SLO.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from slo_engine.spec.burn_rate import DEFAULT_TIERS as DEFAULT_TIERS
from slo_engine.spec.burn_rate import AlertTier as AlertTier
from slo_engine.spec.burn_rate import TierPolicy as TierPolicy
from slo_engine.spec.burn_rate import alert_tier, default_tiers
from slo_engine.spec.burn_rate import burn_rate_threshold as burn_rate_threshold
from slo_engine.spec.conventions import BURN_ALERT, SERVICE_LABEL, SLO_LABEL
from slo_engine.spec.document import AlertingSpec, ServiceSpec, SLOSpec, TierAlertSpec, TierSpec
from slo_engine.spec.durations import format_duration, parse_duration
from slo_engine.spec.promql import Selector, parse_selector


@dataclass(frozen=True)
class RatioSLI:
    total: Selector
    bad: Selector | None = None
    good: Selector | None = None
    group_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class LatencySLI:
    selector: Selector  # selector over the histogram's base name
    threshold_seconds: float
    group_by: tuple[str, ...] = ()

    @property
    def bucket(self) -> Selector:
        return self.selector.with_metric(f"{self.selector.metric}_bucket")

    @property
    def count(self) -> Selector:
        return self.selector.with_metric(f"{self.selector.metric}_count")


@dataclass(frozen=True)
class QuerySLI:
    total: str
    bad: str | None = None
    good: str | None = None


@dataclass(frozen=True)
class BoolGaugeSLI:
    """A 0/1 gauge: every sample is an event, a 0 a bad one (Pyrra's bool_gauge)."""

    metric: Selector
    group_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class ErrorRatioSLI:
    """PromQL giving the error ratio itself (Sloth's raw SLI): time-weighted, no events."""

    query: str


SLI = RatioSLI | LatencySLI | QuerySLI | BoolGaugeSLI | ErrorRatioSLI
# SLIs of arbitrary PromQL: their groups are whatever labels the query keeps.
QUERY_SLIS = (QuerySLI, ErrorRatioSLI)

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class TierAlert:
    """What the alerts of the page (or ticket) tiers carry besides the engine's own labels:
    the `severity` value Alertmanager routes on, and the user's extra labels and annotations
    (the SLO-wide ones merged with the tier's, the tier's winning)."""

    severity: str
    labels: Labels = ()
    annotations: Labels = ()


@dataclass(frozen=True)
class Alerting:
    """How an SLO's burn alerts are named and labelled; the tiers themselves stay `page` or
    `ticket` inside the engine, and `kind_of` maps a label value back for the webhook."""

    name: str = BURN_ALERT
    page: TierAlert = TierAlert("page")
    ticket: TierAlert = TierAlert("ticket")

    def of(self, kind: str) -> TierAlert:
        return self.page if kind == "page" else self.ticket

    def kind_of(self, severity: str | None) -> str | None:
        """`page` or `ticket` for the `severity` label value of this SLO's alerts."""
        return next((k for k in ("page", "ticket") if self.of(k).severity == severity), None)


@dataclass(frozen=True)
class SLO:
    service: str
    name: str
    description: str
    objective: float  # fraction, e.g. 0.999
    period: str
    period_seconds: float
    sli: SLI
    labels: tuple[tuple[str, str], ...]  # slo, service, then spec labels: on every series
    tiers: tuple[AlertTier, ...]
    min_events: int
    data_absent: bool
    owner: str
    runbook_url: str | None
    dashboard_url: str | None
    source_file: str
    depends_on: tuple[str, ...] = ()
    alerting: Alerting = Alerting()

    @property
    def error_budget(self) -> float:
        return 1 - self.objective

    @property
    def objective_percent(self) -> str:
        return f"{self.objective * 100:.6g}"

    @property
    def group_by(self) -> tuple[str, ...]:
        return self.sli.group_by if isinstance(self.sli, RatioSLI | LatencySLI | BoolGaugeSLI) \
            else ()

    @property
    def windows(self) -> tuple[str, ...]:
        """The base 5m window and every window an alert tier reads, shortest first."""
        seconds = {300.0: "5m"}
        seconds.update({t.short_seconds: t.short_window for t in self.tiers})
        seconds.update({t.long_seconds: t.long_window for t in self.tiers})
        return tuple(seconds[s] for s in sorted(seconds))


@dataclass(frozen=True)
class Service:
    name: str
    owner: str
    source_file: str
    slos: tuple[SLO, ...]
    depends_on: tuple[str, ...] = ()
    # metadata of its PrometheusRule (`compile --format prometheus-operator`)
    namespace: str | None = None
    rule_labels: Labels = ()


def custom_tiers(spec: SLOSpec,
                 alert_windows: Mapping[str, Sequence[TierSpec]]) -> Sequence[TierSpec] | None:
    """The SLO's own tiers: `alerting.tiers`, or the named set of `alerting.windows`;
    None for the default tiers (or a set the file does not define, which validation reports)."""
    alerting = spec.alerting
    if alerting.tiers is not None:
        return alerting.tiers
    if alerting.windows is not None:
        return alert_windows.get(alerting.windows)
    return None


def tier_policies(spec: SLOSpec, alert_windows: Mapping[str, Sequence[TierSpec]] | None = None,
                  ) -> list[TierPolicy]:
    """The tiers an SLO asks for, after the page/ticket switches and per-tier `enabled`:
    its own `alerting.tiers` or `alerting.windows` set, or the default tiers for its period."""
    alerting = spec.alerting
    custom = custom_tiers(spec, alert_windows or {})
    chosen: list[TierPolicy | TierSpec] = list(custom) if custom is not None \
        else list(default_tiers(parse_duration(spec.period)))
    return [
        TierPolicy(t.severity, format_duration(parse_duration(t.long_window)),
                   format_duration(parse_duration(t.short_window)), t.budget_percent)
        for t in chosen
        if getattr(t, "enabled", True)
        and (alerting.page if t.severity == "page" else alerting.ticket)
    ]


def to_model(spec: ServiceSpec, source_file: str) -> Service:
    """Map a validated spec to the model; assumes validation found no issues."""
    return Service(
        name=spec.service,
        owner=spec.owner,
        source_file=source_file,
        slos=tuple(_slo(spec, slo, source_file) for slo in spec.slos),
        depends_on=tuple(spec.depends_on),
        namespace=spec.prometheus_rule.namespace if spec.prometheus_rule else None,
        rule_labels=tuple(sorted(spec.prometheus_rule.labels.items()))
        if spec.prometheus_rule else (),
    )


def _alerting(spec: AlertingSpec) -> Alerting:
    def tier(extra: TierAlertSpec, default: str) -> TierAlert:
        labels = {**spec.labels, **extra.labels}
        annotations = {**spec.annotations, **extra.annotations}
        return TierAlert(extra.severity or default, tuple(sorted(labels.items())),
                         tuple(sorted(annotations.items())))

    return Alerting(spec.name or BURN_ALERT, tier(spec.page_alert, "page"),
                    tier(spec.ticket_alert, "ticket"))


def _slo(service: ServiceSpec, spec: SLOSpec, source_file: str) -> SLO:
    period_seconds = parse_duration(spec.period)
    tiers = tuple(alert_tier(policy, period_seconds)
                  for policy in tier_policies(spec, service.alert_windows))
    labels = {SLO_LABEL: spec.name, SERVICE_LABEL: service.service}
    labels.update(sorted(service.labels.items()))
    labels.update(sorted(spec.labels.items()))
    return SLO(
        service=service.service,
        name=spec.name,
        description=spec.description,
        objective=spec.objective / 100,
        period=format_duration(period_seconds),
        period_seconds=period_seconds,
        sli=_sli(spec),
        labels=tuple(labels.items()),
        tiers=tiers,
        min_events=spec.alerting.min_events,
        data_absent=spec.alerting.data_absent,
        owner=service.owner,
        runbook_url=spec.runbook_url or service.runbook_url,
        dashboard_url=spec.dashboard_url or service.dashboard_url,
        source_file=source_file,
        depends_on=tuple(service.depends_on),
        alerting=_alerting(spec.alerting),
    )


def _sli(spec: SLOSpec) -> SLI:
    sli = spec.sli
    if sli.ratio is not None:
        ratio = sli.ratio
        return RatioSLI(
            total=parse_selector(ratio.total),
            bad=parse_selector(ratio.bad) if ratio.bad is not None else None,
            good=parse_selector(ratio.good) if ratio.good is not None else None,
            group_by=tuple(ratio.group_by),
        )
    if sli.latency is not None:
        latency = sli.latency
        matchers = parse_selector(latency.selector, allow_empty_name=True).matchers
        return LatencySLI(
            selector=Selector(latency.metric, matchers),
            threshold_seconds=parse_duration(latency.threshold),
            group_by=tuple(latency.group_by),
        )
    if sli.bool_gauge is not None:
        return BoolGaugeSLI(parse_selector(sli.bool_gauge.metric),
                            tuple(sli.bool_gauge.group_by))
    if sli.error_ratio is not None:
        return ErrorRatioSLI(sli.error_ratio.query)
    assert sli.query is not None
    return QuerySLI(total=sli.query.total, bad=sli.query.bad, good=sli.query.good)


def detection_seconds(slo: SLO, tier: AlertTier, error_ratio: float = 1.0) -> float | None:
    """Time for `tier` to fire at a constant `error_ratio` from a clean window (SRE Workbook:
    budget_fraction × period / actual burn rate); None when that burn never reaches it."""
    actual_burn = error_ratio / slo.error_budget
    if actual_burn <= tier.burn_rate:
        return None
    return tier.budget_fraction * slo.period_seconds / actual_burn


def budget_lifetime_seconds(slo: SLO, tier: AlertTier) -> float:
    """How long the whole period's budget lasts at the burn rate `tier` fires at."""
    return slo.period_seconds / tier.burn_rate
