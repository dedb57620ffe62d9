"""The one firing rule: its scalar and vectorised forms agree, and Prometheus agrees with it.

The promtool property compiles a service of three SLOs (the Workbook's 99.9% with the default
tiers; 99% with short custom tiers and a `min_events` guard; 95%, whose budget 1 − 0.95 is not
the 0.05 the rules print), drives them with random per-minute traffic that often lands
exactly on a threshold (or one event either side of it), on `min_events`, or has no traffic at
all, and asks the real promtool to confirm, minute by minute, the alerts `Replay` predicts
with `burn_rate.fires`. The scenarios of one hypothesis example share one promtool run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from slo_engine.rules.compile import compile_service
from slo_engine.rules.files import render
from slo_engine.rules.promtool_tests import (
    Replay,
    Traffic,
    _burn_alerts,
    expanding,
    input_series,
)
from slo_engine.spec import conventions as names
from slo_engine.spec.burn_rate import (
    burning,
    enough_events,
    fires,
    fires_array,
    most_sensitive_tier,
    rule_budget,
    rule_threshold,
    tier_of,
)
from slo_engine.spec.durations import format_duration
from slo_engine.spec.loader import load_services
from slo_engine.spec.model import SLO, Service
from tests.support import promtool as promtool_run

SPEC = """\
apiVersion: slo-engine/v1
service: burnprop
owner: burnprop-team
slos:
  - name: workbook
    objective: 99.9
    sli:
      ratio:
        bad: a_requests_total{code="500"}
        total: a_requests_total
  - name: guarded
    objective: 99
    period: 7d
    sli:
      ratio:
        bad: b_errors_total
        total: b_requests_total
    alerting:
      min_events: 30
      tiers:
        - {severity: page, long_window: 30m, short_window: 5m, budget_percent: 5}
        - {severity: ticket, long_window: 1h, short_window: 10m, budget_percent: 10}
  - name: coarse
    objective: 95
    period: 1d
    sli:
      ratio:
        bad: c_errors_total
        total: c_requests_total
    alerting:
      tiers:
        - {severity: page, long_window: 1h, short_window: 5m, budget_percent: 25}
        - {severity: ticket, long_window: 2h, short_window: 15m, budget_percent: 40}
