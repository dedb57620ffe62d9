"""Use cases shared by the CLI and the service: each reads like the pipeline."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import quote

from slo_engine.errors import RulesOutError, SpecWarning
from slo_engine.redaction import redact
from slo_engine.rules.compile import compile_service
from slo_engine.rules.files import Drift, Format, check, rule_files, write
from slo_engine.rules.promtool_tests import rule_test_files
from slo_engine.rules.sloth_compat import with_sloth_series
from slo_engine.spec.loader import load_checked, load_services
from slo_engine.spec.model import SLO, Service

if TYPE_CHECKING:  # pandas costs compile's start-up 0.2 s it does not need
    import pandas as pd

    from slo_engine.budget.accounting import BudgetStatus, Calendar
    from slo_engine.budget.backtest import BacktestResult
    from slo_engine.changes.correlation import Correlation
    from slo_engine.changes.events import Change
    from slo_engine.config import ChangesConfig
    from slo_engine.paging.burn_alert import BurnAlert
    from slo_engine.paging.page import PageContext
    from slo_engine.prometheus.lint import LintReport
    from slo_engine.release.gate import Release
    from slo_engine.rules.backfill import BackfillResult, Progress
    from slo_engine.storage import StateStore

EventSource: TypeAlias = Callable[[list[Service], datetime, datetime],
                                  "tuple[pd.DataFrame, list[str]]"]
# The changes of these services between two times (files, the state database, or both).
ChangeFinder: TypeAlias = Callable[[set[str], datetime, datetime], "Iterable[Change]"]


def slo_view_path(service: str, slo: str) -> str:
    """The web view's page of an SLO, under the view's URL."""
    return f"/slo/{quote(service, safe='')}/{quote(slo, safe='')}"


def with_view_links(services: list[Service], public_url: str | None) -> list[Service]:
    """Every SLO without a dashboard_url links to its page of the web view at `public_url`,
    so every page and notice in Slack has a dashboard to open."""
    if not public_url:
        return services
    base = public_url.rstrip("/")
    return [replace(service, slos=tuple(
        slo if slo.dashboard_url else
        replace(slo, dashboard_url=base + slo_view_path(slo.service, slo.name))
        for slo in service.slos)) for service in services]


def validate(paths: Iterable[str | Path]) -> list[Service]:
    """Load and check every SLO file; raises SpecError listing every mistake."""
    return load_services(paths)


def validate_with_warnings(paths: Iterable[str | Path]) -> tuple[list[Service],
                                                                 list[SpecWarning]]:
    """`validate`, and what the files probably do not mean, for the user to see."""
    return load_checked(paths)


def lint_against_prometheus(services: list[Service], url: str) -> LintReport:
    """Do the SLOs' selectors and latency thresholds fit the series Prometheus has?"""
    from slo_engine.prometheus.lint import lint
    from slo_engine.prometheus.source import PrometheusSource

    with PrometheusSource(url) as source:
        return lint(services, source)


def generated_files(services: Iterable[Service], fmt: Format = "prometheus",
                    with_tests: bool = True, sloth_compatible: bool = False) -> dict[str, str]:
    """Every file `compile` owns under its output directory, by relative path; with
    `sloth_compatible`, the rules also record the series Sloth's dashboards read."""
    services = list(services)
    if sloth_compatible and fmt == "vmalert":
        # Sloth's series are copies of the recorded window ratios, which vmalert's layout
        # writes into its alerts instead of recording.
        raise RulesOutError("--sloth-compatible needs the recorded window ratios of the "
                            "Prometheus layout; it cannot be combined with --format vmalert")
    rule_sets = [compile_service(s, "vmalert" if fmt == "vmalert" else "prometheus")
                 for s in services]
    if sloth_compatible:
        rule_sets = [with_sloth_series(s, r) for s, r in zip(services, rule_sets, strict=True)]
    files = rule_files(rule_sets, fmt)
    if with_tests and fmt == "prometheus":
        files.update(rule_test_files(services, files))
    return files


def compile_rules(paths: Iterable[str | Path], out: Path, *, fmt: Format = "prometheus",
                  with_tests: bool = True, check_only: bool = False,
                  sloth_compatible: bool = False) -> Drift:
    files = generated_files(validate(paths), fmt, with_tests, sloth_compatible)
    return check(files, out) if check_only else write(files, out)


