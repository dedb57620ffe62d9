"""Alertmanager's webhook (payload version 4) as burn alerts.

In this paging mode Prometheus and Alertmanager decide when to page (grouping, silences,
inhibition); the engine only turns each alert back into the SLO it came from, so the page
gets the same budget, changes and rollback command as in the engine's own mode.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from slo_engine.paging.burn_alert import BurnAlert
from slo_engine.spec.conventions import (
    BURN_ALERT,
    LONG_WINDOW_LABEL,
    SERVICE_LABEL,
    SEVERITY_LABEL,
    SHORT_WINDOW_LABEL,
    SLO_LABEL,
)
from slo_engine.spec.model import SLO, Service

MAX_ALERTS = 1000  # Alertmanager's max_alerts truncates well below this in practice


class WebhookAlert(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(max_length=100)
    annotations: dict[str, str] = Field(default_factory=dict, max_length=100)
    starts_at: AwareDatetime = Field(alias="startsAt")
    ends_at: AwareDatetime | None = Field(None, alias="endsAt")
    generator_url: str = Field("", alias="generatorURL", max_length=10_000)
    fingerprint: str = Field("", max_length=100)


class WebhookPayload(BaseModel):
    """What Alertmanager POSTs to a webhook receiver."""

    model_config = ConfigDict(extra="allow", frozen=True)

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str = ""
    group_key: str = Field("", alias="groupKey")
    truncated_alerts: int = Field(0, alias="truncatedAlerts", ge=0)
    external_url: str = Field("", alias="externalURL")
    alerts: list[WebhookAlert] = Field(max_length=MAX_ALERTS)


def burn_alerts(payload: WebhookPayload, services: list[Service]) -> tuple[
        list[BurnAlert], list[str]]:
    """The payload's burn alerts of known SLOs, and why each other alert was skipped (an
    SLO Prometheus still evaluates but the engine no longer loads must be visible).

    An SLO may name its alerts and its severity values (`alerting.name`,
    `page_alert.severity`): the SLO's own spec maps them back to a page or a ticket."""
    slos = {(slo.service, slo.name): slo for service in services for slo in service.slos}
    burn_names = {BURN_ALERT} | {slo.alerting.name for slo in slos.values()}
    accepted: list[BurnAlert] = []
    skipped: list[str] = []
    for alert in payload.alerts:
        labels = alert.labels
        name = labels.get("alertname", "")
        key = (labels.get(SERVICE_LABEL, ""), labels.get(SLO_LABEL, ""))
        if name not in burn_names:
            skipped.append(f"{name or 'an alert without alertname'} ({'/'.join(key)}): not a "
                           f"{' or '.join(sorted(burn_names))} alert")
            continue
        slo = slos.get(key)
        if slo is None:
            skipped.append(f"{name} for unknown SLO {'/'.join(key)}: the engine does not "
                           "load it; do Prometheus and the engine read the same SLO files?")
            continue
        if name != slo.alerting.name:
            skipped.append(f"{name} {'/'.join(key)}: this SLO's burn alerts are named "
                           f"{slo.alerting.name}; do Prometheus and the engine read the same "
                           "SLO files?")
            continue
        severity = labels.get(SEVERITY_LABEL)
        kind = slo.alerting.kind_of(severity)
        if kind == "page":
            accepted.append(_burn_alert(alert, slo, "page"))
        elif kind == "ticket":
            accepted.append(_burn_alert(alert, slo, "ticket"))
        else:
            page, ticket = slo.alerting.page.severity, slo.alerting.ticket.severity
            expected = ("page nor ticket" if (page, ticket) == ("page", "ticket") else
                        f"{page} (page) nor {ticket} (ticket)")
            skipped.append(f"{name} {'/'.join(key)}: severity {severity!r} is neither "
                           f"{expected}")
    return accepted, skipped


def _burn_alert(alert: WebhookAlert, slo: SLO, severity: Literal["page", "ticket"]) -> BurnAlert:
    firing = alert.status == "firing"
    ended = alert.ends_at if alert.ends_at is not None and alert.ends_at.year > 1 else None
    at = alert.starts_at if firing else (ended or datetime.now(UTC))
    return BurnAlert(
        service=slo.service,
        slo=slo.name,
        group=BurnAlert.group_for(slo, alert.labels),
        severity=severity,
        long_window=alert.labels.get(LONG_WINDOW_LABEL, ""),
        short_window=alert.labels.get(SHORT_WINDOW_LABEL, ""),
        firing=firing,
        at=at.astimezone(UTC),
        source="alertmanager",
    )
