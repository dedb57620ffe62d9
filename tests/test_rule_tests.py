"""The generated rules, proven by the real promtool, and the detection claims they make.

`slo_engine.rules.promtool_tests.Replay` predicts minute by minute what the generated rules
alert on; promtool running the generated unit tests shows Prometheus agrees with it to the
minute, so the timing claims asserted here on Replay are claims about Prometheus itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from bench import promtool_time
from slo_engine.app import generated_files
from slo_engine.rules.compile import compile_service
from slo_engine.rules.files import render
from slo_engine.rules.promtool_tests import (
    GROUP_VALUE,
    NotDerivable,
    Replay,
    Scenario,
    _regex_examples,
    expanding,
    group_value,
    input_series,
    labels_for,
    scenarios,
    slow_burn,
    small_burn,
)
from slo_engine.spec.loader import load_services
from slo_engine.spec.model import SLO
from slo_engine.spec.promql import parse_selector
from tests.support import promtool as promtool_run
from tests.support.paths import GOLDEN_CASES, ROOT

pytestmark = pytest.mark.prometheus

HANDWRITTEN = ROOT / "tests" / "promtool"


def _reference() -> SLO:
    return load_services([ROOT / "tests/golden/reference-30d/slo.yaml"])[0].slos[0]


def _scenario(slo: SLO, name: str) -> tuple[Scenario, Replay]:
    scenario = next(s for s in scenarios(slo) if s.name == name)
    assert scenario.traffic is not None
    series = input_series(slo, scenario.traffic)
    return scenario, Replay.of(slo, series, scenario.traffic.minutes)


def _first(replay: Replay, minutes: int, start: int, severity: str,
           long_window: str | None = None) -> int | None:
    matrix = replay.firing_matrix()
    for t in range(start, minutes + 1):
        for row, tier in enumerate(replay.slo.tiers):
            if tier.severity == severity and long_window in (None, tier.long_window) \
                    and matrix[row, t]:
                return t
    return None


def test_generated_rules_pass_promtool_check(promtool: str, tmp_path: Path) -> None:
    services = load_services([ROOT / "slo_definitions", *(ROOT / "tests/golden" / c / "slo.yaml"
                                                          for c in GOLDEN_CASES)])
    for service in services:
        for fmt_name, text in (("rules", render(compile_service(service))),):
            path = tmp_path / f"{service.name}.{fmt_name}.yml"
            path.write_text(text)
            result = promtool_run.run(promtool, "check", "rules", "--lint=all", "--lint-fatal",
                                      str(path))
            assert result.returncode == 0, result.stdout + result.stderr
            assert "SUCCESS" in result.stdout


def test_committed_rules_out_unit_tests_pass(promtool: str) -> None:
    files = sorted((ROOT / "rules_out" / "tests").glob("*.test.yml"))
    assert len(files) == 5
    assert promtool_run.test_rules(promtool, files) == []


def test_generated_unit_tests_pass(promtool: str, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Every golden case's generated tests, freshly generated, run together on both cores."""
    monkeypatch.chdir(ROOT)
    for case in GOLDEN_CASES:
        services = load_services([f"tests/golden/{case}/slo.yaml"])
        for name, text in generated_files(services).items():
            (tmp_path / case / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / case / name).write_text(text)
    files = sorted(tmp_path.glob("*/tests/*.test.yml"))
    slos = sum(len(s.slos) for c in GOLDEN_CASES
               for s in load_services([f"tests/golden/{c}/slo.yaml"]))
    assert len(files) == slos > len(GOLDEN_CASES)
    assert promtool_run.test_rules(promtool, files) == []


@pytest.mark.parametrize("case", ["zero-traffic", "group-by", "latency", "query", "tiers-7d",
                                  "tiers-14d", "latency-missing-bucket",
                                  "latency-missing-bucket-7d", "latency-missing-bucket-14d",
                                  "query-by-target-7d", "query-by-target-14d",
                                  "query-by-target-no-failures-7d"])
def test_handwritten_promtool_cases(case: str, promtool: str, tmp_path: Path) -> None:
    service = load_services([HANDWRITTEN / f"{case}.slo.yaml"])[0]
    (tmp_path / "rules.yml").write_text(render(compile_service(service)))
    shutil.copy(HANDWRITTEN / f"{case}.test.yml", tmp_path / "case.test.yml")
    assert promtool_run.test_rules(promtool, [tmp_path / "case.test.yml"]) == []


