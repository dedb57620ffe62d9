"""The naive scheme slo-engine is measured against, shaped like Sloth's generated rules.

Per SLO: an SLI group with raw `rate()` ratios over every alert window (5m … 3d) and the
period as the average of the recorded 5m ratio (`sum_over_time / count_over_time`), a
meta group (objective, budget remaining) and the multiwindow burn-rate alerts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
TIERS = (("page", "1h", "5m", 14.4), ("page", "6h", "30m", 6.0),
         ("ticket", "1d", "2h", 3.0), ("ticket", "3d", "6h", 1.0))
RATIO_FMT = "slo:sli_error:ratio_rate{window}"


@dataclass(frozen=True)
class NaiveSLO:
    name: str
    bad: str  # selector of bad events
    total: str  # selector of all events
    objective: float  # fraction
    period: str = "30d"


def _sel(metric: str, slo: NaiveSLO, window: str | None = None) -> str:
    extra = f', sloth_window="{window}"' if window else ""
    return f'{metric}{{sloth_id="{slo.name}"{extra}}}'


def period_expr(slo: NaiveSLO) -> str:
    ratio = _sel(RATIO_FMT.format(window="5m"), slo)
    return (f"sum_over_time({ratio}[{slo.period}])\n/ ignoring (sloth_window)\n"
            f"count_over_time({ratio}[{slo.period}])")


def _labels(slo: NaiveSLO, window: str | None = None) -> dict[str, str]:
    labels = {"sloth_id": slo.name, "sloth_service": "bench", "sloth_slo": slo.name}
    if window:
        labels["sloth_window"] = window
    return labels


def groups(slo: NaiveSLO) -> list[dict[str, Any]]:
    budget = 1 - slo.objective
    sli = [{"record": RATIO_FMT.format(window=w),
            "expr": f"(sum(rate({slo.bad}[{w}])))\n/\n(sum(rate({slo.total}[{w}])))",
            "labels": _labels(slo, w)} for w in WINDOWS]
    sli.append({"record": RATIO_FMT.format(window=slo.period), "expr": period_expr(slo),
                "labels": _labels(slo, slo.period)})
    period_ratio = _sel(RATIO_FMT.format(window=slo.period), slo)
    meta = [
        {"record": "slo:objective:ratio", "expr": f"vector({slo.objective:g})",
         "labels": _labels(slo)},
        {"record": "slo:error_budget:ratio", "expr": f"vector({budget:g})",
         "labels": _labels(slo)},
        {"record": "slo:current_burn_rate:ratio",
         "expr": f"{_sel(RATIO_FMT.format(window='5m'), slo)}\n/ ignoring (sloth_window)\n"
                 f"{_sel('slo:error_budget:ratio', slo)}",
         "labels": _labels(slo)},
        {"record": "slo:period_error_budget_remaining:ratio",
         "expr": f"1 - {period_ratio} / ignoring (sloth_window) "
                 f"{_sel('slo:error_budget:ratio', slo)}",
         "labels": _labels(slo)},
    ]
    alerts = []
    for severity, long, short, burn in TIERS:
        threshold = f"({burn:g} * {budget:g})"
        alerts.append({
            "alert": "NaiveErrorBudgetBurn",
            "expr": (f"max({_sel(RATIO_FMT.format(window=long), slo)} > {threshold}) "
                     f"without (sloth_window)\nand\n"
                     f"max({_sel(RATIO_FMT.format(window=short), slo)} > {threshold}) "
                     f"without (sloth_window)"),
            "labels": {"sloth_id": slo.name, "severity": severity, "long_window": long},
            "annotations": {"summary": f"{slo.name}: error budget burn over {long}"},
        })
    return [{"name": f"sloth-slo-sli-recordings-{slo.name}", "rules": sli},
            {"name": f"sloth-slo-meta-recordings-{slo.name}", "rules": meta},
            {"name": f"sloth-slo-alerts-{slo.name}", "rules": alerts}]


def render(slos: list[NaiveSLO]) -> str:
    return yaml.safe_dump({"groups": [g for slo in slos for g in groups(slo)]},
                          sort_keys=False, width=1_000_000)
