"""slo-engine: SLO specs compiled into multiwindow, multi-burn-rate Prometheus rules."""

from slo_engine.app import compile_rules, generated_files, validate
from slo_engine.compile import RuleSet, compile_service
from slo_engine.errors import RulesOutError, SloEngineError, SpecError, SpecIssue
from slo_engine.loader import load_services
from slo_engine.model import SLO, AlertTier, Service

__all__ = [
    "SLO",
    "AlertTier",
    "RuleSet",
    "RulesOutError",
    "Service",
    "SloEngineError",
    "SpecError",
    "SpecIssue",
    "compile_rules",
    "compile_service",
    "generated_files",
    "load_services",
    "validate",
]