def test_a_failing_expectation_fails_promtool(promtool: str, tmp_path: Path) -> None:
    """Guards the harness: a wrong expected minute must make promtool fail."""
    service = load_services([HANDWRITTEN / "zero-traffic.slo.yaml"])[0]
    (tmp_path / "rules.yml").write_text(render(compile_service(service)))
    text = (HANDWRITTEN / "zero-traffic.test.yml").read_text()
    (tmp_path / "case.test.yml").write_text(text.replace("eval_time: 61m", "eval_time: 60m"))
    assert promtool_run.test_rules(promtool, [tmp_path / "case.test.yml"]) != []


# --- detection claims on 99.9% over 30 days, 1m evaluation ------------------------------


def test_a_full_outage_pages_within_three_minutes() -> None:
    slo = _reference()
    scenario, replay = _scenario(slo, "100% outage and recovery")
    assert scenario.traffic is not None
    failing = list(scenario.traffic.bad == scenario.traffic.total)
    start = failing.index(True) + 1  # the first failing minute (counters start at minute 0)
    first_page = _first(replay, scenario.traffic.minutes, 0, "page")
    assert first_page is not None
    assert start <= first_page <= start + 3


def test_page_alerts_clear_once_their_short_windows_pass() -> None:
    slo = _reference()
    scenario, replay = _scenario(slo, "100% outage and recovery")
    assert scenario.traffic is not None
    bad = scenario.traffic.bad
    recovered = max(i for i, b in enumerate(bad) if b == scenario.traffic.total[0]) + 2
    matrix = replay.firing_matrix()
    for row, tier in enumerate(slo.tiers):
        if tier.severity != "page":
            continue
        assert matrix[row, recovered - 1], f"{tier.name} should fire during the outage"
        cleared = next(t for t in range(recovered, scenario.traffic.minutes + 1)
                       if not matrix[row, t])
        # The short window sums 5m rates, the last of which still saw failures: it clears
        # within a minute of its own length, or up to the 5m rate window later.
        short = int(tier.short_seconds // 60)
        assert short - 1 <= cleared - recovered <= short + 5, tier.name


def test_a_2x_burn_never_pages_and_tickets_when_the_maths_says() -> None:
    """On three clean days first, so that every window is full when the burn starts (the
    generated test uses an hour; promtool proves the replay on that)."""
    slo = _reference()
    scenario = slow_burn(slo, clean=3 * 24 * 60)
    assert scenario is not None and scenario.traffic is not None
    replay = Replay.of(slo, input_series(slo, scenario.traffic), scenario.traffic.minutes)
    assert _first(replay, scenario.traffic.minutes, 0, "page") is None
    start = next(i for i, b in enumerate(scenario.traffic.bad) if b) + 1
    ticket = _first(replay, scenario.traffic.minutes, 0, "ticket", "3d")
    assert ticket is not None
    predicted = 0.10 * 30 * 24 * 60 / 2  # budget fraction × period / burn rate = 36h
    # The 5m rate ramps up over its first 5 minutes, so detection lags by up to 2.5 minutes.
    assert predicted <= ticket - start <= predicted + 3
    assert _first(replay, scenario.traffic.minutes, 0, "ticket", "1d") is None


def test_a_burn_spending_under_two_percent_alerts_nobody() -> None:
    """With clean history for every tier's window (the generated test keeps only the
    pages' windows clean; promtool proves the replay on that)."""
    slo = _reference()
    scenario = small_burn(slo)
    assert scenario.traffic is not None
    replay = Replay.of(slo, input_series(slo, scenario.traffic), scenario.traffic.minutes)
    spent = sum(scenario.traffic.bad) / (slo.error_budget * slo.period_seconds / 60
                                         * scenario.traffic.total[0])
    assert 0.01 < spent < 0.02
    assert not replay.firing_matrix().any()


def test_steady_healthy_traffic_alerts_nobody() -> None:
    for case in (c for c in GOLDEN_CASES if not c.endswith("not-derivable")):
        for slo in load_services([ROOT / f"tests/golden/{case}/slo.yaml"])[0].slos:
            scenario = next((s for s in scenarios(slo) if s.name == "steady healthy traffic"),
                            None)
            if scenario is None or scenario.traffic is None:
                continue
            replay = Replay.of(slo, input_series(slo, scenario.traffic),
                               scenario.traffic.minutes)
            assert not replay.firing_matrix().any(), case


def test_replay_decides_borderline_minutes_exactly() -> None:
    slo = _reference()
    _, replay = _scenario(slo, "100% outage and recovery")
    matrix = replay.firing_matrix()
    for t in range(0, len(replay.total_rate), 97):
        assert tuple(tier for row, tier in enumerate(slo.tiers) if matrix[row, t]) == \
            replay.firing_tiers(t)


# --- synthesising input series -------------------------------------------------------------


def test_expanding_notation_round_trips_counter_runs() -> None:
    assert expanding([0, 10, 20, 30, 30, 30, 35]) == "0+10x3 30+0x1 35"
    assert expanding([0]) == "0"


@pytest.mark.parametrize(("pattern", "example"), [
    pytest.param("5..", "5xx", id="any characters"),
    pytest.param("GET|HEAD", "GET", id="alternation takes a branch"),
    pytest.param("[45]0[0-9]", "400", id="character classes"),
    pytest.param(r"\d+ms", "0ms", id="categories and repeats"),
])
def test_regex_examples_match_their_pattern(pattern: str, example: str) -> None:
    assert example in _regex_examples(pattern)


def test_series_split_one_counter_between_bad_and_the_rest() -> None:
    bad = parse_selector('checkout_sessions_total{outcome="internal_error"}')
    total = parse_selector('checkout_sessions_total{outcome!="invalid"}')
    assert labels_for("checkout_sessions_total", [bad, total], [], {}) == \
        {"outcome": "internal_error"}
    rest = labels_for("checkout_sessions_total", [total], [bad], {"region": "eu"})
    assert rest["region"] == "eu"
    assert rest.get("outcome", "") not in ("internal_error", "invalid")


def test_an_arbitrary_query_gets_only_the_no_data_test(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    files = generated_files(load_services(["tests/golden/query-not-derivable/slo.yaml"]))
    text = files["tests/billing--invoices.test.yml"]
    assert "not generated" in text
    assert text.count('"name":') == 1


# --- services of several SLOs, and group_by labels the selectors constrain ---------------


@pytest.mark.parametrize("slos", [2, 10])
def test_every_generated_test_of_a_multi_slo_service_passes(slos: int, promtool: str,
                                                            tmp_path: Path) -> None:
    """Ratio, latency and query SLOs side by side, group_by labels selected by regex: each
    test file loads only its own SLO's groups, so no sibling's data-absent alert fires."""
    spec = promtool_time.write_service(tmp_path / "specs", slos)
    files = promtool_time.compile_tests(spec, tmp_path / "out")
    assert len(files) == slos
    assert not [f.name for f in files if "not generated" in f.read_text()]
    assert promtool_run.test_rules(promtool, files) == []


def test_an_slo_rule_file_is_its_groups_of_the_service_file(tmp_path: Path) -> None:
    spec = promtool_time.write_service(tmp_path, 5)
    files = generated_files(load_services([spec]))
    service_text = files["svc-05-slos.yml"]
    per_slo = {name: text for name, text in files.items() if name.endswith(".rules.yml")}
    assert len(per_slo) == 5
    groups = []
    for text in per_slo.values():
        body = text.split("groups:\n", 1)[1]
        assert body in service_text  # byte for byte
        groups.extend(yaml.safe_load(text)["groups"])
    assert sorted(g["name"] for g in groups) == \
        sorted(g["name"] for g in yaml.safe_load(service_text)["groups"])


def test_a_single_slo_service_tests_its_own_rule_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    files = generated_files(load_services(["tests/golden/reference-30d/slo.yaml"]))
    assert not [name for name in files if name.endswith(".rules.yml")]
    assert '"rule_files": ["../payments.yml"]' in files["tests/payments--charges.test.yml"]


@pytest.mark.parametrize(("selector", "value"), [
    pytest.param('x{handler=~"/api.*"}', "/api", id="regex: its literal prefix"),
    pytest.param('x{handler=~"/api/v[12]/.+"}', "/api/v1/x", id="regex: an example"),
    pytest.param('x{handler="/login"}', "/login", id="equality"),
    pytest.param('x{handler!="/login"}', GROUP_VALUE, id="inequality"),
    pytest.param('x{handler!~"/(health|ready)"}', GROUP_VALUE, id="negative regex"),
    pytest.param('x{code="500"}', GROUP_VALUE, id="unconstrained"),
])
def test_group_values_satisfy_the_selector(selector: str, value: str) -> None:
    parsed = parse_selector(selector)
    assert group_value("handler", [parsed]) == value
    assert all(m.matches(value) for m in parsed.matchers if m.name == "handler")


def test_an_unsatisfiable_group_label_says_why() -> None:
    selectors = [parse_selector('x{handler=~"/api.*"}'), parse_selector('y{handler="/web"}')]
    with pytest.raises(NotDerivable, match=r"group_by label 'handler'.*handler=~\"/api"):
        group_value("handler", selectors)
