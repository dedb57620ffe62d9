"""Backfilling the generated recording rules level by level with promtool.

The plan is tested on the compiled slo_definitions. A real run on three days of synthetic
counters checks three things. Without a hook it stops after level 1 and says how to go
on. It refuses to run level 2 before Prometheus serves level 1. With a hook that moves
the blocks in and restarts Prometheus, it finishes, and the remaining error budget at a
past time matches the generator's own counts.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from slo_engine.rules.backfill import (
    BACKFILL_GROUP,
    BackfillError,
    BackfillResult,
    backfill,
    blocks_in,
    level_dir,
    level_rules_file,
    level_rules_text,
    plan_levels,
    reads,
    record_levels,
    recording_rules,
    run_level,
)
from slo_engine.rules.compile import AlertingRule, RecordingRule, RuleSet, compile_service
from slo_engine.rules.files import Format, render
from slo_engine.spec.loader import load_services
from tests.support.paths import ROOT
from tests.support.prometheus import (
    PrometheusServer,
    backfill_openmetrics,
    move_blocks,
    running_prometheus,
)
from tests.support.synthetic import DAY, HOUR, MINUTE, Incident, Profile, Synthetic, generate
from tests.support.synthetic import write_openmetrics as write_counters


def _definitions() -> list[RuleSet]:
    return [compile_service(s) for s in load_services([ROOT / "slo_definitions"])]


EXPECTED_LEVEL = {
    "slo:total_events:rate5m": 1,  # the only raw read
    "slo:objective:ratio": 1,  # vector(...)
    "slo:period:seconds": 1,
    "slo:bad_events:rate5m": 2,  # falls back to 0 × the recorded total
    "slo:error_ratio:period": 3,
    "slo:error_budget_remaining:ratio": 4,
}


def test_plan_levels_of_the_compiled_definitions() -> None:
    rule_sets = _definitions()
    plan = plan_levels(rule_sets)
    assert len(plan) == 4
    for number, rules in enumerate(plan, 1):
        for rule in rules:
            want = 3 if rule.record.startswith("slo:error_ratio:rate") else \
                EXPECTED_LEVEL[rule.record]
            assert number == want, f"{rule.record} planned at level {number}, not {want}"
    recording = [r for rs in rule_sets for g in rs.groups for r in g.rules
                 if isinstance(r, RecordingRule)]
    planned = [r for rules in plan for r in rules]
    assert sorted(planned, key=repr) == sorted(recording, key=repr)
    assert not any(isinstance(r, AlertingRule) for r in planned)
    levels = record_levels(rule_sets)
    assert {name: levels[name] for name in EXPECTED_LEVEL} == EXPECTED_LEVEL
    assert {levels[n] for n in levels if n.startswith("slo:error_ratio:rate")} == {3}


@pytest.mark.parametrize("fmt", ["prometheus", "prometheus-operator"])
def test_a_rendered_rules_file_plans_like_its_rule_set(fmt: Format) -> None:
    for rule_set in _definitions():
        text = render(rule_set, fmt)
        assert plan_levels(text) == plan_levels(rule_set)
        assert plan_levels(yaml.safe_load(text)) == plan_levels(rule_set)


CHAIN = """\
groups:
  - name: a
    rules:
      - record: job:ratio:rate1h
        expr: >-
          sum_over_time(job:bad:rate5m{x="job:ratio:rate1d"}[1h])
          / sum_over_time({__name__="job:total:rate5m"}[1h])
      - record: job:bad:rate5m
        expr: sum(rate(errors_total[5m])) or 0 * job:total:rate5m
      - alert: Burn
        expr: job:ratio:rate1h > 0.01
  - name: b
    rules:
      - record: job:total:rate5m
        expr: sum(rate(requests_total[5m]))
      - record: job:ratio:rate1d
        expr: sum_over_time(job:bad:rate5m[1d]) / sum_over_time(job:total:rate5m[1d])
