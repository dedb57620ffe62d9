"""The generated Grafana dashboards and the Sloth-compatible series, against a real Prometheus.

It holds the demo's month as `slo-engine demo-prometheus` serves it (the recorded 5m rates,
backfilled with promtool), the service's change metric for the demo's changes, and the
rules compiled with `--sloth-compatible` backfilled over the month's last hours, level by
level (blocks moved in, Prometheus restarted by PID). Every panel's and annotation's query
runs with its template variables substituted; an error or an empty answer fails.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from slo_engine.dashboards.grafana import ALL, dashboard_files, panel_queries
from slo_engine.demo.month import DemoData, demo_data
from slo_engine.demo.prometheus import LEAD_DAYS, write_openmetrics
from slo_engine.rules import sloth_compat as sloth
from slo_engine.rules.backfill import backfill
from slo_engine.rules.compile import RecordingRule, RuleGroup, RuleSet, compile_service
from slo_engine.spec import conventions as names
from slo_engine.spec.loader import load_services
from slo_engine.spec.model import Service
from tests.support.binaries import require
from tests.support.paths import ROOT
from tests.support.prometheus import (
    PrometheusError,
    PrometheusServer,
    backfill_openmetrics,
    move_blocks,
    running_prometheus,
)

UNTIL = datetime(2026, 5, 31, 12, tzinfo=UTC)
DAYS = 30
RULES_SPAN = timedelta(hours=2)  # the recorded rules are backfilled over the month's end
PANEL_SPAN = 3600.0  # what each panel's range query covers, ending at UNTIL
ANNOTATION_STEP = 300.0
EVENT_RATES = {names.TOTAL_EVENTS_RATE, names.BAD_EVENTS_RATE}


@pytest.fixture(scope="module")
def services() -> list[Service]:
    return load_services([ROOT / "slo_definitions"])


@pytest.fixture(scope="module")
def month(services: list[Service]) -> DemoData:
    return demo_data(services, UNTIL, DAYS + LEAD_DAYS)


def _change_metric(path: Path, services: list[Service], month: DemoData) -> None:
    """What `slo-engine run` exports for the month's changes, scraped once a minute: per
    watched service and kind, the time of its latest change, from that change on."""
    watched = {s.name for s in services}
    starts: dict[tuple[str, str], list[float]] = {}
    for change in month.changes:
        if change.service in watched:
            starts.setdefault((change.service, change.kind), []).append(change.time.timestamp())
    end = int(UNTIL.timestamp())
    lines = [f"# TYPE {names.LAST_CHANGE_TIMESTAMP} gauge"]
    for (service, kind), times in sorted(starts.items()):
        times.sort()
        first = int(times[0]) // 60 * 60 + 60
        for stamp in range(first, end + 1, 60):
            latest = max(t for t in times if t <= stamp)
            lines.append(f'{names.LAST_CHANGE_TIMESTAMP}{{kind="{kind}",service="{service}"}} '
                         f"{latest:.0f} {stamp}")
    path.write_text("\n".join([*lines, "# EOF", ""]), encoding="utf-8")


def _derived_rules(services: list[Service]) -> list[RuleSet]:
    """The compat rule sets without the raw reads: the demo's month already holds the 5m
    rates they record."""
    rule_sets = [sloth.with_sloth_series(s, compile_service(s)) for s in services]
    return [replace(rs, groups=tuple(
        RuleGroup(g.name, tuple(r for r in g.rules if isinstance(r, RecordingRule)
                                and r.record not in EVENT_RATES), g.interval)
        for g in rs.groups)) for rs in rule_sets]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, services: list[Service],
               month: DemoData) -> Iterator[PrometheusServer]:
    promtool, binary = require("promtool"), require("prometheus")
    work = tmp_path_factory.mktemp("grafana")
    data_dir = work / "prometheus" / "data"
    write_openmetrics(work / "recorded.om", services, month.ledger)
    backfill_openmetrics(promtool, work / "recorded.om", data_dir)
    _change_metric(work / "changes.om", services, month)
    backfill_openmetrics(promtool, work / "changes.om", data_dir)
    with running_prometheus(binary, work / "prometheus") as server:
        def load(blocks: Path) -> None:
            if move_blocks(blocks, server.data_dir):
                server.restart()

        result = backfill(_derived_rules(services), server.url, UNTIL - RULES_SPAN, UNTIL,
                          work / "backfill", load_blocks=load, promtool=promtool)
        assert result.done, result
        yield server


AT = UNTIL.timestamp() - 60  # the newest evaluation every group has made


SLOTH_SERIES = [sloth.OBJECTIVE, sloth.ERROR_BUDGET, sloth.TIME_PERIOD_DAYS,
                sloth.CURRENT_BURN_RATE, sloth.PERIOD_BURN_RATE, sloth.PERIOD_BUDGET_REMAINING,
                sloth.SLO_INFO]


def _by_sloth_id(prometheus: PrometheusServer, metric: str) -> dict[str, list[dict[str, str]]]:
    found: dict[str, list[dict[str, str]]] = {}
    for sample in prometheus.query(f'{{__name__="{metric}", sloth_id!=""}}', AT):
        found.setdefault(sample.labels["sloth_id"], []).append(
            {**sample.labels, "__value__": repr(sample.value)})
    return found


def test_every_sloth_series_exists_for_every_slo_with_sloths_labels(
        prometheus: PrometheusServer, services: list[Service]) -> None:
    slos = [slo for s in services for slo in s.slos]
    for slo in slos:
        sloth_id = f"{slo.service}-{slo.name}"
        for window in [*slo.windows, slo.period]:
            metric = sloth.sli_error_metric(window)
            series = _by_sloth_id(prometheus, metric).get(sloth_id)
            assert series, f"{metric} missing for {sloth_id}"
            for labels in series:
                assert labels["sloth_service"] == slo.service
                assert labels["sloth_slo"] == slo.name
                assert labels["sloth_window"] == window
                assert "slo" not in labels and "service" not in labels
                assert 0 <= float(labels["__value__"]) <= 1, (metric, labels)
        for metric in SLOTH_SERIES:
            series = _by_sloth_id(prometheus, metric).get(sloth_id)
            assert series, f"{metric} missing for {sloth_id}"
            assert all(s["sloth_service"] == slo.service and s["sloth_slo"] == slo.name
                       for s in series)
            for key, value in slo.labels[2:]:  # the spec's labels, as Sloth copies them
                assert all(s[key] == value for s in series), (metric, key)


def _value(prometheus: PrometheusServer, expr: str) -> float:
    return prometheus.query_value(expr, AT)


def test_sloth_values_agree_with_the_engines_own_series(
        prometheus: PrometheusServer, services: list[Service]) -> None:
    for slo in (slo for s in services for slo in s.slos if not slo.group_by):
        sel = (f'{{sloth_id="{slo.service}-{slo.name}", sloth_service="{slo.service}", '
               f'sloth_slo="{slo.name}"}}')
        own = f'{{slo="{slo.name}", service="{slo.service}"}}'
        assert _value(prometheus, f"{sloth.OBJECTIVE}{sel}") == pytest.approx(slo.objective)
        assert _value(prometheus, f"{sloth.ERROR_BUDGET}{sel}") == \
            pytest.approx(slo.error_budget)
        assert _value(prometheus, f"{sloth.TIME_PERIOD_DAYS}{sel}") == \
            pytest.approx(slo.period_seconds / 86400)
        info = prometheus.query(f"{sloth.SLO_INFO}{sel}", AT)
        assert [s.value for s in info] == [1.0]
        assert info[0].labels["sloth_objective"] == slo.objective_percent
        assert info[0].labels["sloth_mode"] == "cli-gen-prom"
        # The same budget as the engine's: 1 − period ratio / budget, one evaluation apart.
        remaining = _value(prometheus, f"{sloth.PERIOD_BUDGET_REMAINING}{sel}")
        engine = _value(prometheus, f"{names.ERROR_BUDGET_REMAINING}{own}")
        assert math.isfinite(remaining) and remaining == pytest.approx(engine, abs=0.02)
        burn = _value(prometheus, f"{sloth.CURRENT_BURN_RATE}{sel}")
        ratio = _value(prometheus, f"{sloth.sli_error_metric('5m')}{sel}")
        assert burn == pytest.approx(ratio / slo.error_budget)
        assert ratio == pytest.approx(_value(prometheus, f"{names.error_ratio_metric('5m')}"
                                                         f"{own}"))


def _substitute(expr: str, service: str, slo: str) -> str:
    return expr.replace("$service", service).replace("$slo", slo)


def _escaped(value: str) -> str:
    """A single value as Grafana interpolates it into a Prometheus regex matcher."""
    return re.sub(r"[$^*{}\[\]'+?.()|\\]", lambda m: "\\\\" + m.group(), value)


def _bindings(name: str, services: list[Service]) -> list[tuple[str, str]]:
    """The template values a dashboard is opened with: All, then each service and SLO."""
    chosen = services if name == "overview" else [s for s in services if s.name == name]
    pairs = [(ALL if name == "overview" else _escaped(chosen[0].name), ALL)]
    pairs += [(_escaped(s.name), _escaped(slo.name)) for s in chosen for slo in s.slos]
    return pairs


def test_every_panel_and_annotation_query_returns_data(
        prometheus: PrometheusServer, services: list[Service], month: DemoData) -> None:
    files = dashboard_files(services, "/var/lib/grafana/dashboards/slo-engine")
    changed = {c.service for c in month.changes}
    failures: list[str] = []
    checked = 0
    for file, text in files.items():
        if not file.endswith(".json"):
            continue
        name = file.removesuffix(".json")
        for query in panel_queries(name, json.loads(text)):
            for service, slo in _bindings(name, services):
                expr = _substitute(query.expr, service, slo)
                what = f"{name} / {query.panel} (service={service}, slo={slo}): {expr}"
                if query.panel.startswith("annotation"):
                    if service != ALL and service not in changed:
                        continue  # a service without changes has no annotation to show
                    start, step = UNTIL.timestamp() - DAYS * 86400, ANNOTATION_STEP
                else:
                    start, step = UNTIL.timestamp() - PANEL_SPAN, 60.0
                try:
                    answer = prometheus.query_range(expr, start, UNTIL.timestamp(), step)
                except PrometheusError as error:
                    failures.append(f"{what}\n  error: {error}")
                    continue
                checked += 1
                if not any(series.points for series in answer):
                    failures.append(f"{what}\n  empty")
    assert not failures, "\n".join(failures)
    assert checked > 50


def test_the_provisioning_file_points_grafana_at_the_dashboards(services: list[Service]) -> None:
    import yaml

    files = dashboard_files(services, "/srv/grafana/slo")
    provider = yaml.safe_load(files["provisioning/slo-engine.yaml"])
    assert provider["apiVersion"] == 1
    [entry] = provider["providers"]
    assert entry["type"] == "file" and entry["options"]["path"] == "/srv/grafana/slo"
    assert sorted(f for f in files if f.endswith(".json")) == sorted(
        ["overview.json", *(f"{s.name}.json" for s in services)])
    uids = {json.loads(t)["uid"] for f, t in files.items() if f.endswith(".json")}
    assert len(uids) == len(services) + 1


def test_the_command_writes_the_golden_dashboards(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from slo_engine.cli import main

    assert main(["dashboards", str(ROOT / "slo_definitions"), "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote 7 files to {tmp_path}")
    golden = ROOT / "tests" / "golden" / "dashboards"
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.*"))
    assert written == sorted(p.relative_to(golden).as_posix() for p in golden.rglob("*.*"))
    for name in written:
        assert (tmp_path / name).read_text(encoding="utf-8") == \
            (golden / name).read_text(encoding="utf-8"), name


def test_long_service_names_get_distinct_uids_grafana_accepts() -> None:
    from slo_engine.dashboards.grafana import UID_LENGTH, service_uid

    long = "payments-settlement-reconciliation-"
    uids = {service_uid(long + "eu"), service_uid(long + "us"), service_uid("checkout")}
    assert len(uids) == 3 and all(len(u) <= UID_LENGTH for u in uids)
    assert service_uid("checkout") == "slo-engine-checkout"
