"""The engine's own metrics: an alerting engine nobody watches fails silently.

A registry of its own (not prometheus_client's global one), so two engines in one process —
tests, notebooks — never share or clash over counters.
"""

from __future__ import annotations

from collections.abc import Collection

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from slo_engine.changes.events import CHANGE_SOURCES, Change
from slo_engine.spec.conventions import LAST_CHANGE_TIMESTAMP


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.evaluation_seconds = Histogram(
            "slo_engine_evaluation_seconds", "Duration of one evaluation of every SLO's tiers.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=self.registry)
        self.budget_refresh_seconds = Histogram(
            "slo_engine_budget_refresh_seconds", "Duration of one error-budget refresh.",
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120), registry=self.registry)
        self.query_errors = Counter(
            "slo_engine_query_errors_total",
            "Prometheus queries that failed, by kind (unavailable: retry later; rejected: fix "
            "the query or credentials).", ["kind"], registry=self.registry)
        self.notifications = Counter(
            "slo_engine_notifications_total",
            "Slack deliveries by outcome (sent, failed).", ["outcome"], registry=self.registry)
        self.outbox_depth = Gauge(
            "slo_engine_outbox_depth", "Slack messages waiting in the outbox.",
            registry=self.registry)
        self.state_write_failures = Counter(
            "slo_engine_state_write_failures_total",
            "Attempts to record transitions (firing set, outbox, notices) that the state "
            "database refused; each is retried, the transitions page once it takes them.",
            registry=self.registry)
        self.pending_transitions = Gauge(
            "slo_engine_pending_transitions",
            "Transitions (tiers starting or stopping) not yet recorded because the state "
            "database refused the write: pages held back until it takes them.",
            registry=self.registry)
        self.error_budget_remaining = Gauge(
            "slo_engine_error_budget_remaining_ratio",
            "Error budget left at the last refresh (1 = untouched, negative = overspent).",
            ["service", "slo", "group"], registry=self.registry)
        self.last_evaluation = Gauge(
            "slo_engine_last_evaluation_timestamp_seconds",
            "Unix time of the last evaluation that completed.", registry=self.registry)
        self.webhook_alerts = Counter(
            "slo_engine_webhook_alerts_total",
            "Alerts received from Alertmanager, by outcome (accepted, skipped).", ["outcome"],
            registry=self.registry)
        self.changes_recorded = Counter(
            "slo_engine_changes_recorded_total",
            "Change events recorded, by source (a source the engine does not know is 'other').",
            ["source"], registry=self.registry)
        self.last_change = Gauge(
            LAST_CHANGE_TIMESTAMP,
            "Unix time of the last change recorded for a service, by kind: the generated "
            "Grafana dashboards annotate each time it moves.", ["service", "kind"],
            registry=self.registry)
        self._last_change_at: dict[tuple[str, str], float] = {}  # a late event moves nothing
        self.leader = Gauge(
            "slo_engine_leader",
            "1 while this replica holds the leadership lease (evaluates, refreshes, notifies, "
            "delivers the outbox), 0 while it stands by.", ["replica"], registry=self.registry)
        self.lease_token = Gauge(
            "slo_engine_lease_token",
            "The leadership lease's fencing token as this replica last saw it: it grows by one "
            "each time leadership changes hands.", registry=self.registry)
        for outcome in ("sent", "failed"):
            self.notifications.labels(outcome)
        for outcome in ("accepted", "skipped"):
            self.webhook_alerts.labels(outcome)
        for kind in ("unavailable", "rejected"):
            self.query_errors.labels(kind)

    def change_recorded(self, change: Change, services: Collection[str]) -> None:
        """Count a change and move its service's last-change time; `source` and `service`
        are client-set, so only known values become labels (one series per value, forever)."""
        source = change.source
        self.changes_recorded.labels(source if source in CHANGE_SOURCES else "other").inc()
        if change.service in services:
            key = (change.service, change.kind)
            latest = max(self._last_change_at.get(key, 0.0), change.time.timestamp())
            self._last_change_at[key] = latest
            self.last_change.labels(*key).set(latest)

    def set_budgets(self, budgets: dict[tuple[str, str, str], float | None]) -> None:
        """Replace every budget gauge, so removed SLOs stop being exported."""
        self.error_budget_remaining.clear()
        for (service, slo, group), remaining in budgets.items():
            if remaining is not None:
                self.error_budget_remaining.labels(service, slo, group).set(remaining)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