"""


def test_levels_follow_what_each_expression_reads() -> None:
    # A record named in a label value is no dependency; a __name__ matcher is one.
    assert reads('a{x="b"} + c', {"a", "b", "c"}) == {"a", "c"}
    assert reads('{__name__="b"}', {"b"}) == {"b"}
    plan = [[r.record for r in level] for level in plan_levels(CHAIN)]
    assert plan == [["job:total:rate5m"], ["job:bad:rate5m"],
                    ["job:ratio:rate1h", "job:ratio:rate1d"]]
    level = yaml.safe_load(level_rules_text(plan_levels(CHAIN)[2]))
    assert [g["name"] for g in level["groups"]] == [BACKFILL_GROUP]
    assert [r["record"] for r in level["groups"][0]["rules"]] == plan[2]
    assert "interval" not in level["groups"][0]


def test_a_cycle_cannot_be_backfilled() -> None:
    rules = [RecordingRule("a", "b + 1", ()), RecordingRule("b", "rate(x[5m]) + a", ())]
    with pytest.raises(BackfillError, match="cycle"):
        plan_levels(rules)


def test_unreadable_rules_are_backfill_errors() -> None:
    with pytest.raises(BackfillError, match="cannot read the rules"):
        recording_rules("groups: [")
    with pytest.raises(BackfillError, match="expected a mapping with 'groups:'"):
        recording_rules("- just a list")


@pytest.mark.parametrize(("kwargs", "message"), [
    pytest.param({"start": 2000, "end": 1000}, "must be after start", id="end before start"),
    pytest.param({"start": datetime(2026, 1, 1)}, "has no timezone", id="naive time"),
    pytest.param({"first_level": 5}, "these rules have levels 1 to 4", id="no such level"),
    pytest.param({"promtool": "/nonexistent/promtool"}, "promtool not found", id="no promtool"),
    pytest.param({"source": "groups: []"}, "no recording rules", id="nothing to backfill"),
    pytest.param({"eval_interval": 0}, "must be 60 seconds", id="zero interval"),
    pytest.param({"eval_interval": 30}, "one 5m rate sample a minute", id="not a minute"),
])
def test_backfill_checks_its_arguments_first(tmp_path: Path, kwargs: dict[str, Any],
                                             message: str) -> None:
    arguments: dict[str, Any] = {
        "source": _definitions(), "prometheus_url": "http://127.0.0.1:1", "start": 1000,
        "end": 2000, "out_dir": tmp_path, **kwargs}
    with pytest.raises(BackfillError, match=message):
        backfill(**arguments)
    assert not any(tmp_path.iterdir()), "nothing is written before the arguments are checked"


# --- against a real Prometheus ---------------------------------------------------------

SPEC = """\
apiVersion: slo-engine/v1
service: web
owner: team-web
slos:
  - name: availability
    objective: 99.9
    period: 7d
    sli:
      ratio:
        bad: http_requests_total{code=~"5.."}
        total: http_requests_total
  - name: availability-by-instance
    objective: 99.5
    period: 7d
    sli:
      ratio:
        bad: http_requests_total{code=~"5.."}
        total: http_requests_total
        group_by: [instance]
