"""Names shared by the rule compiler, the generated tests and every reader of the rules.

These are a contract with dashboards, Alertmanager routes and the budget job: change one
and every consumer breaks, so they live here and nowhere else.
"""

from __future__ import annotations

API_VERSION = "slo-engine/v1"

# Labels the engine puts on every generated series and alert.
SLO_LABEL = "slo"
SERVICE_LABEL = "service"
SEVERITY_LABEL = "severity"
LONG_WINDOW_LABEL = "long_window"
SHORT_WINDOW_LABEL = "short_window"
RESERVED_LABELS = frozenset(
    {SLO_LABEL, SERVICE_LABEL, SEVERITY_LABEL, LONG_WINDOW_LABEL, SHORT_WINDOW_LABEL,
     "alertname", "le", "__name__"}
)

# Annotations the engine writes on every alert; a spec's extra annotations may not replace them.
RESERVED_ANNOTATIONS = ("summary", "description", "runbook_url", "dashboard_url")

# Labels of every PrometheusRule object (`compile --format prometheus-operator`).
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
SERVICE_OBJECT_LABEL = "slo-engine/service"


def operator_labels(service: str) -> dict[str, str]:
    return {MANAGED_BY_LABEL: "slo-engine", SERVICE_OBJECT_LABEL: service}


# The only window over which raw series are read.
BASE_WINDOW = "5m"

BAD_EVENTS_RATE = "slo:bad_events:rate5m"
TOTAL_EVENTS_RATE = "slo:total_events:rate5m"
ERROR_RATIO_FMT = "slo:error_ratio:rate{window}"
PERIOD_ERROR_RATIO = "slo:error_ratio:period"
ERROR_BUDGET_REMAINING = "slo:error_budget_remaining:ratio"
OBJECTIVE = "slo:objective:ratio"
PERIOD_SECONDS = "slo:period:seconds"

# Set by `slo-engine run` to a change's time, per service and kind, as it records the change:
# the generated Grafana dashboards annotate each time it moves.
LAST_CHANGE_TIMESTAMP = "slo_engine_last_change_timestamp_seconds"

BURN_ALERT = "SLOErrorBudgetBurn"
DATA_ABSENT_ALERT = "SLODataAbsent"
DATA_ABSENT_FOR = "10m"

# The fast group's interval, fixed so that every window knows its recorded 5m rates are one
# a minute: a window adds the last 5m rate five times (its 5 minutes) to the samples that
# tile the rest of it (`rules.compile.window_ratio_expr`).
FAST_GROUP_INTERVAL = "1m"
# A window's newest 5 minutes are the 5m rate at t; the rest, (t − W, t − 5m], is tiled by
# the 5m rates of [t − W + 3m, t − 3m], each 5-minute sample centred on its minute.
WINDOW_EDGE = "3m"
EDGE_MINUTES = 3

# The slow group holds what moves slowly and costs most to evaluate: the period's budget
# and the tiers whose long window is a day or more (their detection takes hours anyway).
SLOW_GROUP_INTERVAL = "5m"
SLOW_TIER_SECONDS = 86400


def error_ratio_metric(window: str) -> str:
    return ERROR_RATIO_FMT.format(window=window)


def alert_group_name(service: str, slo: str) -> str:
    return f"slo-engine:{service}:{slo}"


def rates_group_name(service: str, slo: str) -> str:
    """vmalert's layout only: the 5m rates in a group of their own (`rules.compile`)."""
    return f"slo-engine:{service}:{slo}:rates"


def slow_group_name(service: str, slo: str) -> str:
    return f"slo-engine:{service}:{slo}:slow"
