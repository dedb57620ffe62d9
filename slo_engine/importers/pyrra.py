"""Pyrra `ServiceLevelObjective` CRDs (`pyrra.dev/v1alpha1`).

Pyrra has no service: an object's namespace names the service (its SLOs share one file),
or its own name when it has no namespace. Pyrra's selectors are counters it wraps in rate()
itself, as slo-engine's `ratio` SLI does, and its latency SLI reads a histogram's bucket at
the `le` of the success selector, as slo-engine's `latency` SLI does.
"""

from __future__ import annotations

import re
from typing import Any

from slo_engine.importers.common import (
    Document,
    Fields,
    ImportResult,
    Selector,
    le_duration,
    normalise_name,
    parse_selector,
    percent,
    rate_query,
    unread_issues,
)
from slo_engine.spec.conventions import RESERVED_LABELS
from slo_engine.spec.document import PERIOD_PATTERN

API_VERSION = "pyrra.dev/v1alpha1"


def is_pyrra(body: Any) -> bool:
    return isinstance(body, dict) and body.get("apiVersion") == API_VERSION and \
        body.get("kind") == "ServiceLevelObjective"


def import_pyrra(document: Document, owner: str, result: ImportResult) -> None:
    """One Pyrra SLO object into `result`, and every field it could not carry."""
    root = Fields(document.body, "")
    root.get("apiVersion")
    root.get("kind")
    where = document.where
    meta = root.child("metadata")
    name = str(meta.get("name") or "unnamed")
    namespace = meta.get("namespace")
    head: dict[str, Any] = {"owner": owner}
    rule = {k: v for k, v in (("namespace", namespace), ("labels", meta.get("labels"))) if v}
    if rule:
        head["prometheus_rule"] = rule
    spec = root.child("spec")
    out: dict[str, Any] = {}
    if spec.has("description"):
        out["description"] = str(spec.get("description")).strip()
    objective = percent(spec.get("target"))
    out["objective"] = objective
    window = str(spec.get("window") or "")
    if re.match(PERIOD_PATTERN, window):
        out["period"] = window
    else:
        result.lost(where, name, spec.at("window"), f"{window!r} is not a period of whole "
                    "days or weeks; SLO not imported")
    sli = _indicator(spec.child("indicator"), where, name, result)
    alerting = _alerting(spec.child("alerting"))
    if alerting:
        out["alerting"] = alerting
    if objective is None:
        result.lost(where, name, spec.at("target"), "not a number; SLO not imported")
    if sli is not None and objective is not None and "period" in out:
        out["sli"] = sli
        order = ("description", "objective", "period", "sli", "alerting")
        service = result.service(normalise_name(str(namespace or name)), where, head)
        origin = f"{document.file}, document {document.index} (ServiceLevelObjective {name})"
        result.add(service, origin, where, name, {k: out[k] for k in order if k in out})
    result.issues.extend(unread_issues(root, where, name))


def _indicator(indicator: Fields, where: str, name: str,
               result: ImportResult) -> dict[str, Any] | None:
    if indicator.has("ratio"):
        return _ratio(indicator.child("ratio"), where, name, result)
    if indicator.has("latency"):
        return _latency(indicator.child("latency"), where, name, result)
    if indicator.has("bool_gauge"):
        return _bool_gauge(indicator.child("bool_gauge"), where, name, result)
    if indicator.has("latencyNative"):
        indicator.get("latencyNative")
        result.lost(where, name, indicator.at("latencyNative"), "native histograms are not a "
                    "slo-engine SLI kind yet; SLO not imported")
        return None
    result.lost(where, name, indicator.path, "no ratio, latency, latencyNative or bool_gauge "
                "indicator; SLO not imported")
    return None


def _ratio(ratio: Fields, where: str, name: str, result: ImportResult) -> dict[str, Any] | None:
    errors = str(ratio.child("errors").get("metric") or "")
    total = str(ratio.child("total").get("metric") or "")
    grouping = _grouping(ratio, where, name, result)
    if parse_selector(errors) is None or parse_selector(total) is None:
        result.lost(where, name, ratio.path, "errors and total must be metric selectors "
                    "(Pyrra wraps them in rate()); SLO not imported")
        return None
    spec: dict[str, Any] = {"bad": errors, "total": total}
    if grouping:
        spec["group_by"] = grouping
    return {"ratio": spec}


def _bool_gauge(gauge: Fields, where: str, name: str,
                result: ImportResult) -> dict[str, Any] | None:
    """Pyrra's 0/1 gauge (e.g. probe_success), read the same way: each sample one event."""
    metric = str(gauge.get("metric") or "")
    grouping = _grouping(gauge, where, name, result)
    if parse_selector(metric) is None:
        result.lost(where, name, gauge.at("metric"), "must be a metric selector (Pyrra counts "
                    "its samples); SLO not imported")
        return None
    spec: dict[str, Any] = {"metric": metric}
    if grouping:
        spec["group_by"] = grouping
    return {"bool_gauge": spec}


def _latency(latency: Fields, where: str, name: str,
             result: ImportResult) -> dict[str, Any] | None:
    """A bucket/count pair of one histogram in seconds as a `latency` SLI; any other pair as
    a `query` SLI over the same two selectors, which counts the same events."""
    success_text = str(latency.child("success").get("metric") or "")
    total_text = str(latency.child("total").get("metric") or "")
    grouping = _grouping(latency, where, name, result)
    success, total = parse_selector(success_text), parse_selector(total_text)
    if success is None or total is None:
        result.lost(where, name, latency.path, "success and total must be metric selectors; "
                    "SLO not imported")
        return None
    mapped = _histogram(success, total)
    if mapped is not None:
        if grouping:
            mapped["group_by"] = grouping
        return {"latency": mapped}
    return {"query": {"good": rate_query(success.text(), grouping),
                      "total": rate_query(total.text(), grouping)}}


def _grouping(node: Fields, where: str, name: str, result: ImportResult) -> list[str]:
    """Pyrra's grouping labels, less those slo-engine sets itself (listed)."""
    labels = [str(g) for g in node.get("grouping") or []]
    for label in labels:
        if label in RESERVED_LABELS:
            result.lost(where, name, node.at("grouping"), f"'{label}' is a label slo-engine "
                        "sets itself; the SLO is imported without grouping by it")
    return [label for label in labels if label not in RESERVED_LABELS]


def _histogram(success: Selector, total: Selector) -> dict[str, Any] | None:
    base = success.metric.removesuffix("_bucket")
    le = success.value_of("le")
    threshold = None if le is None else le_duration(le)
    same = success.without("le").matchers == total.matchers
    if (threshold is None or not base.endswith("_seconds") or not same
            or success.metric == base or total.metric != f"{base}_count"):
        return None
    mapped: dict[str, Any] = {"metric": base}
    if total.matchers:
        mapped["selector"] = total.braces()
    mapped["threshold"] = threshold
    return mapped


def _alerting(alerting: Fields) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if alerting.get("disabled") is True or alerting.get("burnrates") is False:
        out["page"] = False
        out["ticket"] = False
    if alerting.get("absent") is False:
        out["data_absent"] = False
    if alerting.has("name"):
        out["name"] = str(alerting.get("name"))
    return out
