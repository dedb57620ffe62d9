"""OpenSLO documents: v1 `SLO`, `SLI`, `AlertPolicy`, `DataSource`, and `openslo/v1alpha`
SLOs (the form Sloth reads), with `indicatorRef` resolved across all the given files.

Each objective of an OpenSLO SLO becomes one slo-engine SLO. Only Prometheus ratio metrics
of events map: counters given as plain selectors become a `ratio` SLI, queries with Sloth's
`{{.window}}` a `query` SLI.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from slo_engine.importers.common import (
    Document,
    Fields,
    ImportResult,
    normalise_name,
    parse_selector,
    promql_problem,
    sloth_window,
    unread_issues,
)
from slo_engine.spec.document import PERIOD_PATTERN

V1 = "openslo/v1"
V1ALPHA = "openslo/v1alpha"
_UNITS = {"day": "d", "week": "w"}


def is_openslo(body: Any) -> bool:
    return isinstance(body, dict) and body.get("apiVersion") in (V1, V1ALPHA)


def _named(documents: list[Document], kind: str) -> dict[str, tuple[Document, Fields]]:
    return {str((d.body.get("metadata") or {}).get("name")): (d, Fields(d.body, "", camel=True))
            for d in documents if d.body.get("kind") == kind}


def import_openslo(documents: list[Document], owner: str, result: ImportResult) -> None:
    """Every OpenSLO SLO among `documents` into `result`; SLIs and data sources referenced
    by name are looked up among all of them."""
    slis = _named(documents, "SLI")
    sources = _named(documents, "DataSource")
    for document in documents:
        kind = document.body.get("kind")
        if kind == "SLO":
            _slo(document, owner, slis, sources, result)
        elif kind in ("SLI", "DataSource"):
            continue
        else:
            result.lost(document.where, "-", f"kind {kind}", _KIND_WHY.get(
                str(kind), "not an OpenSLO kind slo-engine imports"))
    for table in (slis, sources):
        for name, (document, fields) in table.items():
            if fields.unread() != list(fields.value):
                result.issues.extend(unread_issues(fields, document.where, name))
            else:
                result.lost(document.where, "-", f"{fields.value['kind']} {name}",
                            "not referenced by any imported SLO")


_KIND_WHY = {
    "AlertPolicy": "slo-engine alerts with multiwindow burn-rate tiers; an OpenSLO "
    "burn-rate condition has one lookback window and no short window to pair it with",
    "AlertCondition": "see AlertPolicy: conditions have no slo-engine equivalent",
    "AlertNotificationTarget": "slo-engine routes pages by owner (engine configuration)",
    "Service": "slo-engine services are the SLO files themselves; its description is not kept",
}


def _slo(document: Document, owner: str, slis: dict[str, tuple[Document, Fields]],
         sources: dict[str, tuple[Document, Fields]], result: ImportResult) -> None:
    root = Fields(document.body, "", camel=True)
    version = root.get("apiVersion")
    root.get("kind")
    where = document.where
    meta = root.child("metadata")
    name = str(meta.get("name") or "unnamed")
    spec = root.child("spec")
    description = str(spec.get("description") or meta.get("display_name") or "").strip()
    if spec.has("description") and meta.has("display_name"):
        meta.get("display_name")
        result.lost(where, name, meta.at("display_name"), "slo-engine SLOs have a name and a "
                    "description, no display name; not kept")
    period = _period(spec, version, where, name, result)
    budgeting = spec.get("budgeting_method")
    if budgeting not in (None, "Occurrences"):
        result.lost(where, name, spec.at("budgeting_method"), f"{budgeting}: slo-engine budgets "
                    "by occurrences (events); imported with occurrence budgeting")
    for policy in ("alert_policies",):
        if spec.get(policy):
            result.lost(where, name, spec.at(policy), _KIND_WHY["AlertPolicy"]
                        + "; the default tiers are used")
    indicator = _indicator(spec, slis, where, name, result)
    objectives = list(spec.items("objectives"))
    service_name = normalise_name(str(spec.get("service") or "unnamed"))
    origin = f"{document.file}, document {document.index} (SLO {name})"
    for i, objective in enumerate(objectives):
        label = str(objective.get("display_name") or i + 1)
        slo_name = name if len(objectives) == 1 else f"{name}-{label}"
        target = _target(objective)
        own = _indicator(objective, slis, where, slo_name, result) if version == V1 else None
        sli = (_v1alpha_sli(objective.child("ratio_metrics"), where, slo_name, result)
               if version == V1ALPHA else _v1_sli(own or indicator, sources, where, slo_name,
                                                  result))
        for lost in ("op", "value", "time_slice_target", "time_slice_window",
                     "composite_weight"):
            if objective.has(lost):
                objective.get(lost)
                result.lost(where, slo_name, objective.at(lost), "thresholds, timeslices and "
                            "composites are not slo-engine objectives; not imported")
        if target is None:
            result.lost(where, slo_name, objective.path, "no target or targetPercent")
        if sli is None or target is None or period is None:
            continue
        spec_out: dict[str, Any] = {"description": description} if description else {}
        spec_out.update({"objective": target, "period": period, "sli": sli})
        service = result.service(service_name, where, {"owner": owner})
        result.add(service, f"{origin}, objective {label}", where, slo_name, spec_out)
    result.issues.extend(unread_issues(root, where, name))


def _target(objective: Fields) -> float | None:
    if objective.has("target_percent"):
        return float(Decimal(str(objective.get("target_percent"))))
    if objective.has("target"):
        return float(Decimal(str(objective.get("target"))) * 100)
    return None


def _period(spec: Fields, version: Any, where: str, name: str,
            result: ImportResult) -> str | None:
    windows = list(spec.items("time_window" if version == V1 else "time_windows"))
    if not windows:
        return "30d"
    window = windows[0]
    duration, count, unit = window.get("duration"), window.get("count"), window.get("unit")
    if window.get("calendar") or window.get("is_rolling") is False:
        result.lost(where, name, window.path, "calendar-aligned windows are not slo-engine "
                    "periods (rolling only); SLO not imported")
        return None
    suffix = _UNITS.get(str(unit).lower(), "?")
    text = str(duration) if version == V1 else f"{count}{suffix}"
    if not re.match(PERIOD_PATTERN, text):
        result.lost(where, name, window.path, f"{text!r} is not a period of whole days or "
                    "weeks; SLO not imported")
        return None
    return text


def _indicator(node: Fields, slis: dict[str, tuple[Document, Fields]], where: str, name: str,
               result: ImportResult) -> Fields | None:
    """The SLI's `spec` mapping, inline or referenced by name."""
    if node.has("indicator"):
        indicator = node.child("indicator")
        metadata = indicator.child("metadata")
        metadata.get("name")
        metadata.get("display_name")
        return indicator.child("spec")
    if node.has("indicator_ref"):
        ref = str(node.get("indicator_ref"))
        if ref not in slis:
            result.lost(where, name, node.at("indicator_ref"),
                        f"no SLI named {ref!r} in the given files")
            return None
        fields = slis[ref][1]
        for key in ("apiVersion", "kind"):
            fields.get(key)
        fields.child("metadata").get("name")
        return fields.child("spec")
    return None


