"""Sloth specs: `version: prometheus/v1` files and `PrometheusServiceLevel` CRDs.

Both carry the same fields (the CRD spells them in camelCase under `spec`). Sloth has no
period field (its CLI default is 30d, whose alert windows are the SRE Workbook's, as ours)
and no owner.
"""

from __future__ import annotations

from typing import Any

from slo_engine.importers.common import (
    Document,
    Fields,
    ImportResult,
    label_map,
    normalise_name,
    percent,
    promql_problem,
    sloth_window,
    unread_issues,
)
from slo_engine.spec.conventions import RESERVED_ANNOTATIONS, RESERVED_LABELS

SPEC_VERSION = "prometheus/v1"
CRD_VERSION = "sloth.slok.dev/v1"
SLOTH_PERIOD = "30d"


def is_sloth(body: Any) -> bool:
    return isinstance(body, dict) and (body.get("version") == SPEC_VERSION or (
        body.get("apiVersion") == CRD_VERSION and body.get("kind") == "PrometheusServiceLevel"))


def import_sloth(document: Document, owner: str, result: ImportResult) -> None:
    """Every SLO of one Sloth document into `result`, and every field it could not carry."""
    root = Fields(document.body, "")
    where = document.where
    head: dict[str, Any] = {"owner": owner}
    if root.get("apiVersion") == CRD_VERSION:
        root.get("kind")
        meta = root.child("metadata")
        name = meta.get("name")
        rule = {k: v for k, v in (("namespace", meta.get("namespace")),
                                  ("labels", meta.get("labels"))) if v}
        if rule:
            head["prometheus_rule"] = rule
        spec = Fields(root.get("spec"), "spec", camel=True)
        origin = f"{document.file}, document {document.index} (PrometheusServiceLevel {name})"
    else:
        root.get("version")
        spec = root
        origin = f"{document.file}, document {document.index}"
    service = str(spec.get("service") or "unnamed")
    labels = label_map(spec.get("labels"), where, "-", spec.at("labels"), result.issues)
    if labels:
        head["labels"] = labels
    if spec.has("slo_plugins"):
        spec.get("slo_plugins")
        result.lost(where, "-", spec.at("slo_plugins"),
                    "Sloth SLO plugins run Go code at generation time; no slo-engine equivalent")
    target = result.service(normalise_name(service), where, head)
    if target.service != service:
        result.notes.append(f"{where}: service {service}: renamed to {target.service}")
    for slo in spec.items("slos", track=False):
        name = str(slo.get("name") or "unnamed")
        mapped = _slo(slo, where, name, result, head.get("labels", {}))
        if mapped is not None:
            result.add(target, f"{origin}, slo {name}", where, name, mapped)
        result.issues.extend(unread_issues(slo, where, name))
    result.issues.extend(unread_issues(root, where, "-"))
    if spec is not root:
        result.issues.extend(unread_issues(spec, where, "-"))


def _slo(slo: Fields, where: str, name: str, result: ImportResult,
         service_labels: dict[str, str]) -> dict[str, Any] | None:
    """One Sloth SLO as a slo-engine SLO mapping, or None when its SLI has no equivalent."""
    out: dict[str, Any] = {}
    if slo.has("description"):
        out["description"] = str(slo.get("description"))
    objective = percent(slo.get("objective"))
    out["objective"] = objective
    out["period"] = SLOTH_PERIOD
    labels = label_map(slo.get("labels"), where, name, slo.at("labels"), result.issues)
    if labels:
        out["labels"] = labels
    if slo.has("id"):
        slo.get("id")
        result.lost(where, name, slo.at("id"), "slo-engine identifies an SLO by service and "
                    "name; the Sloth id is not kept")
    if slo.has("plugins"):
        slo.get("plugins")
        result.lost(where, name, slo.at("plugins"),
                    "Sloth SLO plugins run Go code at generation time; no slo-engine equivalent")
    sli = _sli(slo.child("sli"), where, name, result)
    links: dict[str, str] = {}
    alerting = _alerting(slo.child("alerting"), where, name, result, links)
    out.update(links)
    _without_carried_labels(alerting, {**service_labels, **labels}, where, name, result)
    if alerting:
        out["alerting"] = alerting
    if sli is None or objective is None:
        if objective is None:
            result.lost(where, name, slo.at("objective"), "not a number; SLO not imported")
        return None
    out["sli"] = sli
    order = ("description", "runbook_url", "dashboard_url", "objective", "period", "labels",
             "sli", "alerting")
    return {k: out[k] for k in order if k in out}


