"""The generated rules, evaluated by a real Prometheus over 8 days of history, against truth.

A spec is compiled with slo_engine, 8 days of synthetic counters (diurnal traffic,
incidents, a quiet hour with no traffic, a counter reset) are backfilled, then the
generated recording rules are backfilled level by level. The error ratios and the budget
Prometheus records must equal the generator's own counts over the same windows: this
catches a wrong expression that `promtool check rules` and golden files cannot.
"""

from __future__ import annotations

import itertools
import math
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from slo_engine.rules.compile import compile_service
from slo_engine.rules.files import render
from slo_engine.spec.loader import load_services
from tests.support.prometheus import (
    BACKFILL_GROUP,
    PrometheusServer,
    backfill_levels,
    backfill_openmetrics,
    history_records,
    recording_only,
    rule_levels,
    running_prometheus,
    split_levels,
)
from tests.support.synthetic import (
    DAY,
    HOUR,
    MINUTE,
    Incident,
    Profile,
    Quiet,
    Synthetic,
    generate,
    write_openmetrics,
)

prometheus = pytest.mark.prometheus

SPEC = """\
apiVersion: slo-engine/v1
service: web
owner: team-web
slos:
  - name: availability
    objective: 99.9
    period: 7d
    alerting:
      tiers: &workbook-windows  # the 30d windows, so 1h, 6h, 1d and 3d are recorded on 7d
        - {severity: page, long_window: 1h, short_window: 5m, budget_percent: 2}
        - {severity: page, long_window: 6h, short_window: 30m, budget_percent: 5}
        - {severity: ticket, long_window: 1d, short_window: 2h, budget_percent: 15}
        - {severity: ticket, long_window: 3d, short_window: 6h, budget_percent: 43}
    sli:
      ratio:
        bad: http_requests_total{code=~"5.."}
        total: http_requests_total
  - name: availability-30d
    objective: 99.9
    period: 30d
    sli:
      ratio:
        bad: http_requests_total{code=~"5.."}
        total: http_requests_total
  - name: availability-by-instance
    objective: 99.5
    period: 7d
    alerting:
      tiers: *workbook-windows
    sli:
      ratio:
        bad: http_requests_total{code=~"5.."}
        total: http_requests_total
        group_by: [instance]
"""
OBJECTIVES = {"availability": 0.999, "availability-30d": 0.999,
              "availability-by-instance": 0.995}
PERIODS = {"availability": 7 * DAY, "availability-30d": 30 * DAY,
           "availability-by-instance": 7 * DAY}
# A window ratio is sum_over_time of 5m rates: each edge of the window is smeared over the
# 4 minutes a 5m rate spans, so where the error ratio at an edge differs from the window's
# mean the result drifts from the exact window's ratio by ~(2.5 min / window) × contrast.
# The 6h window here holds an incident between quiet edges (up to -1.6 %), so it is checked
# for NaN only; 1h is checked inside the incident, 1d and 3d after it (< 0.2 % here).
WINDOWS = {"1d": DAY, "3d": 3 * DAY}
TOLERANCE = 0.01  # relative
INSTANCES = ("api-1", "api-2", "api-3", "api-4")  # api-4 never fails: no 5xx series at all


@dataclass(frozen=True)
class Backfilled:
    server: PrometheusServer
    data: Synthetic
    rules_file: Path
    at: float  # query time of the period and the long windows: 30 min after an incident
    incident_at: float  # query time of the 1h window: the hour lies inside the incident
    quiet: Quiet