def _source_type(metric: Fields, sources: dict[str, tuple[Document, Fields]]) -> str:
    if metric.has("type"):
        return str(metric.get("type"))
    ref = str(metric.get("metric_source_ref"))
    if ref in sources:
        fields = sources[ref][1]
        for key in ("apiVersion", "kind"):
            fields.get(key)
        fields.child("metadata").get("name")
        return str(fields.child("spec").get("type"))
    return "unknown"


def _v1_sli(sli: Fields | None, sources: dict[str, tuple[Document, Fields]], where: str,
            name: str, result: ImportResult) -> dict[str, Any] | None:
    if sli is None:
        result.lost(where, name, "indicator", "the SLO has no indicator; not imported")
        return None
    if sli.has("threshold_metric"):
        sli.get("threshold_metric")
        result.lost(where, name, sli.at("threshold_metric"), "a threshold metric compares raw "
                    "values, not events; no slo-engine SLI kind; SLO not imported")
        return None
    ratio = sli.child("ratio_metric")
    if ratio.has("raw"):
        ratio.get("raw")
        ratio.get("raw_type")
        result.lost(where, name, ratio.at("raw"), "a precomputed ratio is not a slo-engine SLI "
                    "kind yet; SLO not imported")
        return None
    counter = ratio.get("counter")
    queries: dict[str, str] = {}
    for role in ("good", "bad", "total"):
        if not ratio.has(role):
            continue
        metric = ratio.child(role).child("metric_source")
        kind = _source_type(metric, sources)
        query = metric.child("spec").get("query")
        if kind.lower() != "prometheus" or not isinstance(query, str):
            result.lost(where, name, metric.path, f"source type {kind!r}: only Prometheus "
                        "queries map to slo-engine SLIs; SLO not imported")
        else:
            queries[role] = query
    if len(queries) < sum(ratio.has(role) for role in ("good", "bad", "total")):
        return None
    return _queries(queries, counter is True, ratio.path, where, name, result)


def _v1alpha_sli(ratio: Fields, where: str, name: str,
                 result: ImportResult) -> dict[str, Any] | None:
    if not ratio.value:
        result.lost(where, name, ratio.path, "only ratioMetrics objectives map; not imported")
        return None
    ratio.get("incremental")
    queries: dict[str, str] = {}
    for role in ("good", "bad", "total"):
        if not ratio.has(role):
            continue
        metric = ratio.child(role)
        source, query = str(metric.get("source")), metric.get("query")
        metric.get("query_type")
        if source.lower() != "prometheus" or not isinstance(query, str):
            result.lost(where, name, metric.path, f"source {source!r}: only Prometheus queries "
                        "map to slo-engine SLIs; SLO not imported")
            return None
        queries[role] = query
    return _queries(queries, ratio.get("incremental") is True, ratio.path, where, name, result)


def _queries(queries: dict[str, str], counter: bool, path: str, where: str, name: str,
             result: ImportResult) -> dict[str, Any] | None:
    """Windowed queries as a `query` SLI, counter selectors as a `ratio` SLI."""
    numerator = "good" if "good" in queries else "bad"
    if numerator not in queries or "total" not in queries:
        result.lost(where, name, path, "needs good or bad, and total; SLO not imported")
        return None
    pair = {numerator: queries[numerator].strip(), "total": queries["total"].strip()}
    windowed = {k: sloth_window(v) for k, v in pair.items()}
    if all("{{window}}" in v for v in windowed.values()):
        problems = [p for p in map(promql_problem, windowed.values()) if p]
        if problems:
            result.lost(where, name, path, f"not PromQL ({problems[0]}); SLO not imported")
            return None
        return {"query": windowed}
    if counter and all(parse_selector(v) is not None for v in pair.values()):
        return {"ratio": pair}
    result.lost(where, name, path, "only counters given as plain selectors or queries with "
                "a {{.window}} range map to slo-engine SLIs (anything else has no window to "
                "rate over); SLO not imported")
    return None