def _sli(sli: Fields, where: str, name: str, result: ImportResult) -> dict[str, Any] | None:
    if sli.has("events"):
        events = sli.child("events")
        bad, total = events.get("error_query"), events.get("total_query")
        if isinstance(bad, str) and isinstance(total, str):
            query = {"bad": sloth_window(bad).strip(), "total": sloth_window(total).strip()}
            for role, text in query.items():
                problem = promql_problem(text)
                if problem:
                    result.lost(where, name, events.at(f"{'error' if role == 'bad' else role}"
                                                       "_query"), f"not PromQL ({problem}); "
                                "SLO not imported")
                    return None
            return {"query": query}
        result.lost(where, name, events.path, "needs both error_query and total_query")
        return None
    if sli.has("raw"):
        raw = sli.child("raw")
        ratio = raw.get("error_ratio_query")
        if not isinstance(ratio, str):
            result.lost(where, name, raw.path, "needs error_ratio_query; SLO not imported")
            return None
        text = sloth_window(ratio).strip()
        problem = promql_problem(text)
        if problem:
            result.lost(where, name, raw.at("error_ratio_query"),
                        f"not PromQL ({problem}); SLO not imported")
            return None
        return {"error_ratio": {"query": text}}
    if sli.has("plugin"):
        sli.get("plugin")
        result.lost(where, name, sli.at("plugin"), "Sloth SLI plugins are Go code run by Sloth; "
                    "write the SLI as a query; SLO not imported")
        return None
    result.lost(where, name, sli.path, "no events, raw or plugin SLI; SLO not imported")
    return None


def _alert(alert: Fields, where: str, name: str, result: ImportResult) -> dict[str, Any]:
    """Sloth's page_alert/ticket_alert: the `severity` label becomes the tier's severity."""
    labels = {str(k): str(v) for k, v in (alert.get("labels") or {}).items()}
    out: dict[str, Any] = {}
    if "severity" in labels:
        out["severity"] = labels.pop("severity")
    if labels:
        out["labels"] = labels
    annotations = _annotations(alert, where, name, result, None)
    if annotations:
        out["annotations"] = annotations
    return out


def _annotations(alert: Fields, where: str, name: str, result: ImportResult,
                 links: dict[str, str] | None) -> dict[str, str]:
    """The annotations the spec lets an SLO add. The engine writes summary and description
    itself, so a source's are listed, not copied; runbook and dashboard links go to `links`
    (the SLO's own fields), or are listed where there is no such place (a single tier)."""
    kept: dict[str, str] = {}
    for key, value in (alert.get("annotations") or {}).items():
        key, value = str(key), str(value)
        if key not in RESERVED_ANNOTATIONS:
            kept[key] = value
        elif links is not None and key in ("runbook_url", "dashboard_url"):
            links[key] = value
        else:
            result.lost(where, name, f"{alert.at('annotations')}.{key}",
                        "the engine writes this annotation on every alert itself; not copied")
    return kept


def _alerting(alerting: Fields, where: str, name: str, result: ImportResult,
              links: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if alerting.has("name"):
        out["name"] = str(alerting.get("name"))
    labels = alerting.get("labels")
    if labels:
        out["labels"] = {str(k): str(v) for k, v in labels.items()}
    annotations = _annotations(alerting, where, name, result, links)
    if annotations:
        out["annotations"] = annotations
    for tier, switch in (("page_alert", "page"), ("ticket_alert", "ticket")):
        if not alerting.has(tier):
            continue
        alert = alerting.child(tier)
        if alert.get("disable") is True:
            out[switch] = False
        mapped = _alert(alert, where, name, result)
        if mapped:
            out[tier] = mapped
    return out


def _without_carried_labels(alerting: dict[str, Any], carried: dict[str, str], where: str,
                            name: str, result: ImportResult) -> None:
    """Sloth repeats the SLO's labels on its alerts; slo-engine puts `labels` on every alert
    already and refuses alert labels that would replace them. A repeat with the same value is
    no loss; another value, or a label the engine writes itself, is listed."""
    for path, holder in (("alerting", alerting),
                         *((f"alerting.{tier}", alerting.get(tier) or {})
                           for tier in ("page_alert", "ticket_alert"))):
        extra = holder.get("labels") or {}
        for key in sorted(extra):
            if carried.get(key) == extra[key]:
                del extra[key]
            elif key in carried or key in RESERVED_LABELS:
                result.lost(where, name, f"{path}.labels.{key}",
                            "the engine sets this label on every alert itself; not copied")
                del extra[key]
        if "labels" in holder and not extra:
            del holder["labels"]
        if path != "alerting" and not holder:
            alerting.pop(path.split(".")[1], None)
