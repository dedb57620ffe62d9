"""Burn alerts: the one value both paging modes hand to the notifier.

The engine's own evaluator and Alertmanager's webhook report the same thing — one tier of
one SLO group firing or resolved — so the notifier has one input whichever mode runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from slo_engine.budget.ledger import group_labels, series_group
from slo_engine.spec.model import QUERY_SLIS, SLO

Severity = Literal["page", "ticket"]
AlertSource = Literal["engine", "alertmanager"]


@dataclass(frozen=True)
class BurnAlert:
    """One alert tier of one SLO group at one moment: firing, or resolved."""

    service: str
    slo: str
    group: tuple[tuple[str, str], ...]  # the SLO's group_by labels, sorted; () when ungrouped
    severity: Severity
    long_window: str
    short_window: str
    firing: bool
    at: datetime  # UTC: when observed (engine), startsAt or endsAt (Alertmanager)
    burn_rate_long: float | None = None
    burn_rate_short: float | None = None
    source: AlertSource = "engine"

    @staticmethod
    def group_of(labels: Mapping[str, str], group_by: tuple[str, ...]) -> tuple[
            tuple[str, str], ...]:
        return tuple(sorted((name, labels[name]) for name in group_by if name in labels))

    @staticmethod
    def group_for(slo: SLO, labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        """The group of an alert or series of `slo`: its group_by labels, or for a query SLI
        the labels its query keeps, as the ledger groups them, so pages and budgets join."""
        if isinstance(slo.sli, QUERY_SLIS):
            return tuple(sorted(group_labels(series_group(slo, labels)).items()))
        return BurnAlert.group_of(labels, slo.group_by)

    @property
    def group_key(self) -> str:
        """Same text as the ledger's `group` column, so budgets and incidents join."""
        return ",".join(f"{name}={value}" for name, value in self.group)

    @property
    def incident_key(self) -> str:
        """One Slack message per (service, SLO, group, severity): repeats update it."""
        return f"{self.service}/{self.slo}/{self.group_key}/{self.severity}"

    @property
    def tier(self) -> str:
        return f"{self.long_window}/{self.short_window}"
