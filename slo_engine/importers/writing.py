"""slo-engine YAML from imported services, holding only the fields this spec version knows.

Some source fields map to spec fields that are still being added (`PENDING`); the importer
emits them only when the spec model has them, and lists them as issues otherwise, so the
written files always validate with the engine that wrote them.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from slo_engine.importers.common import ImportedService, ImportResult, Issue
from slo_engine.spec.burn_rate import alert_tier, default_tiers
from slo_engine.spec.document import AlertingSpec, ServiceSpec, SLOSpec
from slo_engine.spec.durations import parse_duration

# Fields the importers emit that belong to the spec additions of issue 12 (alerting).
PENDING: dict[str, tuple[str, ...]] = {
    "service": ("prometheus_rule", "alert_windows"),
    "slo": ("runbook_url", "dashboard_url"),
    "alerting": ("name", "labels", "annotations", "page_alert", "ticket_alert", "windows"),
}


def _known(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


def supported() -> dict[str, set[str]]:
    """The spec keys this engine's models accept, per level."""
    return {"service": _known(ServiceSpec), "slo": _known(SLOSpec),
            "alerting": _known(AlertingSpec)}


def fit_to_spec(result: ImportResult, known: dict[str, set[str]] | None = None) -> None:
    """Drop (and list) the pending fields the spec does not have yet."""
    keys = supported() if known is None else known

    def drop(mapping: dict[str, Any], level: str, where: str, slo: str, prefix: str) -> None:
        for name in PENDING[level]:
            if name in mapping and name not in keys[level]:
                del mapping[name]
                result.issues.append(Issue(where, slo, f"{prefix}{name}",
                                           "this slo-engine version has no such spec field yet"))

    for service in result.services:
        drop(service.head, "service", service.where, "-", "")
        for slo in service.slos:
            name = slo.spec["name"]
            drop(slo.spec, "slo", slo.where, name, "")
            alerting = slo.spec.get("alerting")
            if isinstance(alerting, dict):
                drop(alerting, "alerting", slo.where, name, "alerting.")
                if not alerting:
                    del slo.spec["alerting"]


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
