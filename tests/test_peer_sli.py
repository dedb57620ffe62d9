"""The peers' SLI kinds: Pyrra's bool gauge and Sloth's raw error ratio. Recorded as 5m
event rates like the others, so windows, budgets and the ledger reuse them; the raw
fallback reads the same expressions over the step; the page says what the SLI counts."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from slo_engine.paging.page import render_page, sample_context
from slo_engine.prometheus.source import fallback_queries
from slo_engine.rules.compile import compile_slo
from slo_engine.rules.promtool_tests import (
    NotDerivable,
    Replay,
    Traffic,
    _ratio_selectors,
    gauge_notation,
    input_series,
)
from slo_engine.spec import conventions as names
from slo_engine.spec.loader import load_services
from slo_engine.spec.model import SLO

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def slos() -> tuple[SLO, SLO]:
    [service] = load_services([ROOT / "tests/spec_cases/good/peer-sli-kinds.yaml"])
    gauge, ratio = service.slos
    return gauge, ratio


def _event_rules(slo: SLO) -> dict[str, str]:
    fast, _ = compile_slo(slo)
    return {r.record: r.expr for r in fast.rules if getattr(r, "record", None) in (
        names.TOTAL_EVENTS_RATE, names.BAD_EVENTS_RATE)}  # type: ignore[misc]


def test_a_bool_gauge_records_samples_and_zeros_per_second(slos: tuple[SLO, SLO]) -> None:
    rules = _event_rules(slos[0])
    metric = 'probe_success{job="blackbox", instance=~"https://.*"}'
    assert rules[names.TOTAL_EVENTS_RATE] == \
        f"sum by (instance) (count_over_time({metric}[5m])) / 300"
    assert rules[names.BAD_EVENTS_RATE] == (
        f"sum by (instance) (clamp_min(count_over_time({metric}[5m]) - "
        f"sum_over_time({metric}[5m]), 0)) / 300")


def test_an_error_ratio_records_one_event_a_second_and_the_ratio_as_bad(
        slos: tuple[SLO, SLO]) -> None:
    rules = _event_rules(slos[1])
    ratio = ('(sum(rate(http_requests_total{code=~"5.."}[5m])) / '
             'sum(rate(http_requests_total[5m]))) >= 0')
    assert rules[names.TOTAL_EVENTS_RATE] == f"({ratio}) * 0 + 1"
    assert rules[names.BAD_EVENTS_RATE] == f"clamp_max({ratio}, 1)"


def test_the_raw_fallback_reads_the_rules_expressions_over_the_step(
        slos: tuple[SLO, SLO]) -> None:
    gauge, ratio = (fallback_queries(slo, 3600) for slo in slos)
    assert gauge["total"].endswith("[3600s])) / 3600") and "sum by (instance)" in gauge["total"]
    assert gauge["bad"].startswith("sum by (instance) (clamp_min(count_over_time(")
    assert "[3600s]" in ratio["bad"] and ratio["total"].endswith(") * 0 + 1")
    assert "{{window}}" not in ratio["bad"]


def test_a_gauge_replay_reads_each_sample_as_an_event(slos: tuple[SLO, SLO]) -> None:
    traffic = Traffic(np.full(20, 100, dtype=np.int64),
                      np.array([0] * 10 + [50] * 10, dtype=np.int64))
    [series] = input_series(slos[0], traffic)
    assert series.role == "gauge" and gauge_notation(series.values) == "_ 1.0+0x9 0.5+0x9"
    replay = Replay.of(slos[0], [series], traffic.minutes)
    assert replay.total_rate[10] == pytest.approx(6 / 300)  # a 5m range holds 6 samples
    assert replay.bad_rate[20] == pytest.approx(3 / 300)  # 6 samples of 0.5
    assert replay.error_ratio(300, 20) == pytest.approx(0.5)


def test_an_error_ratio_replay_weighs_every_minute_the_same(slos: tuple[SLO, SLO]) -> None:
    busy_then_quiet = Traffic(np.array([1000] * 10 + [10] * 10, dtype=np.int64),
                              np.array([0] * 10 + [5] * 10, dtype=np.int64))
    series = input_series(slos[1], busy_then_quiet)
    replay = Replay.of(slos[1], series, busy_then_quiet.minutes)
    assert set(replay.total_rate[1:]) == {1.0}
    assert replay.error_ratio(300, 20) == pytest.approx(0.5)


def test_only_the_common_ratio_shape_gets_generated_inputs() -> None:
    bad, total = _ratio_selectors('sum(rate(a_total{path=~"/api/.*"}[{{window}}])) / '
                                  "sum(rate(b_total[{{window}}]))")
    assert (bad.metric, total.metric) == ("a_total", "b_total")
    for query in ("1 - sum(rate(a[{{window}}])) / sum(rate(b[{{window}}]))",
                  "sum(rate(a[{{window}}]))", "sum(rate(a[{{window}}])) / sum(rate(b[{{window}}]))"
                  " / 2"):
        with pytest.raises(NotDerivable):
            _ratio_selectors(query)


def test_the_page_says_what_the_sli_counts(slos: tuple[SLO, SLO]) -> None:
    at = datetime(2026, 5, 12, 14, 20, tzinfo=UTC)
    base = sample_context(at)
    texts = []
    for slo in slos:
        message = render_page(dataclasses.replace(base, slo=slo))
        texts.append(str(message))
    assert "`probe_success` samples, each 0 a failed one" in texts[0]
    assert "a quiet minute weighs as much as a busy one" in texts[1]
    assert "samples" not in str(render_page(base))
