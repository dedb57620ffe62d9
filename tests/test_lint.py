"""`validate --prometheus-url`: selectors that match nothing and latency thresholds that are
no bucket bound, located in the spec file, against a real Prometheus scraping an exporter."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from slo_engine.cli import main
from slo_engine.prometheus.lint import BucketCheck, SeriesCheck, bucket_problem, plan
from slo_engine.spec.loader import load_services
from tests.support.exporter import Exporter
from tests.support.prometheus import PrometheusServer

READY_TIMEOUT = 60.0

SPEC = """\
apiVersion: slo-engine/v1
service: api
owner: api-team
slos:
  - name: availability
    objective: 99.9
    sli:
      ratio:
        bad: http_requests_total{{code=~"5.."}}
        total: {total}
  - name: latency
    objective: 99
    sli:
      latency:
        metric: http_request_duration_seconds
        selector: '{{job="api"}}'
        threshold: {threshold}
  - name: jobs
    objective: 99
    sli:
      query:
        bad: sum(rate(jobs_failed_total[{{{{window}}}}]))
        total: sum(rate(http_requests_total[{{{{window}}}}]))
"""


def write_spec(directory: Path, *, total: str = "http_requests_total",
               threshold: str = "100ms") -> Path:
    path = directory / "api.yaml"
    path.write_text(SPEC.format(total=total, threshold=threshold))
    return path


# --- pure: what is asked, and what the answer means


def test_plan_asks_every_selector_and_the_threshold_bucket(tmp_path: Path) -> None:
    service = load_services([write_spec(tmp_path)])[0]
    checks = [plan(slo, i) for i, slo in enumerate(service.slos)]
    assert checks[0] == [
        SeriesCheck(("slos", 0, "sli", "ratio", "bad"), 'http_requests_total{code=~"5.."}',
                    optional=True),
        SeriesCheck(("slos", 0, "sli", "ratio", "total"), "http_requests_total")]
    assert checks[1] == [
        SeriesCheck(("slos", 1, "sli", "latency", "selector"),
                    'http_request_duration_seconds_count{job="api"}'),
        BucketCheck(("slos", 1, "sli", "latency", "threshold"),
                    'http_request_duration_seconds_bucket{job="api"}',
                    "http_request_duration_seconds", 0.1)]
    assert checks[2] == [
        SeriesCheck(("slos", 2, "sli", "query", "bad"), "jobs_failed_total", optional=True),
        SeriesCheck(("slos", 2, "sli", "query", "total"), "http_requests_total")]


BUCKET = BucketCheck((), "h_bucket", "h", 0.075)


def test_a_threshold_between_bounds_names_the_bounds() -> None:
    assert bucket_problem(BUCKET, ["0.01", "0.1", "0.05", "+Inf", "0.1"]) == (
        "75ms is not a bucket bound of h; its bounds are 0.01, 0.05, 0.1, +Inf; pick one "
        "(a missing bucket leaves the SLI without data)")


def test_a_bound_matches_however_the_exporter_writes_it() -> None:
    assert bucket_problem(BucketCheck((), "h_bucket", "h", 1.0), ["0.5", "1.0", "+Inf"]) is None
    assert bucket_problem(BucketCheck((), "h_bucket", "h", 1.0), ["1", "+Inf"]) is None
    assert bucket_problem(BUCKET, ["0.075"]) is None


def test_no_buckets_at_all_says_so() -> None:
    assert bucket_problem(BUCKET, []) == ("no series of h_bucket in Prometheus over the last "
                                          "1h; check the metric name and the selector")


# --- against a real Prometheus


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory,
               prometheus_binary: str) -> Iterator[PrometheusServer]:
    exporter = Exporter(rps=100).start()
    server = PrometheusServer(prometheus_binary, tmp_path_factory.mktemp("lint"),
                              scrape_interval="1s", evaluation_interval="1s",
                              scrape_targets={"api": [exporter.target]})
    try:
        server.start()
        deadline = time.monotonic() + READY_TIMEOUT
        while not server.query("http_request_duration_seconds_count"):
            assert time.monotonic() < deadline, "Prometheus has not scraped the exporter"
            time.sleep(0.5)
        yield server
    finally:
        server.stop()
        exporter.stop()


@pytest.mark.prometheus
def test_specs_that_fit_the_metrics_pass_with_a_warning_for_a_quiet_bad_counter(
        prometheus: PrometheusServer, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(tmp_path)
    assert main(["validate", str(path), "--prometheus-url", prometheus.url]) == 0
    out, err = capsys.readouterr()
    assert "OK: 3 SLOs in 1 service valid" in out
    assert err.splitlines() == [
        f"{path}:22:14: slos[2].sli.query.bad: warning: jobs_failed_total matches no series "
        "in Prometheus over the last 1h; fine if nothing has failed yet, else check it"]


@pytest.mark.prometheus
def test_a_threshold_off_the_buckets_and_a_misspelt_counter_are_errors(
        prometheus: PrometheusServer, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(tmp_path, total="http_request_total", threshold="75ms")
    assert main(["validate", str(path), "--prometheus-url", prometheus.url]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == [
        f"{path}:10:16: slos[0].sli.ratio.total: http_request_total matches no series in "
        "Prometheus over the last 1h; check the metric name and the label matchers",
        f"{path}:17:20: slos[1].sli.latency.threshold: 75ms is not a bucket bound of "
        "http_request_duration_seconds; its bounds are 0.05, 0.1, 0.25, 0.5, 1, 2.5, +Inf; "
        "pick one (a missing bucket leaves the SLI without data)"]
    assert err[-1] == f"2 errors found against {prometheus.url}"