def report_window(services: Iterable[Service], at: datetime,
                  calendar: Calendar | None = None) -> tuple[datetime, datetime]:
    """The span of events a report at `at` needs: the longest period, or the calendar one."""
    from slo_engine.budget import accounting as budget

    slos = [slo for service in services for slo in service.slos]
    starts = [budget.period_bounds(slo, at, calendar)[0] for slo in slos]
    longest_window = max((t.long_seconds for slo in slos for t in slo.tiers), default=0)
    return min([*starts, at - timedelta(seconds=longest_window)], default=at), at


def budget_report(paths: Iterable[str | Path], events: EventSource, at: datetime,
                  calendar: Calendar | None = None) -> tuple[list[BudgetStatus], list[str]]:
    """Every SLO's budget at `at`, and the warnings a reader must see (fallbacks, gaps)."""
    from slo_engine.budget import accounting as budget

    services = validate(paths)
    start, end = report_window(services, at, calendar)
    frame, warnings = events(services, start, end)
    return budget.report(services, frame, at, calendar), warnings


def file_events(path: Path) -> EventSource:
    """Events from a CSV or Parquet file: the offline default, and how analysts bring data."""
    def read(services: list[Service], start: datetime, end: datetime) -> tuple[
            pd.DataFrame, list[str]]:
        from slo_engine.budget import ledger

        frame = ledger.read_event_file(path, services)
        return frame, ledger.file_warnings(frame, services, start, end, source=str(path))
    return read


def prometheus_events(url: str, headers: dict[str, str] | None = None,
                      cache_dir: Path | None = None, step_seconds: int = 300) -> EventSource:
    """Events from the compiler's recorded series: a constant number of range queries for all
    SLOs, cached under `cache_dir` so a refresh fetches only what is new."""
    def fetch(services: list[Service], start: datetime, end: datetime) -> tuple[
            pd.DataFrame, list[str]]:
        from slo_engine.prometheus.source import PrometheusSource

        with PrometheusSource(url, headers, cache_dir=cache_dir) as source:
            frame, stats = source.fetch_ledger(services, start, end, step_seconds)
        notes = list(stats.warnings)
        if stats.fallback or stats.unrecorded or stats.missing or stats.partial:
            notes.append(f"{redact(url)}: {stats.summary()}")
        return frame, notes
    return fetch


def prometheus_report_events(url: str, headers: dict[str, str] | None = None,
                             cache_dir: Path | None = None,
                             step_seconds: int = 300) -> EventSource:
    """Events for a budget report only: sums of the recorded series between the report's
    window edges, a few instant queries for all SLOs whatever the period (see
    `prometheus/windows.py`). Charts and backtests need every bucket: `prometheus_events`."""
    def fetch(services: list[Service], start: datetime, end: datetime) -> tuple[
            pd.DataFrame, list[str]]:
        from slo_engine.prometheus.source import PrometheusSource
        from slo_engine.prometheus.windows import fetch_report_ledger

        with PrometheusSource(url, headers, cache_dir=cache_dir) as source:
            frame, stats = fetch_report_ledger(source, services, start, end, step_seconds)
        notes = list(stats.warnings)
        if stats.fallback or stats.unrecorded or stats.missing or stats.partial:
            notes.append(f"{redact(url)}: {stats.summary()}")
        return frame, notes
    return fetch


def backtest_report(paths: Iterable[str | Path], events: EventSource, since: timedelta,
                    until: datetime, policy: Path | None = None) -> tuple[
                        list[BacktestResult], list[str]]:
    """Replay the alert tiers (or those of a policy file) over history, every SLO."""
    from slo_engine.budget.backtest import backtest_slos, load_alert_policy

    services = validate(paths)
    longest = max((t.long_seconds for s in services for slo in s.slos for t in slo.tiers),
                  default=0.0)
    alternative = load_alert_policy(policy) if policy is not None else None
    frame, warnings = events(services, until - since - timedelta(seconds=longest), until)
    slos = [slo for service in services for slo in service.slos]
    return backtest_slos(slos, frame, alternative, since=until - since, until=until), warnings


@dataclass(frozen=True)
class IncidentHistory:
    """Past incidents with the budget each spent and the change before it, and what they were
    read from: `incident_page` renders one of them from the same ledger and changes."""

    slos: list[SLO]
    ledger: pd.DataFrame
    changes: list[Change]
    incidents: pd.DataFrame  # a row per incident, as `attribution.attribute_incidents`
    warnings: list[str]


