"""slo-engine: SLO specs compiled into multiwindow, multi-burn-rate Prometheus rules, error
budgets accounted for with pandas, pages that name the change before the burn, release gates.

Compiling needs neither pandas nor the Prometheus client, so the accounting names are loaded
on first use (`slo_engine.PrometheusSource` imports them then).
"""

from importlib import import_module
from typing import Any

from slo_engine.app import compile_rules, generated_files, validate
from slo_engine.changes import Change, read_change_lines
from slo_engine.compile import RuleSet, compile_service
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
    StateError,
)
from slo_engine.incident import BurnAlert
from slo_engine.loader import load_services
from slo_engine.model import SLO, AlertTier, Service
from slo_engine.state import StateDB

_LAZY = {
    "BacktestResult": "slo_engine.backtest",
    "BudgetStatus": "slo_engine.budget",
    "Correlation": "slo_engine.correlation",
    "Notifier": "slo_engine.notifier",
    "PageContext": "slo_engine.page",
    "PrometheusSource": "slo_engine.source",
    "attribute_incidents": "slo_engine.attribution",
    "backtest_incidents": "slo_engine.attribution",
    "budget_spent_per_day": "slo_engine.budget",
    "correlate": "slo_engine.correlation",
    "over_time": "slo_engine.budget",
    "read_event_file": "slo_engine.ledger",
    "render_page": "slo_engine.page",
    "report": "slo_engine.budget",
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
