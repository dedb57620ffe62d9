"""`slo-engine import`: the mapping of each source format, and the corpus of real documents.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from slo_engine import app
from slo_engine.cli import main
from slo_engine.importers import import_texts, render
from slo_engine.importers.common import ImportResult
from tests.support import promtool as promtool_run

CORPUS = Path(__file__).parent / "corpus"


def _import(fmt: str, text: str) -> ImportResult:
    return import_texts(fmt, [("src.yml", textwrap.dedent(text))], "team")  # type: ignore[arg-type]


def _slos(result: ImportResult) -> list[dict[str, object]]:
    return [slo.spec for service in result.services for slo in service.slos]


SLOTH = """
    version: "prometheus/v1"
    service: "My Service"
    labels: {tier: "2"}
    slos:
      - name: requests_availability
        objective: 99.9
        description: errors
        sli:
          events:
            error_query: sum(rate(http_total{code=~"5.."}[{{.window}}]))
            total_query: sum(rate(http_total[{{ .window }}]))
        alerting:
          name: HighErrorRate
          labels: {category: availability}
          page_alert: {labels: {severity: pageteam, routing_key: team}}
          ticket_alert: {disable: true}
      - name: raw
        objective: 99
        sli: {raw: {error_ratio_query: "1 - avg(avg_over_time(x[{{.window}}]))"}}
    """


def test_sloth_events_become_a_query_sli_with_the_window_placeholder() -> None:
    result = _import("sloth", SLOTH)
    slo, _ = _slos(result)
    assert slo["name"] == "requests-availability"
    assert slo["sli"] == {"query": {"bad": 'sum(rate(http_total{code=~"5.."}[{{window}}]))',
                                    "total": "sum(rate(http_total[{{window}}]))"}}
    assert (slo["objective"], slo["period"]) == (99.9, "30d")
    assert result.services[0].service == "my-service"
    assert any("renamed to requests-availability" in note for note in result.notes)


def test_sloth_raw_sli_becomes_an_error_ratio_sli() -> None:
    result = _import("sloth", SLOTH)
    assert _slos(result)[1]["sli"] == {
        "error_ratio": {"query": "1 - avg(avg_over_time(x[{{window}}]))"}}
    assert result.issues == []


def test_sloth_raw_sli_that_is_not_promql_is_listed_not_dropped() -> None:
    issues = [str(i) for i in _import("sloth", SLOTH.replace("avg(avg_over_time", "avg((")).issues]
    assert "src.yml:1: raw: slos[1].sli.raw.error_ratio_query: not PromQL" in "\n".join(issues)


def test_sloth_alerting_maps_to_the_alerting_fields() -> None:
    result = _import("sloth", SLOTH)
    text = render(result.services[0], "slo-engine import sloth")
    assert "    alerting:\n      name: HighErrorRate\n" in text
    assert "      ticket: false\n" in text
    assert "      page_alert:\n        severity: pageteam\n        labels:\n" \
           "          routing_key: team\n" in text
    assert "# from src.yml, document 1, slo requests_availability" in text


def test_sloth_crd_uses_camel_case_and_metadata_for_the_prometheus_rule() -> None:
    result = _import("sloth", """
        apiVersion: sloth.slok.dev/v1
        kind: PrometheusServiceLevel
        metadata: {name: x, namespace: monitoring, labels: {release: prom}}
        spec:
          service: svc
          slos:
            - name: a
              objective: 99
              sli: {events: {errorQuery: "sum(rate(e[{{.window}}]))",
                             totalQuery: "sum(rate(t[{{.window}}]))"}}
              alerting: {pageAlert: {disable: true}}
        """)
    assert result.services[0].head["prometheus_rule"] == {
        "namespace": "monitoring", "labels": {"release": "prom"}}
    assert _slos(result)[0]["alerting"] == {"page": False}
    assert result.issues == []


PYRRA = """
    apiVersion: pyrra.dev/v1alpha1
    kind: ServiceLevelObjective
    metadata: {name: api-errors, namespace: web}
    spec:
      target: "99.5"
      window: 28d
      indicator:
        ratio:
          errors: {metric: 'http_requests_total{job="api",code=~"5.."}'}
          total: {metric: 'http_requests_total{job="api"}'}
          grouping: [route]
    ---
    apiVersion: pyrra.dev/v1alpha1
    kind: ServiceLevelObjective
    metadata: {name: api-latency, namespace: web}
    spec:
      target: "99"
      window: 4w
      indicator:
        latency:
          success: {metric: 'http_duration_seconds_bucket{job="api",le="0.25"}'}
          total: {metric: 'http_duration_seconds_count{job="api"}'}
    ---
    apiVersion: pyrra.dev/v1alpha1
    kind: ServiceLevelObjective
    metadata: {name: probe}
    spec:
      target: "99"
      window: 7d
      indicator: {bool_gauge: {metric: 'probe_success{job="blackbox"}', grouping: [target]}}
    """


def test_pyrra_ratio_and_latency_map_to_ratio_and_latency_slis() -> None:
    result = _import("pyrra", PYRRA)
    errors, latency, _ = _slos(result)
    assert errors["sli"] == {"ratio": {"bad": 'http_requests_total{job="api",code=~"5.."}',
                                       "total": 'http_requests_total{job="api"}',
                                       "group_by": ["route"]}}
    assert (errors["objective"], errors["period"]) == (99.5, "28d")
    assert latency["sli"] == {"latency": {"metric": "http_duration_seconds",
                                          "selector": '{job="api"}', "threshold": "250ms"}}
    assert result.services[0].service == "web"
    assert result.issues == []


def test_pyrra_bool_gauge_maps_to_a_bool_gauge_sli() -> None:
    result = _import("pyrra", PYRRA)
    assert _slos(result)[2]["sli"] == {"bool_gauge": {"metric": 'probe_success{job="blackbox"}',
                                                      "group_by": ["target"]}}
    assert [s.service for s in result.services] == ["web", "probe"]


def test_pyrra_bool_gauge_over_other_promql_is_listed_not_dropped() -> None:
    result = _import("pyrra", PYRRA.replace("'probe_success{job=\"blackbox\"}'",
                                            "'max(probe_success)'"))
    assert [i.what for i in result.issues] == ["spec.indicator.bool_gauge.metric"]
    assert len(_slos(result)) == 2


def test_pyrra_latency_over_other_selectors_becomes_a_query() -> None:
    result = _import("pyrra", PYRRA.split("---")[1].replace(
        'http_duration_seconds_count{job="api"}', 'http_duration_seconds_count{job="web"}'))
    assert _slos(result)[0]["sli"] == {"query": {
        "good": 'sum(rate(http_duration_seconds_bucket{job="api", le="0.25"}[{{window}}]))',
        "total": 'sum(rate(http_duration_seconds_count{job="web"}[{{window}}]))'}}


OPENSLO = """
    apiVersion: openslo/v1
    kind: SLI
    metadata: {name: good-requests}
    spec:
      ratioMetric:
        counter: true
        good: {metricSource: {type: Prometheus, spec: {query: 'http_total{code!~"5.."}'}}}
        total: {metricSource: {type: Prometheus, spec: {query: http_total}}}
    ---
    apiVersion: openslo/v1
    kind: SLO
    metadata: {name: availability}
    spec:
      service: shop
      description: requests succeed
      indicatorRef: good-requests
      timeWindow: [{duration: 2w, isRolling: true}]
      budgetingMethod: Occurrences
      objectives: [{displayName: main, target: 0.995}]
    ---
    apiVersion: openslo/v1
    kind: SLO
    metadata: {name: monthly}
    spec:
      service: shop
      indicatorRef: good-requests
      timeWindow: [{duration: 1M, calendar: {startTime: "2022-01-01 00:00:00", timeZone: UTC}}]
      budgetingMethod: Occurrences
      objectives: [{target: 0.99}]
    """


def test_openslo_referenced_counter_sli_becomes_a_ratio_sli() -> None:
    result = _import("openslo", OPENSLO)
    [slo] = _slos(result)
    assert slo == {"name": "availability", "description": "requests succeed",
                   "objective": 99.5, "period": "2w",
                   "sli": {"ratio": {"good": 'http_total{code!~"5.."}', "total": "http_total"}}}
    assert [(i.slo, i.what) for i in result.issues] == [("monthly", "spec.timeWindow[0]")]


def test_openslo_v1alpha_window_queries_become_a_query_sli() -> None:
    result = _import("openslo", """
        apiVersion: openslo/v1alpha
        kind: SLO
        metadata: {name: lat}
        spec:
          service: api
          objectives:
            - ratioMetrics:
                good: {source: prometheus, queryType: promql, query: "sum(rate(g[{{.window}}]))"}
                total: {source: prometheus, queryType: promql, query: "sum(rate(t[{{.window}}]))"}
              target: 0.999
          timeWindows: [{count: 28, unit: Day}]
        """)
    assert _slos(result)[0]["sli"] == {"query": {"good": "sum(rate(g[{{window}}]))",
                                                 "total": "sum(rate(t[{{window}}]))"}}
    assert _slos(result)[0]["period"] == "28d"


def test_unknown_fields_are_listed_not_dropped() -> None:
    result = _import("pyrra", PYRRA.split("---")[0].replace("window: 28d",
                                                             "window: 28d\n      extra: 1"))
    assert [str(i) for i in result.issues] == [
        "src.yml:1: api-errors: spec.extra: not imported: the importer does not know this field"]


def test_cli_exits_1_and_writes_nothing_unless_partial(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "slo.yaml"
    source.write_text(textwrap.dedent(PYRRA).replace("bool_gauge", "latencyNative"))
    assert main(["import", "pyrra", str(source), "--out", str(tmp_path / "a")]) == 1
    assert not (tmp_path / "a").exists()
    assert f"{source}:3: probe: spec.indicator.latencyNative:" in capsys.readouterr().err
    assert main(["import", "pyrra", str(source), "--out", str(tmp_path / "b"),
                 "--allow-partial", "--owner", "web-team"]) == 0
    [service] = app.validate([tmp_path / "b" / "web.yaml"])
    assert (service.owner, len(service.slos)) == ("web-team", 2)


def _corpus() -> list[tuple[str, Path]]:
    files = sorted(p for p in CORPUS.rglob("*.y*ml") if "_gen" not in p.parts)
    return [("pyrra" if p.parent.name in ("pyrra", "kubernetes") else
             "sloth" if p.parent.name == "sloth" else "openslo", p) for p in files]


def test_corpus_holds_at_least_25_real_documents() -> None:
    documents = [d for _, p in _corpus() for d in yaml.safe_load_all(p.read_text()) if d]
    assert len(documents) >= 25


@pytest.mark.parametrize(("fmt", "name", "kind"), [
    ("sloth", "sloth/raw-home-wifi.yml", "error_ratio"),
    ("pyrra", "pyrra/prometheus-probe-success.yaml", "bool_gauge"),
])
def test_corpus_raw_and_bool_gauge_slis_import_whole(fmt: str, name: str, kind: str,
                                                     tmp_path: Path) -> None:
    assert main(["import", fmt, str(CORPUS / name), "--out", str(tmp_path)]) == 0
    [service] = app.validate([tmp_path])
    assert [type(slo.sli).__name__ for slo in service.slos] == [
        {"error_ratio": "ErrorRatioSLI", "bool_gauge": "BoolGaugeSLI"}[kind]]


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, Path]:
    """Every corpus file imported on its own (--allow-partial) and compiled: out dir per file."""
    root = tmp_path_factory.mktemp("corpus")
    outputs: dict[Path, Path] = {}
    for fmt, path in _corpus():
        out = root / path.relative_to(CORPUS).with_suffix("")
        assert main(["import", fmt, str(path), "--out", str(out / "slos"),
                     "--allow-partial"]) == 0, path
        if any((out / "slos").glob("*.yaml")):
            app.compile_rules([out / "slos"], out / "rules")
            outputs[path] = out
    return outputs


@pytest.mark.prometheus
def test_corpus_imports_validate_compile_and_pass_promtool_check(
        imported: dict[Path, Path], promtool: str) -> None:
    assert len(imported) >= 30
    for out in imported.values():
        for rules in (out / "rules").glob("*.yml"):
            check = promtool_run.run(promtool, "check", "rules", str(rules))
            assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.prometheus
def test_corpus_generated_tests_pass_promtool(imported: dict[Path, Path], promtool: str) -> None:
    """Every imported service's generated unit tests, multi-SLO services included."""
    files = sorted(f for out in imported.values() for f in (out / "rules" / "tests").glob(
        "*.test.yml"))
    several = [out for out in imported.values()
               if sum(len(s.slos) for s in app.validate([out / "slos"])) > 1]
    assert len(files) >= 30 and several
    assert promtool_run.test_rules(promtool, files) == []