"""


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Service:
    path = tmp_path_factory.mktemp("spec") / "burnprop.yaml"
    path.write_text(SPEC)
    return load_services([path])[0]


# --- scalar == vectorised ---------------------------------------------------------------------


@st.composite
def _around(draw: st.DrawFn, edge: float) -> float:
    """A value at, a hair either side of, or anywhere around `edge`, or NaN."""
    return draw(st.one_of(
        st.sampled_from([edge, math.nextafter(edge, math.inf), math.nextafter(edge, -math.inf),
                         math.nan, math.inf, 0.0]),
        st.floats(min_value=0, max_value=4 * edge + 1)))


@st.composite
def _arrays(draw: st.DrawFn) -> tuple[float, int, list[tuple[float, float, float]]]:
    threshold = draw(st.floats(min_value=0.01, max_value=1000))
    min_events = draw(st.sampled_from([0, 1, 30, 500]))
    rows = draw(st.lists(st.tuples(_around(threshold), _around(threshold),
                                   _around(float(min_events))), max_size=40))
    return threshold, min_events, rows


@settings(max_examples=300, deadline=None)
@given(_arrays())
def test_scalar_and_vectorised_rules_agree(
        case: tuple[float, int, list[tuple[float, float, float]]]) -> None:
    threshold, min_events, rows = case
    long, short, events = (np.array([r[i] for r in rows], dtype=np.float64) for i in range(3))
    assert fires_array(long, short, threshold, events, min_events).tolist() == \
        [fires(a, b, threshold, c, min_events) for a, b, c in rows]
    assert fires_array(long, short, threshold).tolist() == \
        [fires(a, b, threshold) for a, b, _ in rows]


def test_the_rule_compares_as_promql_does() -> None:
    assert not burning(14.4, 14.4) and burning(math.nextafter(14.4, math.inf), 14.4)
    assert not burning(math.nan, 1) and not burning(None, 1)
    assert enough_events(30, 30) and not enough_events(math.nan, 30)
    assert not enough_events(None, 30) and enough_events(None, 0)
    assert fires(2, 2, 1) and not fires(2, 0.5, 1) and not fires(2, 2, 1, 29.9, 30)


def test_thresholds_and_budget_are_the_printed_ones(service: Service) -> None:
    workbook, _, coarse = service.slos
    assert coarse.error_budget != 0.05 and rule_budget(coarse.error_budget) == 0.05
    assert rule_budget(workbook.error_budget) == 0.001
    assert [rule_threshold(t) for t in workbook.tiers] == [14.4, 6, 3, 1]


def test_tier_of_names_a_tier_by_its_labels(service: Service) -> None:
    tiers = service.slos[0].tiers
    found = tier_of(tiers, "page", "6h", "30m")
    assert found is not None and found.burn_rate == 6
    assert tier_of(tiers, "page", "2h", "10m") is None
    sensitive = most_sensitive_tier(tiers, "ticket")
    assert sensitive is not None and sensitive.long_window == "3d"


# --- Python and Prometheus agree --------------------------------------------------------------


@st.composite
def _traffic(draw: st.DrawFn, slo: SLO) -> Traffic:
    """Runs of constant traffic: random, exactly at a tier's threshold or one bad event
    either side, or none; totals chosen so a threshold ratio is often a whole count."""
    budget = rule_budget(slo.error_budget)
    ratios = [rule_threshold(t) * budget for t in slo.tiers]
    totals: list[int] = []
    bads: list[int] = []
    for _ in range(draw(st.integers(1, 5))):
        length = draw(st.integers(1, 45))
        total = draw(st.sampled_from([0, 1, 3, 7, 1000, 7919, 10_000, 100_000]))
        mode = draw(st.sampled_from(["threshold", "threshold", "random", "clean"]))
        if mode == "threshold":
            bad = round(total * draw(st.sampled_from(ratios))) + draw(st.integers(-1, 1))
        elif mode == "random":
            bad = draw(st.integers(0, total))
        else:
            bad = 0
        totals += [total] * length
        bads += [min(max(bad, 0), total)] * length
    return Traffic(np.array(totals, dtype=np.int64), np.array(bads, dtype=np.int64))


@st.composite
def _scenario(draw: st.DrawFn, slos: tuple[SLO, ...]) -> tuple[int, Traffic]:
    index = draw(st.integers(0, len(slos) - 1))
    return index, draw(_traffic(slos[index]))


def _test_group(slo: SLO, traffic: Traffic, name: str) -> dict[str, Any]:
    """Every minute's expected burn alerts, from the replay (which checks its vectorised
    matrix against the scalar rule on the way)."""
    series = input_series(slo, traffic)
    replay = Replay.of(slo, series, traffic.minutes)
    matrix = replay.firing_matrix()
    checks = []
    for t in range(traffic.minutes + 1):
        firing = tuple((i, f"{replay.burn(tier, tier.long_seconds, t):.1f}")
                       for i, tier in enumerate(slo.tiers) if replay.firing(tier, t))
        assert tuple(i for i, _ in firing) == tuple(np.flatnonzero(matrix[:, t])), (name, t)
        checks.append({"eval_time": format_duration(t * 60) if t else "0m",
                       "alertname": names.BURN_ALERT,
                       "exp_alerts": _burn_alerts(slo, series, firing)})
    return {"name": name, "interval": "1m",
            "input_series": [{"series": s.promql(), "values": expanding(s.values)}
                             for s in series],
            "alert_rule_test": checks}


def test_the_replay_adds_as_prometheus_does(service: Service) -> None:
    """A case the property found: its 15m window lands within one unit in the last place of
    the threshold 4.8, on either side, minute after minute (promtool agrees at every minute).
    The replay has each last digit because it multiplies the increase by 1/300 and adds with
    compensation, as Prometheus does."""
    coarse = service.slos[2]
    traffic = Traffic(np.repeat([1, 3, 1000, 0, 7], [26, 39, 36, 21, 16]),
                      np.repeat([1, 2, 240, 0], [26, 39, 36, 37]))
    replay = Replay.of(coarse, input_series(coarse, traffic), traffic.minutes)
    ticket = coarse.tiers[1]
    assert replay.burn(ticket, ticket.short_seconds, 85) == 4.799999999999999
    assert replay.burn(ticket, ticket.short_seconds, 110) == 4.8
    assert replay.burn(ticket, ticket.short_seconds, 115) == 4.800000000000001
    assert replay.burn(ticket, ticket.long_seconds, 115) == 4.838557950363833
    assert not replay.firing(ticket, 85) and not replay.firing(ticket, 110)
    assert replay.firing(ticket, 115)


@pytest.mark.prometheus
def test_prometheus_fires_exactly_when_the_python_rule_does(
        promtool: str, service: Service, tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(render(compile_service(service)))
    order = [name for slo in service.slos for name in (
        names.alert_group_name(slo.service, slo.name),
        names.slow_group_name(slo.service, slo.name))]
    runs = []

    # No shrinking: each step would run promtool again; promtool's diff names the group.
    @settings(max_examples=4, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.lists(_scenario(service.slos), min_size=12, max_size=12))
    def agree(scenarios: list[tuple[int, Traffic]]) -> None:
        groups = [_test_group(service.slos[index], traffic, f"{i}: {service.slos[index].name}")
                  for i, (index, traffic) in enumerate(scenarios)]
        path = tmp_path / f"burn-{len(runs)}.test.yml"
        path.write_text(json.dumps({"rule_files": ["rules.yml"], "evaluation_interval": "1m",
                                    "group_eval_order": order, "tests": groups}))
        runs.append(path)
        failures = promtool_run.test_rules(promtool, [path])
        assert failures == [], "\n".join(failures)[:4000]

    agree()
    assert runs
