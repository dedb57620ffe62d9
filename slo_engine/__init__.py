"""slo-engine: SLO specs compiled into multiwindow, multi-burn-rate Prometheus rules, and
error budgets accounted for with pandas.

Compiling needs neither pandas nor the Prometheus client, so the accounting names are loaded
on first use (`slo_engine.PrometheusSource` imports them then).
"""

from importlib import import_module
from typing import Any

from slo_engine.app import compile_rules, generated_files, validate
from slo_engine.compile import RuleSet, compile_service
from slo_engine.errors import (
    BackfillError,
    LedgerError,
    QueryError,
    RulesOutError,
    SloEngineError,
    SourceError,
    SourceUnavailable,
    SpecError,
    SpecIssue,
)
from slo_engine.loader import load_services
from slo_engine.model import SLO, AlertTier, Service

_LAZY = {
    "BacktestResult": "slo_engine.backtest",
    "BudgetStatus": "slo_engine.budget",
    "PrometheusSource": "slo_engine.source",
    "budget_spent_per_day": "slo_engine.budget",
    "over_time": "slo_engine.budget",
    "read_event_file": "slo_engine.ledger",
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
    "LedgerError",
    "PrometheusSource",
    "QueryError",
    "RuleSet",
    "RulesOutError",
    "Service",
    "SloEngineError",
    "SourceError",
    "SourceUnavailable",
    "SpecError",
    "SpecIssue",
    "budget_spent_per_day",
    "compile_rules",
    "compile_service",
    "generated_files",
    "load_services",
    "over_time",
    "read_event_file",
    "report",
    "validate",
]
