"""SLO model → Grafana dashboards (an overview, and one per service) and their provisioning file.

Pure: the dashboards are grafana-foundation-sdk objects, serialised by its encoder. Every
panel reads the series the compiled rules record (`spec.conventions`), so the dashboards need
no other exporter; change events come from the service's own metric
`slo_engine_last_change_timestamp_seconds` (one annotation each time it moves), and firing
alerts from Prometheus' `ALERTS`.

`$service` and `$slo` are multi-value query variables whose "All" is `.+`: a selector never
matches a series without the label (the Sloth-compatible `slo:objective:ratio` has none).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.builders import dashboard as grafana
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from slo_engine.spec import conventions as names
from slo_engine.spec.model import Service

DATASOURCE_VARIABLE = "datasource"
DATASOURCE = DataSourceRef(type_val="prometheus", uid=f"${{{DATASOURCE_VARIABLE}}}")
ALL = ".+"
SERVICE_SELECTOR = 'service=~"$service", slo=~"$slo"'
WINDOW_LEGEND = "{{service}}/{{slo}} {{window}}"
OVERVIEW_UID = "slo-engine-overview"
UID_LENGTH = 40
TAG = "slo-engine"
PROVIDER_NAME = "slo-engine"


@dataclass(frozen=True)
class PanelQuery:
    """A query as a panel or an annotation sends it, for a test or a reader to run."""

    dashboard: str
    panel: str
    expr: str


def _query(expr: str, legend: str = "{{service}}/{{slo}}", ref: str = "A") -> \
        prometheus.Dataquery:
    return (prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref)
            .datasource(DATASOURCE))


def _sel(metric: str) -> str:
    return f"{metric}{{{SERVICE_SELECTOR}}}"


def _window_ratios() -> str:
    """Every window's error ratio an SLO records, labelled `window`: one query covers SLOs
    whose tiers read different windows."""
    prefix = names.error_ratio_metric("")
    return (f'label_replace({{__name__=~"{prefix}.+", {SERVICE_SELECTOR}}}, '
            f'"window", "$1", "__name__", "{prefix}(.+)")')


def _budget_panel() -> stat.Panel:
    return (stat.Panel().title("Error budget remaining").unit("percentunit").decimals(1)
            .description("Of the period's budget; negative when overspent.")
            .with_target(_query(_sel(names.ERROR_BUDGET_REMAINING)).instant())
            .datasource(DATASOURCE).height(6).span(24))


def _burn_panel() -> timeseries.Panel:
    burn = (f"{_window_ratios()}\n/ on (service, slo) group_left ()\n"
            f"(1 - {_sel(names.OBJECTIVE)})")
    return (timeseries.Panel().title("Burn rate per window").unit("x")
            .description("Error ratio over the window / error budget; 1x spends the budget "
                         "in exactly the period.").datasource(DATASOURCE).height(8).span(12)
            .with_target(_query(burn, WINDOW_LEGEND)))


def _error_ratio_panel() -> timeseries.Panel:
    return (timeseries.Panel().title("Error ratio per window").unit("percentunit")
            .datasource(DATASOURCE).height(8).span(12)
            .with_target(_query(_window_ratios(), WINDOW_LEGEND)))


def _sli_panel() -> timeseries.Panel:
    return (timeseries.Panel().title("SLI over the period").unit("percentunit").decimals(3)
            .description("Good events over all events since the period's start; the dashed "
                         "line is the objective.").datasource(DATASOURCE).height(8).span(12)
            .with_target(_query(f"1 - {_sel(names.PERIOD_ERROR_RATIO)}",
                                "{{service}}/{{slo}} SLI"))
            .with_target(_query(_sel(names.OBJECTIVE), "{{service}}/{{slo}} objective", "B")))


def _alerts_panel() -> table.Panel:
    """Firing alerts per SLO and severity; 0 rows become a 0 per SLO, so a quiet SLO shows."""
    firing = (f"sum by (service, slo, severity) "
              f"(ALERTS{{alertstate=\"firing\", {SERVICE_SELECTOR}}})")
    quiet = f"sum by (service, slo) (0 * {_sel(names.OBJECTIVE)})"
    return (table.Panel().title("Firing alerts").datasource(DATASOURCE).height(8).span(12)
            .with_target(_query(f"{firing}\nor\n{quiet}").instant()
                         .format(PromQueryFormat.TABLE)))


def _variable(name: str, query: str) -> grafana.QueryVariable:
    return (grafana.QueryVariable(name).label(name).query(query).datasource(DATASOURCE)
            .multi(True).include_all(True).all_value(ALL)
            .current(VariableOption(selected=True, text="All", value="$__all"))
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC))


def _changes_annotation() -> grafana.AnnotationQuery:
    return (grafana.AnnotationQuery().name("Changes").datasource(DATASOURCE).enable(True)
            .icon_color("purple").expr(change_annotation_expr()))


def change_annotation_expr() -> str:
    """One point each time a service records a change of a kind (its timestamp moves)."""
    return (f"changes({names.LAST_CHANGE_TIMESTAMP}{{service=~\"$service\"}}[2m]) > 0")


def _dashboard(title: str, uid: str, service_query: str) -> grafana.Dashboard:
    return (grafana.Dashboard(title).uid(uid).tags([TAG]).time("now-7d", "now").refresh("1m")
            .timezone("utc").editable()
            .with_variable(grafana.DatasourceVariable(DATASOURCE_VARIABLE).label("Prometheus")
                           .type("prometheus"))
            .with_variable(_variable("service", service_query))
            .with_variable(_variable(
                "slo", f'label_values({names.OBJECTIVE}{{service=~"$service"}}, slo)'))
            .annotation(_changes_annotation())
            .with_panel(_budget_panel())
            .with_panel(_burn_panel())
            .with_panel(_error_ratio_panel())
            .with_panel(_sli_panel())
            .with_panel(_alerts_panel()))


def overview() -> grafana.Dashboard:
    return _dashboard("SLOs: overview", OVERVIEW_UID,
                      f"label_values({names.OBJECTIVE}, service)")


def service_dashboard(service: Service) -> grafana.Dashboard:
    return _dashboard(f"SLOs: {service.name}", service_uid(service.name),
                      f'label_values({names.OBJECTIVE}{{service="{service.name}"}}, service)')


def service_uid(service: str) -> str:
    """Grafana's uid holds at most 40 characters: a longer name keeps its start and a hash,
    so two services sharing a long prefix still get two dashboards."""
    uid = f"slo-engine-{service}"
    if len(uid) <= UID_LENGTH:
        return uid
    digest = hashlib.sha256(service.encode()).hexdigest()[:8]
    return f"{uid[:UID_LENGTH - 9]}-{digest}"


def dashboard_json(builder: grafana.Dashboard) -> str:
    return json.dumps(builder.build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def provisioning_yaml(grafana_path: str) -> str:
    """Grafana's dashboards provider: load every file of the directory into one folder."""
    return ("# Generated by slo-engine dashboards. DO NOT EDIT.\n"
            "apiVersion: 1\n"
            "providers:\n"
            f"  - name: {PROVIDER_NAME}\n"
            "    folder: SLOs\n"
            "    type: file\n"
            "    disableDeletion: false\n"
            "    allowUiUpdates: false\n"
            "    updateIntervalSeconds: 60\n"
            "    options:\n"
            f"      path: {json.dumps(grafana_path)}\n")


def dashboard_files(services: Sequence[Service], grafana_path: str) -> dict[str, str]:
    """Every file `dashboards` writes, by name relative to its output directory."""
    files = {"overview.json": dashboard_json(overview())}
    for service in services:
        files[f"{service.name}.json"] = dashboard_json(service_dashboard(service))
    files["provisioning/slo-engine.yaml"] = provisioning_yaml(grafana_path)
    return files


def panel_queries(name: str, document: dict[str, object]) -> list[PanelQuery]:
    """Every panel target's and annotation's `expr` of a dashboard's JSON."""
    found: list[PanelQuery] = []
    panels = document.get("panels", [])
    assert isinstance(panels, list)
    for panel in panels:
        for target in panel.get("targets", []):
            found.append(PanelQuery(name, str(panel.get("title")), str(target["expr"])))
    annotations = document.get("annotations", {})
    assert isinstance(annotations, dict)
    for annotation in annotations.get("list", []):
        if "expr" in annotation:
            found.append(PanelQuery(name, f"annotation {annotation['name']}",
                                    str(annotation["expr"])))
    return found