def incident_history(paths: Iterable[str | Path], events: EventSource, since: timedelta,
                     until: datetime, find_changes: ChangeFinder,
                     settings: ChangesConfig) -> IncidentHistory:
    """Replay the alert tiers over history, merge what fired into incidents, and attribute
    each to the change before its onset (within the lookback) and its budget spent."""
    from slo_engine.changes.correlation import services_of
    from slo_engine.spec.durations import parse_duration

    lookback = parse_duration(settings.lookback)
    services = validate(paths)
    slos = [slo for service in services for slo in service.slos]
    start = until - since
    longest = max((t.long_seconds for slo in slos for t in slo.tiers), default=0.0)
    ledger, warnings = events(services, start - timedelta(seconds=longest), until)
    names = {name for slo in slos for name in services_of(slo)}
    changes = list(find_changes(names, start - timedelta(seconds=longest + lookback), until))
    incidents = attributed_incidents(slos, ledger, changes, start, until, settings)
    return IncidentHistory(slos, ledger, changes, incidents, warnings)


def attributed_incidents(slos: list[SLO], ledger: pd.DataFrame, changes: list[Change],
                         since: datetime, until: datetime,
                         settings: ChangesConfig) -> pd.DataFrame:
    """The incidents of `incident_history` from a ledger already read: the alert tiers
    replayed from `since`, merged, and each attributed to the change before its onset."""
    from slo_engine.budget.attribution import attribute_incidents, backtest_incidents
    from slo_engine.budget.backtest import backtest_slos
    from slo_engine.spec.durations import parse_duration

    results = backtest_slos(slos, ledger, since=since, until=until)
    return attribute_incidents(
        backtest_incidents(results), changes, slos, ledger,
        lookback_s=parse_duration(settings.lookback),
        suspect_window_s=parse_duration(settings.suspect_window),
        rollback_template=settings.rollback_template)


@dataclass(frozen=True)
class ViewSnapshot:
    """What the web view shows, read once from the same sources as `report`: the budgets at
    `at`, the ledger of the longest period (for burn-downs and incidents) and its changes."""

    services: list[Service]
    statuses: list[BudgetStatus]
    ledger: pd.DataFrame
    changes: list[Change]  # oldest first
    at: datetime
    warnings: list[str]
    settings: ChangesConfig

    @property
    def slos(self) -> list[SLO]:
        return [slo for service in self.services for slo in service.slos]


def view_snapshot(services: list[Service], events: EventSource, at: datetime,
                  find_changes: ChangeFinder, settings: ChangesConfig) -> ViewSnapshot:
    """Every SLO's budget at `at` (as `budget_report`) with the events and changes of the
    longest period, so every page of the view is computed from one read."""
    from slo_engine.budget import accounting as budget
    from slo_engine.changes.correlation import services_of

    start, end = report_window(services, at)
    ledger, warnings = events(services, start, end)
    names = {name for s in services for slo in s.slos for name in services_of(slo)}
    changes = sorted(find_changes(names, start, end), key=lambda c: c.time)
    return ViewSnapshot(services, budget.report(services, ledger, at), ledger, changes, at,
                        warnings, settings)


def snapshot_incidents(snapshot: ViewSnapshot, slos: list[SLO] | None = None) -> pd.DataFrame:
    """The incidents of the snapshot's period (after the longest alert window has filled), of
    `slos` or of every SLO, attributed as `incidents` does."""
    slos = snapshot.slos if slos is None else slos
    longest = max((t.long_seconds for slo in slos for t in slo.tiers), default=0.0)
    start = report_window(snapshot.services, snapshot.at)[0] + timedelta(seconds=longest)
    return attributed_incidents(slos, snapshot.ledger, snapshot.changes, start, snapshot.at,
                                snapshot.settings)


def release_decision(snapshot: ViewSnapshot, service: str) -> Release:
    """The release gate's answer for a service from the snapshot's budgets (the built-in
    policy, as `gate` without --policy)."""
    from slo_engine.release import gate

    owner = next(s for s in snapshot.services if s.name == service)
    statuses = [s for s in snapshot.statuses if s.service == service]
    labels = {(slo.service, slo.name): dict(slo.labels) for slo in owner.slos}
    return gate.release(gate.decide(gate.DEFAULT_POLICY, service, statuses, snapshot.at,
                                    labels))


def backfill_rules(paths: Iterable[str | Path], prometheus_url: str, start: datetime,
                   end: datetime, out: Path, first_level: int = 1,
                   progress: Progress | None = None) -> BackfillResult:
    """TSDB blocks of the generated recording rules over history, one level at a time."""
    from slo_engine.rules.backfill import backfill

    rule_sets = [compile_service(s) for s in validate(paths)]
    return backfill(rule_sets, prometheus_url, start, end, out, progress=progress,
                    first_level=first_level)