"""


@dataclass
class History:
    server: PrometheusServer
    data: Synthetic
    rules: RuleSet
    work: Path
    start: int
    end: int


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory, promtool: str,
            prometheus_binary: str) -> Iterator[History]:
    """Three days of counters in a running Prometheus, no recorded series yet."""
    work = tmp_path_factory.mktemp("backfill")
    (work / "slos").mkdir()
    (work / "slos" / "web.yaml").write_text(SPEC, encoding="utf-8")
    [service] = load_services([work / "slos"])
    end = int(time.time()) // HOUR * HOUR - 4 * HOUR  # the last 3 h are the head block's
    start = end - 3 * DAY
    profile = Profile(base_error_ratio=0.0003,
                      incidents=(Incident(start + DAY + 14 * HOUR, 60, 0.01),
                                 Incident(end - 6 * HOUR, 30, 0.05, ("api-2",))))
    data = generate(start=start, end=end, profile=profile, seed=20261129,
                    labels={"job": "api"}, instances=("api-1", "api-2"))
    write_counters(work / "counters.om", [data])
    backfill_openmetrics(promtool, work / "counters.om", work / "prometheus" / "data")
    with running_prometheus(prometheus_binary, work / "prometheus") as server:
        yield History(server, data, compile_service(service), work, start, end)


@pytest.mark.prometheus
def test_promtool_failure_names_the_command_and_its_error(tmp_path: Path, promtool: str) -> None:
    rules_file = level_rules_file(tmp_path, 1)
    rules_file.parent.mkdir(parents=True)
    rules_file.write_text(level_rules_text(plan_levels(_definitions())[0]), encoding="utf-8")
    with pytest.raises(BackfillError) as caught:
        run_level(rules_file, prometheus_url="http://127.0.0.1:1", start=1_700_000_000,
                  end=1_700_003_600, out_dir=tmp_path / "out", promtool=promtool)
    message = str(caught.value)
    assert "tsdb create-blocks-from rules --url=http://127.0.0.1:1" in message
    assert "connection refused" in message
    assert "level=info" not in message


@pytest.mark.prometheus
def test_backfill_level_by_level_gives_the_true_budget(history: History, promtool: str) -> None:
    out = history.work / "out"

    def run(**kwargs: Any) -> BackfillResult:
        return backfill(history.rules, history.server.url,
                        datetime.fromtimestamp(history.start, UTC), history.end, out,
                        promtool=promtool, **kwargs)

    # No hook: level 1 only, then the way on.
    first = run()
    assert (first.levels, first.completed, first.next_level, first.done) == (4, (1,), 2, False)
    assert first.blocks[1] and blocks_in(level_dir(out, 1)) == list(first.blocks[1])
    assert f"mv {level_dir(out, 1)}/* <Prometheus data directory>/" in first.next_steps
    assert "--level 2" in first.next_steps
    result = subprocess.run([promtool, "check", "rules", str(level_rules_file(out, 1))],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr

    # Level 2 reads what level 1 recorded, which Prometheus does not serve yet.
    with pytest.raises(BackfillError, match="Load the blocks of level 1 first"):
        run(first_level=2, wait_seconds=0)
    assert not blocks_in(level_dir(out, 2))

    # Load level 1 by hand, then let a hook load the rest.
    move_blocks(level_dir(out, 1), history.server.data_dir)
    history.server.restart()
    loaded: list[Path] = []
    progress: list[tuple[int, int, str]] = []

    def load_blocks(directory: Path) -> None:
        loaded.append(directory)
        move_blocks(directory, history.server.data_dir)
        history.server.restart()

    rest = run(first_level=2, load_blocks=load_blocks,
               progress=lambda *event: progress.append(event))
    assert (rest.completed, rest.next_level, rest.next_steps) == ((2, 3, 4), None, "")
    assert loaded == [level_dir(out, n) for n in (2, 3, 4)]
    assert {(level, levels) for level, levels, _ in progress} == {(2, 4), (3, 4), (4, 4)}
    assert any("wrote" in message for *_, message in progress)

    # The budget at past times equals the generator's own counts.
    budget = 0.001
    for at in (history.end - 30 * MINUTE, history.end - DAY):
        selector = 'slo:error_budget_remaining:ratio{slo="availability", service="web"}'
        remaining = history.server.query_value(selector, at)
        stamp = history.server.query_value(f"timestamp({selector})", at)
        want = 1 - history.data.error_ratio(stamp - 7 * DAY, stamp) / budget
        assert math.isfinite(remaining)
        assert 0.1 < want < 0.9, "the scenario should leave part of the budget"
        assert abs(remaining - want) <= 0.01 * abs(want), (at, remaining, want)
    per_instance = history.server.query(
        'slo:error_budget_remaining:ratio{slo="availability-by-instance"}',
        history.end - 30 * MINUTE)
    assert sorted(s.labels["instance"] for s in per_instance) == ["api-1", "api-2"]
