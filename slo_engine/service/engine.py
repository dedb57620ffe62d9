"""The long-running engine: what `slo-engine run` holds and what its jobs do.

One object owns the loaded SLOs, the state database, the Prometheus sources, the notifier
and the engine's own metrics. The scheduler calls its jobs (evaluate, refresh budgets, send
the digest, reload SLO files) and the HTTP API its requests (changes, the webhook, status,
readiness). Both paging modes meet in `_record_transitions`: burn alerts, enriched with the
SLO group's budget and what changed before their onset, go to the notifier.

Nothing a job meets at run time stops the engine: Prometheus or Slack outages are logged,
counted in its metrics and retried at the next run (what a Prometheus outage does is
`service.outage`); an invalid set of SLO files is refused while the last good one keeps
running. Which transitions page is `paging.dedup`; what is kept is `storage`.

Transitions are recorded in one unit of work: the firing set, the incidents and the outbox
calls they imply commit together or not at all. A refused write (the database locked by
another process, a full disk) leaves the firing set as it was, so the same transitions are
found again and page once the write goes through; /readyz and the metrics say so meanwhile.
Slack calls leave from the outbox on their own thread (`service.delivery`): no job waits
for Slack.

Replicas sharing one state store (`service.leadership`): only the lease's holder runs the
jobs and delivers the outbox, and its writes of transitions, notices and deliveries check
the lease's fencing token in their own transaction; every replica takes changes and
webhooks, whose transitions are decided again inside the transaction that records them, so
a webhook two replicas receive pages once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from slo_engine import app
from slo_engine.budget import accounting as budget
from slo_engine.budget import charts
from slo_engine.budget.accounting import BudgetStatus
from slo_engine.changes.events import Change, read_change_lines
from slo_engine.config import EngineConfig
from slo_engine.errors import (
    ChangeError,
    ConfigError,
    LeaseLost,
    SloEngineError,
    SourceError,
    SourceUnavailable,
    SpecError,
    StateError,
)
from slo_engine.paging import notices
from slo_engine.paging.alertmanager import WebhookPayload, burn_alerts
from slo_engine.paging.blocks import SlackMessage
from slo_engine.paging.burn_alert import BurnAlert
from slo_engine.paging.dedup import (
    UnseenHold,
    apply_alerts,
    decode_firing,
    encode_firing,
    tier_id,
    transitions,
)
from slo_engine.paging.evaluator import (
    BurnPlan,
    alert_burn_queries,
    burn_rate_in,
)
from slo_engine.paging.notifier import Notifier
from slo_engine.paging.page import PageContext
from slo_engine.paging.slack import Delivery, Posted, delivery_from_config
from slo_engine.prometheus.build_info import build_info_changes
from slo_engine.prometheus.client import COLLECTOR_PAUSE
from slo_engine.prometheus.queries import error_ratio_series
from slo_engine.prometheus.source import PrometheusSource
from slo_engine.prometheus.windows import fetch_report_ledger
from slo_engine.redaction import redact
from slo_engine.service.delivery import DeliveryLoop
from slo_engine.service.leadership import Leadership, Role, default_replica_id
from slo_engine.service.outage import PrometheusOutage
from slo_engine.service.telemetry import Telemetry
from slo_engine.spec.durations import describe_seconds, parse_duration
from slo_engine.spec.loader import discover
from slo_engine.spec.model import SLO, Service
from slo_engine.storage import StateStore, StateWriter
from slo_engine.storage.opening import open_store

if TYPE_CHECKING:
    import pandas as pd
    from starlette.types import ASGIApp

log = logging.getLogger(__name__)

PROBE_QUERY = "vector(1)"
PROBE_TIMEOUT = 5.0  # seconds: /readyz must answer before the kubelet gives up
RECENT_BUILD_INFO = timedelta(minutes=30)  # synced before each page: deploys just landed
# Seconds between attempts to record transitions the state database refused, within half
# an evaluation interval (each attempt may also wait SQLite's busy timeout); the next
# evaluation tries again after that.
STATE_WRITE_BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)
WEBHOOK_WRITE_SECONDS = 5.0  # then 503: Alertmanager sends the webhook again
Clock = Callable[[], datetime]
# Given the firing set as the recording transaction reads it: the new set and its transitions.
Decide = Callable[[dict[str, BurnAlert]], tuple[dict[str, BurnAlert], list[BurnAlert]]]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Engine:
    """The service's state and jobs (implements http_api.EngineAPI)."""

    def __init__(self, config: EngineConfig, services: list[Service], state: StateStore,
                 delivery: Delivery, *, telemetry: Telemetry | None = None,
                 clock: Clock = _utc_now) -> None:
        self.config = config
        self.state = state
        self.telemetry = telemetry or Telemetry()
        self.leadership = Leadership(state, config.service.replica_id or default_replica_id(),
                                     _delta(config.service.lease), self.telemetry,
                                     clock=clock, on_lead=self._wake_delivery_loop)
        self.notifier = Notifier(state, _CountingDelivery(delivery, self.telemetry),
                                 config.channel_for, fence=self.leadership.fence)
        self.reload_error: str | None = None
        self._clock = clock
        self._services = services
        self._retired: dict[tuple[str, str], SLO] = {}  # removed by a reload, maybe firing
        self._plan: tuple[list[Service], BurnPlan] | None = None  # of the services loaded
        self._files = _fingerprint(config.slo_files)
        self._statuses: list[BudgetStatus] = []
        self._sources: list[PrometheusSource] = []  # every one opened, closed by close()
        self._idle: list[PrometheusSource] = []  # those no thread is using now
        self._cached: PrometheusSource | None = None
        self._sources_lock = threading.Lock()
        self._unseen = UnseenHold()
        self._outage = PrometheusOutage(state, redact(config.prometheus.url),
                                        _delta(config.schedule.no_data_after),
                                        self._announce)
        self._paging = threading.Lock()  # one transition of the firing set at a time
        self._refreshing = threading.Lock()  # the ledger cache has one writer
        self._write_error: str | None = None  # why the last transitions were not recorded
        self._pending = 0  # how many they were
        self._delivery_loop: DeliveryLoop | None = None

    @classmethod
    def from_config(cls, config: EngineConfig, *, telemetry: Telemetry | None = None,
                    clock: Clock = _utc_now) -> Engine:
        """Load the SLO files (SpecError lists every mistake), open the state database and
        set up Slack delivery (ConfigError without a token, unless dry_run)."""
        services = app.with_view_links(app.validate(config.slo_files), config.http.public_url)
        state = open_store(config.state)
        return cls(config, services, state, delivery_from_config(config.slack),
                   telemetry=telemetry, clock=clock)

    # --- what the HTTP API asks -----------------------------------------------------------

    @property
    def services(self) -> list[Service]:
        return self._services

    def record_changes(self, changes: list[Change]) -> list[Change]:
        return self.state.add_changes(changes)

    def slo_statuses(self) -> list[BudgetStatus]:
        return list(self._statuses)

    def view_snapshot(self) -> app.ViewSnapshot:
        """What the web view shows: the budget report as the refresh makes it, from the
        refresh's ledger cache (so only what is new is fetched), with the changes the state
        database holds."""
        def events(services: list[Service], start: datetime, end: datetime) -> tuple[
                pd.DataFrame, list[str]]:
            with self._refreshing:
                return self._ledger(services, start, end, cache=True), []

        def find_changes(names: set[str], since: datetime, until: datetime) -> list[Change]:
            return self.state.changes(services=names, since=since, until=until)

        return app.view_snapshot(self._services, events, self._clock(), find_changes,
                                 self.config.changes)

    def web_view(self) -> ASGIApp | None:
        """The read-only web view of these SLOs, read again at most once per budget refresh;
        None when http.view.enabled is off."""
        view = self.config.http.view
        if not view.enabled:
            return None
        from slo_engine.web.server import SnapshotCache, create_view, view_auth

        cache = SnapshotCache(self.view_snapshot,
                              parse_duration(self.config.schedule.budget_refresh))
        return create_view(cache, view_auth(view))

    def readiness(self) -> dict[str, str]:
        """Prometheus answers a query now, and the state database takes a write."""
        checks: dict[str, str] = {}
        try:
            with self._new_source(timeout=PROBE_TIMEOUT, retries=0) as probe:
                probe.instant(PROBE_QUERY)
            checks["prometheus"] = "ok"
        except SourceError as error:
            checks["prometheus"] = str(error)
        try:
            self.state.probe_write()
            checks["state"] = "ok"
        except StateError as error:
            checks["state"] = f"failing ({error})"
        refused = self._write_error
        checks["transitions"] = "ok" if refused is None else (
            f"{self._pending} transition(s) not recorded, so not paged yet (retried with "
            f"backoff): {refused}")
        return checks

    def role(self) -> Role:
        """Whether this replica leads, and who holds the lease."""
        return self.leadership.role()

    def handle_alertmanager(self, payload: WebhookPayload) -> int:
        """Alertmanager mode: each burn alert of a known SLO, enriched and routed like the
        engine's own. Returns how many alerts were accepted. Any replica takes it: which
        alerts are transitions is decided again in the recording transaction, against the
        firing set other replicas may have just written, so a webhook sent to two replicas
        pages once; the leader delivers."""
        alerts, skipped = burn_alerts(payload, self._services)
        if self.config.paging != "alertmanager":
            skipped += [f"{a.incident_key}: paging is 'engine' in the engine config, so "
                        "webhooks are ignored (set paging: alertmanager to page from them)"
                        for a in alerts]
            alerts = []
        for reason in skipped:
            log.warning("webhook alert skipped: %s", reason)
        self.telemetry.webhook_alerts.labels("skipped").inc(len(skipped))
        self.telemetry.webhook_alerts.labels("accepted").inc(len(alerts))
        with self._paging:
            previous = self.firing()
            current, changed = apply_alerts(previous, alerts)
            if not self._record_transitions(
                    self._contexts(changed), current, within=WEBHOOK_WRITE_SECONDS,
                    decide=lambda firing: apply_alerts(firing, alerts)):
                raise StateError(f"the alerts were not recorded: {self._write_error}; send "
                                 "them again")
        self._wake_delivery()
        return len(alerts)

    # --- jobs -----------------------------------------------------------------------------

    def evaluate(self) -> list[BurnAlert]:
        """One evaluation: every SLO's tiers (engine mode) or a reachability probe
        (alertmanager mode); transitions go to the notifier. Returns the transitions.
        Leader only, as every job."""
        if not self.leadership.leading():
            return []
        at = self._clock()
        began = time.perf_counter()
        try:
            with self._source() as source:
                if self.config.paging == "engine":
                    plan = self._burn_plan()
                    with COLLECTOR_PAUSE:  # 70,000 series at 10,000 SLOs, and their index
                        readings = plan.readings({name: source.instant(query, at)
                                                  for name, query in plan.queries.items()})
                else:
                    source.instant(PROBE_QUERY, at)
        except SourceError as error:
            self._count_query_error(error)
            log.warning("Prometheus query failed: %s", error)
            self._outage.failed(str(error), at)
            self._wake_delivery()
            return []
        self._outage.answered(at)
        changed: list[BurnAlert] = []
        if self.config.paging == "engine":
            with self._paging:
                previous = self.firing()
                current = readings.firing(at)
                held = self._unseen.apply(previous, readings.unseen(previous), at)
                for key, unseen_for in held.released.items():
                    log.warning("%s: no samples for %s, resolved", key,
                                describe_seconds(unseen_for.total_seconds()))
                current.update(held.kept)
                changed = transitions(previous, current, at)
                # No transition, nothing to write: a write each evaluation would only wait
                # for (or fail on) a database another process holds.
                if changed and not self._record_transitions(
                        self._contexts(changed), current,
                        within=parse_duration(self.config.schedule.evaluate) / 2, fenced=True):
                    changed = []
        self.telemetry.evaluation_seconds.observe(time.perf_counter() - began)
        self.telemetry.last_evaluation.set(time.time())
        self._wake_delivery()
        return changed

    def refresh_budgets(self) -> list[BudgetStatus]:
        """Every SLO's budget from Prometheus (cached ledger), the budget gauges, and (on the
        leader) the budget-policy notices due. On an outage the last statuses stay. A standby
        reads too, so its API, web view and gauges answer as the leader's do."""
        at = self._clock()
        with self._refreshing:
            began = time.perf_counter()
            services = self._services
            try:
                statuses = self._report(services, at)
            except SourceError as error:  # outages are the evaluation's to announce
                self._count_query_error(error)
                log.warning("budget refresh failed, the last budgets stay: %s", error)
                return self._statuses
            self._statuses = statuses
            self.telemetry.budget_refresh_seconds.observe(time.perf_counter() - began)
        self.telemetry.set_budgets({(s.service, s.slo, s.group): s.error_budget_remaining
                                    for s in statuses})
        if not self.leadership.leading():
            return statuses
        self._send_budget_notices(statuses)
        self.sync_changes(at - _delta(self.config.changes.lookback), at)
        self._wake_delivery()
        return statuses

    def send_digest(self) -> int:
        """The daily digest to every owner channel, each with the burn-down of its SLO with
        the least budget left (schedule.digest_chart); returns how many were queued (a
        digest already sent today under the same key is not sent again, nor drawn)."""
        if not self.leadership.leading():
            return 0
        at = self._clock()
        statuses = self._statuses or self.refresh_budgets()
        routable = {k: slo for k, slo in self._slos().items()
                    if self._channel(slo.owner, "ticket") is not None}
        shown = [s for s in statuses if (s.service, s.slo) in routable]

        def channel_of(owner: str) -> str:
            return self.config.channel_for(owner, "ticket")

        messages = {channel: message for channel, message
                    in notices.digest_messages(shown, routable, channel_of, at).items()
                    if not self.notifier.has_notice(_digest_key(channel, at))}
        drawn: dict[str, _Chart] = {}
        if messages and self.config.schedule.digest_chart:
            least = notices.least_budget(shown, routable, channel_of)
            for channel in sorted(messages.keys() - least.keys()):
                log.warning("the digest to %s goes without a chart: none of its SLOs has a "
                            "budget figure (no events in their periods)", channel)
            drawn = self._digest_charts({c: s for c, s in least.items() if c in messages}, at)
        sent = 0
        for channel, message in messages.items():
            chart = drawn.get(channel)
            sent += self._send_notice(channel, message, _digest_key(channel, at),
                                      (chart.filename, chart.png) if chart else None,
                                      chart.title if chart else None)
        self._wake_delivery()
        return sent

    def reload(self) -> bool:
        """Load the SLO files again; an invalid set is refused (logged, `reload_error`)
        and the last good one keeps running. Returns whether the new set was taken."""
        self._files = _fingerprint(self.config.slo_files)
        try:
            services = app.with_view_links(app.validate(self.config.slo_files),
                                           self.config.http.public_url)
        except SpecError as error:
            self.reload_error = str(error)
            log.error("SLO files rejected, still running the last good set (%d SLOs); fix "
                      "these and save again (or send SIGHUP):\n%s",
                      sum(len(s.slos) for s in self._services), error)
            return False
        old = self._slos()
        self._services = services
        new = self._slos()
        self._retired.update({k: slo for k, slo in old.items() if k not in new})
        self.reload_error = None
        log.info("SLO files reloaded: %d SLOs of %d services", len(new), len(services))
        return True

    def reload_if_changed(self) -> bool | None:
        """Reload when an SLO file was added, removed or modified since the last load;
        None when nothing changed."""
        if _fingerprint(self.config.slo_files) == self._files:
            return None
        return self.reload()

    def sync_changes(self, start: datetime, end: datetime) -> int:
        """Import the configured change files and the build-info metric's deploys in
        [start, end]; returns how many changes were new. Failures are logged."""
        found: list[Change] = []
        for path in self.config.changes.files:
            try:
                found.extend(read_change_lines(path))
            except ChangeError as error:
                log.error("change file not imported: %s", error)
        for spec in self.config.changes.build_info:
            try:
                with self._source() as source:
                    found.extend(build_info_changes(source, spec, start, end))
            except SourceError as error:
                self._count_query_error(error)
                log.warning("build-info deploys not read: %s", error)
            except ConfigError as error:
                log.error("build-info deploys not read: %s", error)
        added = self.state.add_changes(found) if found else []
        for change in added:
            self.telemetry.changes_recorded.labels(change.source).inc()
        return len(added)

    def deliver(self) -> datetime | None:
        """Retry what waits in the Slack outbox (oldest first), and export its depth.
        Returns when the head of the outbox may be tried again, if Slack asked it to wait.
        Only the leader delivers."""
        if not self.leadership.leading():
            return None
        try:
            report = self.notifier.flush()
            for error in report.errors:
                log.error("Slack refused a message: %s", error)
        except LeaseLost as error:
            self.leadership.lost(error)
        except SloEngineError as error:
            log.error("Slack delivery failed: %s", error)
        try:
            self.telemetry.outbox_depth.set(self.notifier.outbox_depth())
            return self.notifier.next_attempt()
        except StateError as error:
            log.error("outbox not read: %s", error)
            return None

    def start_delivery(self) -> None:
        """Deliver the outbox, and renew the leadership lease, on threads of their own from
        now on (the running service); without them, each job takes the lease and delivers
        before it returns (one-shot uses, tests)."""
        if self._delivery_loop is None:
            self._delivery_loop = DeliveryLoop(self.deliver)
            self._delivery_loop.start()
            self.leadership.start()

    def _wake_delivery_loop(self) -> None:
        """Leadership was just taken: what waits in the outbox goes now, not at the next
        look."""
        if self._delivery_loop is not None:
            self._delivery_loop.wake()

    def _wake_delivery(self) -> None:
        if self._delivery_loop is not None:
            self._delivery_loop.wake()
        else:
            self.deliver()
        try:
            self.telemetry.outbox_depth.set(self.notifier.outbox_depth())
        except StateError as error:
            log.error("outbox not read: %s", error)

    def close(self) -> None:
        """Stop the delivery thread, make a last delivery attempt, release the lease (a
        standby takes over at once), then close the sources and the state database."""
        if self._delivery_loop is not None:
            self._delivery_loop.stop()
            self._delivery_loop = None
        if self.leadership.token is not None:
            self.deliver()
        self.leadership.stop()
        with self._sources_lock:
            for source in self._sources:
                source.close()
            self._sources.clear()
            self._idle.clear()
            self._cached = None
        self.state.close()

    # --- paging ---------------------------------------------------------------------------

    def _contexts(self, alerts: list[BurnAlert]) -> list[PageContext]:
        """Each transition with its page's figures, read before the write that records them
        (no query runs while the state database is held)."""
        loaded = self._slos()
        paged: list[tuple[BurnAlert, SLO]] = []
        for alert in alerts:
            slo = loaded.get((alert.service, alert.slo)) or \
                self._retired.get((alert.service, alert.slo))
            if slo is None:
                log.warning("%s %s: the SLO is no longer loaded; not notified",
                            alert.incident_key, "fired" if alert.firing else "resolved")
                continue
            paged.append((alert, slo))
        statuses = self._statuses_now([slo for _, slo in paged])
        return [self._context(alert, slo, statuses) for alert, slo in paged]

    def _record_transitions(self, contexts: list[PageContext],
                            current: Mapping[str, BurnAlert], *, within: float,
                            decide: Decide | None = None, fenced: bool = False) -> bool:
        """The transitions' incidents and Slack calls and the new firing set, in one unit of
        work; a refused write is retried with backoff for `within` seconds. False when it
        never went through: the firing set is as before, so the caller finds the same
        transitions again and they page then, once. With `decide`, the new set and its
        transitions are decided again from the firing set the transaction reads (another
        replica may have written it since `contexts` were prepared); `fenced`: a leader-only
        write, rolled back (and not retried) when this replica no longer leads."""
        deadline = time.monotonic() + within
        for delay in (*STATE_WRITE_BACKOFF, None):
            try:
                with self.state.transaction() as unit:
                    if fenced:
                        self.leadership.fence(unit)
                    recorded, firing = contexts, current
                    if decide is not None:
                        firing, changed = decide(decode_firing(unit.firing()))
                        recorded = self._as_decided(contexts, changed)
                    for context in recorded:
                        self._record(unit, context)
                    unit.save_firing(encode_firing(firing))
            except LeaseLost as error:
                self.leadership.lost(error)
                return False
            except StateError as error:
                self.telemetry.state_write_failures.inc()
                self._pending = len(contexts)
                self.telemetry.pending_transitions.set(self._pending)
                self._write_error = str(error)
                if delay is None or time.monotonic() + delay > deadline:
                    log.error("%d transition(s) not recorded, so not paged yet; tried again "
                              "at the next evaluation: %s", len(contexts), error)
                    return False
                log.warning("%d transition(s) not recorded, trying again in %.1f s: %s",
                            len(contexts), delay, error)
                time.sleep(delay)
                continue
            if self._write_error is not None:
                log.info("transitions recorded again after the state database refused them")
            self._write_error = None
            self._pending = 0
            self.telemetry.pending_transitions.set(0)
            return True
        raise AssertionError("unreachable: the last attempt returns")

    def _as_decided(self, contexts: list[PageContext],
                    changed: list[BurnAlert]) -> list[PageContext]:
        """The prepared contexts of the transitions as decided in the transaction; one
        prepared for none (the firing set moved meanwhile) goes with what is known."""
        prepared = {(tier_id(c.alert), c.alert.firing): c for c in contexts}
        decided: list[PageContext] = []
        for alert in changed:
            context = prepared.get((tier_id(alert), alert.firing))
            if context is None:
                slo = self._slos().get((alert.service, alert.slo))
                if slo is None:
                    continue
                context = PageContext(alert=alert, slo=slo, status=None, correlation=None,
                                      prometheus_url=redact(self.config.prometheus.url))
            decided.append(context)
        return decided

    def _record(self, unit: StateWriter, context: PageContext) -> None:
        try:
            self.notifier.record(unit, context)
        except ConfigError as error:  # no channel for the owner: nothing was written for it
            log.error("%s: %s", context.alert.incident_key, error)

    def _context(self, alert: BurnAlert, slo: SLO,
                 statuses: Mapping[tuple[str, str], list[BudgetStatus]]) -> PageContext:
        """The page's figures: the group's budget now (of `_statuses_now`), and (firing)
        what changed before the onset read from the 5m error ratio. Without Prometheus the
        page still goes out, with what is known."""
        status = next((s for s in statuses.get((slo.service, slo.name), [])
                       if s.group == alert.group_key), None)
        if alert.burn_rate_long is None:
            alert = self._with_burn_rates(alert, slo, status)
        correlation = None
        if alert.firing:
            ratio = None
            try:
                start, end = app.ratio_window(alert, slo)
                with self._source() as source:
                    ratio = error_ratio_series(source, slo, alert.group, start, end)
            except SourceError as error:
                self._count_query_error(error)
                log.warning("%s: onset unknown: %s", alert.incident_key, error)
            if self.config.changes.build_info:
                self.sync_changes(alert.at - RECENT_BUILD_INFO, alert.at)
            correlation = app.correlate_alert(alert, slo, self.state, ratio, self.config.changes)
        return PageContext(alert=alert, slo=slo, status=status, correlation=correlation,
                           prometheus_url=redact(self.config.prometheus.url))

    def _with_burn_rates(self, alert: BurnAlert, slo: SLO,
                         status: BudgetStatus | None) -> BurnAlert:
        """Alertmanager's alerts carry no burn rates: read them as the evaluator does, or
        take the budget's (which lag by one ledger step) when Prometheus cannot say."""
        try:
            with self._source() as source:
                long, short = (burn_rate_in(source.instant(query), slo)
                               for query in alert_burn_queries(slo, alert))
            return replace(alert, burn_rate_long=long, burn_rate_short=short)
        except SourceError as error:
            self._count_query_error(error)
        if status is None:
            return alert
        return replace(alert, burn_rate_long=status.burn_rates.get(alert.long_window),
                       burn_rate_short=status.burn_rates.get(alert.short_window))

    def _statuses_now(self, slos: list[SLO]) -> dict[tuple[str, str], list[BudgetStatus]]:
        """The budgets of the SLOs paged about, fetched now: one ledger fetch for all SLOs
        with the same report window, not one per page (a cycle that pages about dozens of
        SLOs would wait on dozens); the last refresh's when Prometheus cannot give them."""
        at = self._clock()
        by_window: dict[tuple[datetime, datetime], list[Service]] = {}
        for slo in {(slo.service, slo.name): slo for slo in slos}.values():
            one = Service(slo.service, slo.owner, slo.source_file, (slo,))
            by_window.setdefault(app.report_window([one], at), []).append(one)
        found: dict[tuple[str, str], list[BudgetStatus]] = {}
        for (start, end), services in by_window.items():
            try:
                statuses = budget.report(
                    services, self._ledger(services, start, end, cache=False), at)
            except SourceError as error:
                self._count_query_error(error)
                wanted = {(one.name, one.slos[0].name) for one in services}
                statuses = [s for s in self._statuses if (s.service, s.slo) in wanted]
            for status in statuses:
                found.setdefault((status.service, status.slo), []).append(status)
        return found

    def _report(self, services: list[Service], at: datetime) -> list[BudgetStatus]:
        """The budget refresh: from sums between the report's window edges, kept beside the
        ledger cache so the next refresh asks only for what moved (prometheus/windows.py),
        not from every bucket of every SLO's period."""
        start, end = app.report_window(services, at)
        step = int(parse_duration(self.config.prometheus.step))
        frame, stats = fetch_report_ledger(self._cached_source(), services, start, end, step)
        for warning in stats.warnings:
            log.warning("ledger: %s", warning)
        return budget.report(services, frame, at)

    def _ledger(self, services: list[Service], start: datetime, end: datetime, *,
                cache: bool) -> pd.DataFrame:
        step = int(parse_duration(self.config.prometheus.step))
        if cache:
            frame, stats = self._cached_source().fetch_ledger(services, start, end, step)
        else:
            with self._source() as source:
                frame, stats = source.fetch_ledger(services, start, end, step)
        for warning in stats.warnings:
            log.warning("ledger: %s", warning)
        return frame

    # --- the digest's charts --------------------------------------------------------------

    def _digest_charts(self, least: Mapping[str, BudgetStatus],
                       at: datetime) -> dict[str, _Chart]:
        """Each channel's burn-down, as PNG bytes. A chart is an extra: whatever keeps one
        from being drawn is logged and its digest goes without it."""
        slos = self._slos()
        chosen = {channel: slos[(s.service, s.slo)] for channel, s in least.items()
                  if (s.service, s.slo) in slos}
        if not chosen:
            return {}
        # The refresh's window over the cached ledger: the cache then keeps every SLO's span.
        start, end = app.report_window(self._services, at)
        one_each = [Service(slo.service, slo.owner, slo.source_file, (slo,))
                    for slo in dict.fromkeys(chosen.values())]
        try:
            with self._refreshing:
                frame = self._ledger(one_each, start, end, cache=True)
        except SourceError as error:
            self._count_query_error(error)
            log.warning("digests go without their burn-down charts: %s", error)
            return {}
        drawn: dict[str, _Chart] = {}
        for channel, slo in chosen.items():
            chart = self._burn_down(slo, least[channel], frame, at)
            if chart is not None:
                drawn[channel] = chart
            else:
                log.warning("the digest to %s goes without its chart: %s/%s has no events "
                            "in its current period", channel, slo.service, slo.name)
        return drawn

    def _burn_down(self, slo: SLO, status: BudgetStatus, frame: pd.DataFrame,
                   at: datetime) -> _Chart | None:
        start = budget.period_bounds(slo, at)[0]
        changes = self.state.changes([slo.service], since=start, until=at)
        try:
            figure = charts.period_burn_down(slo, frame, start, changes,
                                             parse_duration(self.config.prometheus.step))
            if figure is None:
                return None
            return _Chart(charts.chart_name("burn-down", slo), charts.png_bytes(figure),
                          notices.digest_chart_title(status))
        except Exception:  # a chart that cannot be drawn must not cost the team its digest
            log.exception("the digest's burn-down of %s/%s could not be drawn", slo.service,
                          slo.name)
            return None

    # --- the firing set -------------------------------------------------------------------

    def firing(self) -> dict[str, BurnAlert]:
        """The tiers firing now, by tier_id: as last evaluated, or as Alertmanager said."""
        with self.state.read() as reader:
            return decode_firing(reader.firing())

    # --- notices --------------------------------------------------------------------------

    def _send_budget_notices(self, statuses: list[BudgetStatus]) -> None:
        with self.state.read() as reader:
            sent = reader.budget_notices_sent()
        for notice in notices.budget_notices(statuses, self._slos(), sent):
            channel = self._channel(notice.owner, "ticket")
            if channel is None:
                continue
            s = notice.status

            def announced(unit: StateWriter, s: BudgetStatus = s,
                          crossed: tuple[float, ...] = tuple(notice.crossed)) -> None:
                unit.record_budget_notice(s.service, s.slo, s.group, crossed, s.at)

            if self._send_notice(channel, notice.message, notice.key, also=announced):
                log.info("budget notice: %s", notice.message.text)

    def _send_notice(self, channel: str, message: SlackMessage, key: str,
                     attachment: tuple[str, bytes] | None = None,
                     title: str | None = None, *,
                     also: Callable[[StateWriter], None] | None = None) -> bool:
        """Queue a notice (and, in the same unit of work, `also`: what records it was
        sent); the delivery thread sends it. False when already queued or not written."""
        try:
            with self.state.transaction() as unit:
                self.leadership.fence(unit)  # notices are the leader's
                queued = self.notifier.queue_notice(unit, channel, message, key, attachment,
                                                    title=title)
                if also is not None:
                    also(unit)
        except LeaseLost as error:
            self.leadership.lost(error)
            return False
        except StateError as error:
            self.telemetry.state_write_failures.inc()
            log.error("notice %s to %s not queued: %s", key, channel, error)
            return False
        return queued

    def _channel(self, owner: str, severity: str) -> str | None:
        try:
            return self.config.channel_for(owner, severity)
        except ConfigError as error:
            log.error("%s", error)
            return None

    def _notice_channels(self) -> list[str]:
        """Where engine-wide notices go: the fallback channel, else every owner's."""
        if self.config.slack.fallback_channel:
            return [self.config.slack.fallback_channel]
        owners = {slo.owner for slo in self._slos().values()}
        return sorted({c for o in owners if (c := self._channel(o, "ticket")) is not None})

    # --- Prometheus outages (the state machine is service/outage.py) ---------------------

    def _announce(self, message: SlackMessage, key: str) -> None:
        """An engine-wide notice (an outage, its recovery) to every notice channel."""
        for channel in self._notice_channels():
            self._send_notice(channel, message, f"{key}/{channel}")

    def _count_query_error(self, error: SourceError) -> None:
        kind = "unavailable" if isinstance(error, SourceUnavailable) else "rejected"
        self.telemetry.query_errors.labels(kind).inc()

    # --- Prometheus sources ---------------------------------------------------------------

    @contextmanager
    def _source(self) -> Iterator[PrometheusSource]:
        """A source no other thread is using (a source is not thread-safe; jobs and requests
        run in several threads), put back for the next one: not one per thread, as the HTTP
        thread pool retires idle threads and each would leave a source and its connection
        open."""
        with self._sources_lock:
            source = self._idle.pop() if self._idle else None
        if source is None:
            source = self._track(self._new_source())
        try:
            yield source
        finally:
            with self._sources_lock:
                self._idle.append(source)

    def _cached_source(self) -> PrometheusSource:
        """The budget refresh's source (its callers hold `_refreshing`): its ledger cache
        lives next to the state database, so a refresh fetches only what is new."""
        if self._cached is None:
            self._cached = self._track(self._new_source(
                cache_dir=Path(self.config.state.path).parent / "ledger-cache"))
        return self._cached

    def _new_source(self, *, timeout: float | None = None, retries: int = 2,
                    cache_dir: Path | None = None) -> PrometheusSource:
        prometheus = self.config.prometheus
        return PrometheusSource(prometheus.url, prometheus.header_values(),
                                timeout if timeout is not None
                                else parse_duration(prometheus.timeout),
                                cache_dir=cache_dir, retries=retries)

    def _track(self, source: PrometheusSource) -> PrometheusSource:
        with self._sources_lock:
            self._sources.append(source)
        return source

    def _burn_plan(self) -> BurnPlan:
        """The evaluator's plan of the SLOs loaded: made again only after a reload."""
        services = self._services
        if self._plan is None or self._plan[0] is not services:
            self._plan = (services, BurnPlan(slo for s in services for slo in s.slos))
        return self._plan[1]

    def _slos(self) -> dict[tuple[str, str], SLO]:
        return {(slo.service, slo.name): slo for service in self._services
                for slo in service.slos}


