"""slo-engine: SLO specs compiled into multiwindow, multi-burn-rate Prometheus rules, error
budgets accounted for with pandas, pages that name the change before the burn, release gates.

Compiling needs neither pandas nor the Prometheus client, so the accounting names are loaded
on first use (`slo_engine.PrometheusSource` imports them then).
"""

from importlib import import_module
from typing import Any

from slo_engine.app import compile_rules, generated_files, validate
from slo_engine.changes.events import Change, read_change_lines
from slo_engine.config import EngineConfig, load_config
from slo_engine.errors import (
    BackfillError,
    ChangeError,
    ConfigError,
    LedgerError,
    NotifyError,
    QueryError,
    ReleaseError,
    RulesOutError,
    SloEngineError,
    SourceError,
    SourceUnavailable,
    SpecError,
    SpecIssue,
    SpecWarning,
    StateError,
)
from slo_engine.paging.burn_alert import BurnAlert
from slo_engine.rules.compile import RuleSet, compile_service
from slo_engine.spec.loader import load_services
from slo_engine.spec.model import SLO, AlertTier, Service
from slo_engine.storage.sqlite import StateDB

_LAZY = {
    "BacktestResult": "slo_engine.budget.backtest",
    "BudgetStatus": "slo_engine.budget.accounting",
    "Correlation": "slo_engine.changes.correlation",
    "Notifier": "slo_engine.paging.notifier",
    "PageContext": "slo_engine.paging.page",
    "PrometheusSource": "slo_engine.prometheus.source",
    "attribute_incidents": "slo_engine.budget.attribution",
    "backtest_incidents": "slo_engine.budget.attribution",
    "budget_spent_per_day": "slo_engine.budget.accounting",
    "correlate": "slo_engine.changes.correlation",
    "over_time": "slo_engine.budget.accounting",
    "read_event_file": "slo_engine.budget.ledger",
    "render_page": "slo_engine.paging.page",
    "report": "slo_engine.budget.accounting",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'slo_engine' has no attribute {name!r}")


__all__ = [
    "SLO",
    "AlertTier",
    "BackfillError",
    "BacktestResult",
    "BudgetStatus",
    "BurnAlert",
    "Change",
    "ChangeError",
    "ConfigError",
    "Correlation",
    "EngineConfig",
    "LedgerError",
    "Notifier",
    "NotifyError",
    "PageContext",
    "PrometheusSource",
    "QueryError",
    "ReleaseError",
    "RuleSet",
    "RulesOutError",
    "Service",
    "SloEngineError",
    "SourceError",
    "SourceUnavailable",
    "SpecError",
    "SpecIssue",
    "SpecWarning",
    "StateDB",
    "StateError",
    "attribute_incidents",
    "backtest_incidents",
    "budget_spent_per_day",
    "compile_rules",
    "compile_service",
    "correlate",
    "generated_files",
    "load_config",
    "load_services",
    "over_time",
    "read_change_lines",
    "read_event_file",
    "render_page",
    "report",
    "validate",
]