def scenario(end: int) -> tuple[Profile, Quiet]:
    """Traffic of the 8 days before `end`: incidents at a peak, at a trough on one instance
    and from 3 h to 1 h before the end; a quiet hour 5 h before the end; api-1 restarts 2 days
    before the end; api-4 never fails and has no 5xx series."""
    start = end - 8 * DAY
    day2_peak = start - start % DAY + 2 * DAY + 14 * HOUR
    day4_trough = start - start % DAY + 4 * DAY + 3 * HOUR
    quiet = Quiet(end - 5 * HOUR, 60)
    profile = Profile(
        peak_per_minute=20_000,
        base_error_ratio=0.0002,
        incidents=(Incident(day2_peak, 90, 0.02),
                   Incident(day4_trough, 120, 0.05, ("api-2",)),
                   Incident(end - 3 * HOUR, 120, 0.01)),
        quiet=(quiet,),
        reset=("api-1", end - 2 * DAY),
        error_free=("api-4",),
    )
    return profile, quiet


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory: pytest.TempPathFactory, promtool: str,
               prometheus_binary: str) -> Iterator[Backfilled]:
    work = tmp_path_factory.mktemp("differential")
    (work / "slos").mkdir()
    (work / "slos" / "web.yaml").write_text(SPEC, encoding="utf-8")
    [service] = load_services([work / "slos"])
    rules_file = work / "web.yml"
    rules_file.write_text(render(compile_service(service)), encoding="utf-8")

    # Whole hours, ending 4 h before now: the last 3 h belong to the head block.
    end = int(time.time()) // HOUR * HOUR - 4 * HOUR
    start = end - 8 * DAY
    profile, quiet = scenario(end)
    data = generate(start=start, end=end, profile=profile, seed=20261129, labels={"job": "api"},
                    instances=INSTANCES, shares=(0.4, 0.3, 0.2, 0.1))
    write_openmetrics(work / "counters.om", [data])

    backfill_openmetrics(promtool, work / "counters.om", work / "prometheus" / "data")
    with running_prometheus(prometheus_binary, work / "prometheus") as server:
        levels = split_levels(rules_file.read_text(encoding="utf-8"))
        backfill_levels(server, promtool, levels, start, end, work / "backfill")
        yield Backfilled(server, data, rules_file, end - 30 * MINUTE, end - 80 * MINUTE, quiet)


def sel(metric: str, slo: str, **labels: str) -> str:
    matchers = ", ".join([f'slo="{slo}"', 'service="web"',
                          *(f'{k}="{v}"' for k, v in labels.items())])
    return f"{metric}{{{matchers}}}"


def recorded(b: Backfilled, metric: str, slo: str, at: float | None = None,
             **labels: str) -> tuple[float, float]:
    """(value, sample time) of a recorded series at `at` (default: the query time)."""
    selector, at = sel(metric, slo, **labels), b.at if at is None else at
    return (b.server.query_value(selector, at),
            b.server.query_value(f"timestamp({selector})", at))


def assert_close(got: float, want: float, what: str) -> None:
    assert math.isfinite(got), f"{what}: got {got}, want {want}"
    assert abs(got - want) <= TOLERANCE * abs(want), (
        f"{what}: got {got:.6g}, want {want:.6g} ({(got - want) / want:+.2%})")


