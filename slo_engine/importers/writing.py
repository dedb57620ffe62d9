"""slo-engine YAML from imported services, and the fixes that make an import valid."""

from __future__ import annotations

from typing import Any

import yaml

from slo_engine.importers.common import ImportedService, ImportResult
from slo_engine.spec.burn_rate import alert_tier, default_tiers
from slo_engine.spec.durations import parse_duration


def fit_tiers(result: ImportResult) -> None:
    """Low objectives (Pyrra's 90%) cannot reach the fastest default burn rates, which the
    spec rejects; keep the default tiers that can fire, as explicit tiers, and say so."""
    for service in result.services:
        for slo in service.slos:
            spec = slo.spec
            period = parse_duration(spec["period"])
            ceiling = 1 / (1 - spec["objective"] / 100)
            tiers = default_tiers(period)
            fit = [t for t in tiers if alert_tier(t, period).burn_rate <= ceiling]
            if len(fit) == len(tiers):
                continue
            alerting = spec.setdefault("alerting", {})
            alerting["tiers"] = [{"severity": t.severity, "long_window": t.long_window,
                                  "short_window": t.short_window,
                                  "budget_percent": t.budget_percent} for t in fit]
            dropped = ", ".join(f"{t.severity} {t.long_window}/{t.short_window}"
                                for t in tiers if t not in fit)
            result.notes.append(f"{slo.where}: {spec['name']}: default tiers {dropped} can "
                                f"never fire at {spec['objective']:g}%; written the other "
                                "default tiers as alerting.tiers")


def _dump(value: Any) -> str:
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, width=4096,
                          default_flow_style=False)


def render(service: ImportedService, command: str) -> str:
    """The slo-engine file of one service, each SLO under a comment naming its source."""
    lines = [f"# Imported by `{command}`; the comment above each SLO names its source.",
             _dump({"apiVersion": "slo-engine/v1", **service.head}).rstrip("\n"), "slos:"]
    for slo in service.slos:
        lines.append(f"  # from {slo.origin}")
        lines.extend("  " + line for line in _dump([slo.spec]).rstrip("\n").split("\n"))
    return "\n".join(lines) + "\n"