class _Chart(NamedTuple):
    """A chart as a notice carries it."""

    filename: str
    png: bytes
    title: str


class _CountingDelivery:
    """Slack deliveries as the engine's metrics count them, whichever path sent them."""

    def __init__(self, delivery: Delivery, telemetry: Telemetry) -> None:
        self._delivery = delivery
        self._telemetry = telemetry

    def post(self, channel: str, message: SlackMessage) -> Posted:
        with self._counted():
            return self._delivery.post(channel, message)

    def update(self, channel: str, ts: str, message: SlackMessage) -> None:
        with self._counted():
            self._delivery.update(channel, ts, message)

    def reply(self, channel: str, thread_ts: str, message: SlackMessage) -> Posted:
        with self._counted():
            return self._delivery.reply(channel, thread_ts, message)

    def upload(self, channel: str, filename: str, content: bytes, title: str) -> None:
        with self._counted():
            self._delivery.upload(channel, filename, content, title)

    @contextmanager
    def _counted(self) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self._telemetry.notifications.labels("failed").inc()
            raise
        self._telemetry.notifications.labels("sent").inc()


def _digest_key(channel: str, at: datetime) -> str:
    """One digest per channel and UTC day."""
    return f"digest/{channel}/{at:%Y-%m-%d}"


def _delta(text: str) -> timedelta:
    return timedelta(seconds=parse_duration(text))


def _fingerprint(paths: list[Path]) -> tuple[tuple[str, int, int], ...]:
    """What a change to the SLO files changes: names, modification times and sizes."""
    found: list[tuple[str, int, int]] = []
    for path in discover(paths):
        try:
            stat = path.stat()
        except OSError:
            found.append((str(path), -1, -1))
            continue
        found.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(found))