@prometheus
def test_generated_rules_pass_promtool_check(backfilled: Backfilled, promtool: str) -> None:
    result = subprocess.run([promtool, "check", "rules", str(backfilled.rules_file)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@prometheus
def test_rules_split_into_the_four_dependency_levels(backfilled: Backfilled) -> None:
    levels = rule_levels(yaml.safe_load(backfilled.rules_file.read_text(encoding="utf-8")))
    assert levels["slo:total_events:rate5m"] == 1
    assert levels["slo:bad_events:rate5m"] == 2
    assert {levels[n] for n in levels if n.startswith("slo:error_ratio:")} == {3}
    assert levels["slo:error_budget_remaining:ratio"] == 4


@prometheus
@pytest.mark.parametrize("slo", ["availability", "availability-30d"])
def test_period_ratio_and_budget_match_ground_truth(backfilled: Backfilled, slo: str) -> None:
    ratio, stamp = recorded(backfilled, "slo:error_ratio:period", slo)
    # The 30d SLO reads all 8 days there are: its truth is the sum over the available data.
    want = backfilled.data.error_ratio(stamp - PERIODS[slo], stamp)
    assert_close(ratio, want, f"{slo} period error ratio")
    budget = 1 - OBJECTIVES[slo]
    remaining, _ = recorded(backfilled, "slo:error_budget_remaining:ratio", slo)
    assert_close(remaining, 1 - want / budget, f"{slo} error budget remaining")


@prometheus
@pytest.mark.parametrize("window", sorted(WINDOWS))
def test_window_ratios_match_ground_truth(backfilled: Backfilled, window: str) -> None:
    ratio, stamp = recorded(backfilled, f"slo:error_ratio:rate{window}", "availability")
    want = backfilled.data.error_ratio(stamp - WINDOWS[window], stamp)
    assert_close(ratio, want, f"error ratio over {window}")


@prometheus
def test_1h_window_ratio_inside_an_incident(backfilled: Backfilled) -> None:
    ratio, stamp = recorded(backfilled, "slo:error_ratio:rate1h", "availability",
                            backfilled.incident_at)
    want = backfilled.data.error_ratio(stamp - HOUR, stamp)
    assert want > 0.008, "the hour should lie inside the 1 % incident (api-4 excepted)"
    assert_close(ratio, want, "error ratio over 1h")


@prometheus
def test_grouped_slo_matches_each_instance(backfilled: Backfilled) -> None:
    slo = "availability-by-instance"
    for instance in INSTANCES[:-1]:
        for metric, seconds, at in (
                ("slo:error_ratio:period", PERIODS[slo], backfilled.at),
                ("slo:error_ratio:rate1d", DAY, backfilled.at),
                ("slo:error_ratio:rate1h", HOUR, backfilled.incident_at)):
            got, stamp = recorded(backfilled, metric, slo, at, instance=instance)
            want = backfilled.data.error_ratio(stamp - seconds, stamp, instance)
            assert_close(got, want, f"{metric} of {instance}")
        remaining, stamp = recorded(backfilled, "slo:error_budget_remaining:ratio", slo,
                                    instance=instance)
        want = backfilled.data.error_ratio(stamp - PERIODS[slo], stamp, instance)
        assert_close(remaining, 1 - want / (1 - OBJECTIVES[slo]), f"budget of {instance}")


@prometheus
def test_quiet_hour_makes_nothing_nan(backfilled: Backfilled) -> None:
    quiet, server = backfilled.quiet, backfilled.server
    middle = quiet.start + quiet.minutes * MINUTE / 2
    # The hour really is quiet: no events, so the 5m ratio is 0/0 there and only there.
    assert server.query_value(sel("slo:total_events:rate5m", "availability"), middle) == 0
    assert math.isnan(server.query_value(sel("slo:error_ratio:rate5m", "availability"), middle))
    for metric in ("slo:error_ratio:period", "slo:error_budget_remaining:ratio",
                   "slo:error_ratio:rate6h", "slo:error_ratio:rate1d", "slo:error_ratio:rate3d"):
        for slo in OBJECTIVES:
            series = server.query_range(sel(metric, slo), quiet.start - HOUR, backfilled.at, 60)
            assert series, f"{metric} of {slo}: no data around the quiet hour"
            for one in series:
                nan = [t for t, v in one.points if not math.isfinite(v)]
                assert not nan, f"{metric} {one.labels}: NaN at {nan[:3]}..."


@prometheus
def test_scenario_has_its_counter_reset(backfilled: Backfilled) -> None:
    resets = backfilled.server.query_value(
        'sum(resets(http_requests_total{instance="api-1", code="200"}[8d]))', backfilled.at)
    assert resets == 1


@prometheus
def test_instance_without_bad_series_has_zero_errors_not_no_data(backfilled: Backfilled) -> None:
    """The bad-events rule falls back to 0 × total when the bad selector matches nothing,
    so an instance that never failed has a ratio of 0 and a full budget, not an absent one."""
    slo, at = "availability-by-instance", backfilled.at
    for metric, want in (("slo:bad_events:rate5m", 0.0), ("slo:error_ratio:rate5m", 0.0),
                         ("slo:error_ratio:rate1d", 0.0), ("slo:error_ratio:period", 0.0),
                         ("slo:error_budget_remaining:ratio", 1.0)):
        got = backfilled.server.query_value(sel(metric, slo, instance="api-4"), at)
        assert got == want, f"{metric} of api-4: got {got}, want {want}"


# --- the harness itself, without a server -------------------------------------------------

CHAIN = """
groups:
- name: a
  rules:
  - record: job:total:rate5m
    expr: sum(rate(requests_total[5m]))
  - record: job:bad:rate5m
    expr: sum(rate(errors_total[5m])) or 0 * job:total:rate5m
  - record: job:ratio:rate1h
    expr: >-
      sum_over_time(job:bad:rate5m{x="job:total:rate5m"}[1h])
      / sum_over_time(job:total:rate5m[1h])
  - alert: Burn
    expr: job:ratio:rate1h > 0.01
"""


def test_split_levels_orders_rules_by_what_they_read() -> None:
    document = yaml.safe_load(CHAIN)
    # A name inside a label value is not a dependency.
    assert rule_levels(document) == {"job:total:rate5m": 1, "job:bad:rate5m": 2,
                                     "job:ratio:rate1h": 3}
    levels = [yaml.safe_load(text) for text in split_levels(CHAIN)]
    assert [[r["record"] for r in doc["groups"][0]["rules"]] for doc in levels] == [
        ["job:total:rate5m"], ["job:bad:rate5m"], ["job:ratio:rate1h"]]
    assert {doc["groups"][0]["name"] for doc in levels} == {BACKFILL_GROUP}
    assert all("alert" not in r for g in recording_only(document)["groups"] for r in g["rules"])


def test_history_records_are_the_range_reads_and_what_they_read() -> None:
    assert history_records(yaml.safe_load(CHAIN)) == {"job:total:rate5m", "job:bad:rate5m"}


def test_synthetic_counters_encode_the_ground_truth() -> None:
    end = 1_800_000_000 // HOUR * HOUR
    start = end - DAY
    profile = Profile(incidents=(Incident(start + HOUR, 60, 0.1, ("api-2",)),),
                      quiet=(Quiet(start + 5 * HOUR, 60),), reset=("api-1", start + 10 * HOUR),
                      error_free=("api-3",))
    data = generate(start=start, end=end, profile=profile, seed=7)
    again = generate(start=start, end=end, profile=profile, seed=7)
    assert all((a.values == b.values).all()
               for a, b in zip(data.series, again.series, strict=True))
    good = {i: [0] * data.minutes for i in data.instances}
    bad = {i: [0] * data.minutes for i in data.instances}
    for series in data.series:
        labels = dict(series.labels)
        values = series.values.tolist()
        # What rate() sees: a drop is a restart from zero.
        steps = [b - a if b >= a else b for a, b in itertools.pairwise(values)]
        into = good if labels["code"] == "200" else bad
        into[labels["instance"]] = [x + y for x, y in zip(into[labels["instance"]], steps,
                                                           strict=True)]
    for row, instance in enumerate(data.instances):
        assert good[instance] == data.good[row].tolist()
        assert bad[instance] == data.bad[row].tolist()
    assert {dict(s.labels)["code"] for s in data.series
            if dict(s.labels)["instance"] == "api-3"} == {"200"}
    assert data.counts(start + 5 * HOUR, start + 6 * HOUR) == (0, 0)
    assert abs(data.error_ratio(start + HOUR, start + 2 * HOUR, "api-2") - 0.1) < 0.001