def incident_page(slos: Iterable[SLO], ledger: pd.DataFrame, incident: Mapping[str, Any],
                  changes: Iterable[Change], settings: ChangesConfig) -> PageContext:
    """The page the engine would have sent when a past incident (a row of
    `attribution.attribute_incidents`) first fired: its budget then, and the changes before
    its onset. The demo shows it; a post-incident review can too."""
    import pandas as pd

    from slo_engine.budget import accounting as budget
    from slo_engine.budget.ledger import group_labels
    from slo_engine.changes.correlation import correlate, services_of
    from slo_engine.paging.burn_alert import BurnAlert, Severity
    from slo_engine.paging.page import PageContext
    from slo_engine.spec.durations import parse_duration

    slo = next(s for s in slos if (s.service, s.name) == (incident["service"], incident["slo"]))
    severity: Severity = "page" if incident["severity"] == "page" else "ticket"
    fired = [t.split(" ", 1)[1] for t in str(incident["tiers"]).split(", ")
             if t.startswith(severity)]
    long_window, short_window = (fired[0] if fired else "/").split("/")
    at: datetime = pd.Timestamp(incident["start"]).to_pydatetime()
    owner = Service(slo.service, slo.owner, slo.source_file, (slo,), slo.depends_on)
    status = next((s for s in budget.report([owner], ledger, at)
                   if s.group == incident["group"]), None)
    rates = status.burn_rates if status is not None else {}
    alert = BurnAlert(
        service=slo.service, slo=slo.name,
        group=BurnAlert.group_for(slo, group_labels(str(incident["group"]))),
        severity=severity, long_window=long_window, short_window=short_window, firing=True,
        at=at, burn_rate_long=rates.get(long_window), burn_rate_short=rates.get(short_window))
    onset = incident["onset"]
    correlation = correlate(
        changes, None if pd.isna(onset) else pd.Timestamp(onset).to_pydatetime(), fired_at=at,
        lookback_s=parse_duration(settings.lookback),
        suspect_window_s=parse_duration(settings.suspect_window),
        rollback_template=settings.rollback_template, services=services_of(slo))
    return PageContext(alert, slo, status, correlation)


def ratio_window(alert: BurnAlert, slo: SLO) -> tuple[datetime, datetime]:
    """The span of the 5m ratio `estimate_onset` reads for an alert: its tier's long window."""
    from slo_engine.changes.correlation import DEFAULT_LOOKBACK_S, onset_tier

    tier = onset_tier(slo, alert.severity, alert.long_window, alert.short_window)
    long_seconds = tier.long_seconds if tier is not None else DEFAULT_LOOKBACK_S
    return alert.at - timedelta(seconds=long_seconds), alert.at


def correlate_alert(alert: BurnAlert, slo: SLO, state: StateStore, ratio: pd.Series | None,
                    config: ChangesConfig | None = None) -> Correlation:
    """The correlation a page about `alert` shows: the onset estimated from `ratio` (the 5m
    error ratio over `ratio_window`, e.g. from `prometheus.queries.error_ratio_series`; None
    when Prometheus could not be read, which leaves the onset unknown and anchors the lookback
    at the alert's time), and the changes of the SLO's service and its `depends_on` from the
    state database.
    """
    from slo_engine.changes.correlation import (
        correlate,
        estimate_onset,
        onset_tier,
        services_of,
    )
    from slo_engine.config import ChangesConfig
    from slo_engine.spec.durations import parse_duration

    config = config or ChangesConfig()
    lookback = parse_duration(config.lookback)
    tier = onset_tier(slo, alert.severity, alert.long_window, alert.short_window)
    onset = estimate_onset(ratio, alert.at, slo, tier) \
        if ratio is not None and tier is not None else None
    end = onset or alert.at
    services = services_of(slo)
    changes = state.changes(services=services, since=end - timedelta(seconds=lookback),
                            until=end)
    return correlate(changes, onset, fired_at=alert.at, lookback_s=lookback,
                     suspect_window_s=parse_duration(config.suspect_window),
                     rollback_template=config.rollback_template, services=services)


def write_dashboards(paths: Iterable[str | Path], out: Path, grafana_path: str) -> list[Path]:
    """The Grafana dashboards of the SLOs and their provisioning file, written under `out`."""
    from slo_engine.dashboards.grafana import dashboard_files

    written: list[Path] = []
    for name, text in dashboard_files(validate(paths), grafana_path).items():
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written
