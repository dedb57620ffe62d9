"""The vmalert layout, evaluated by a real vmalert over history in a real VictoriaMetrics,
fires the same alerts at the same minutes as Prometheus, within one evaluation.

Prometheus' side is `promtool_tests.Replay`, which the generated promtool tests prove equal
to Prometheus to the minute (tests/test_rule_tests.py; the quiet-hour scenario, not among
the generated ones, is proven here with promtool). VictoriaMetrics' side: the scenario's
counters imported with their timestamps, then `vmalert -replay.timeFrom/-replay.timeTo`
evaluating each group of `compile --format vmalert` in file order, one vmalert run per
group, with no delay between a group's rules: a rule reading what its own group records
would see nothing, and the alerts would come late or never.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from slo_engine.rules.compile import compile_service
from slo_engine.rules.files import dump_yaml, group_data, render
from slo_engine.rules.promtool_tests import (
    Replay,
    Scenario,
    Series,
    Traffic,
    input_series,
    scenarios,
)
from slo_engine.rules.promtool_tests import (
    test_group as promtool_test_group,
)
from slo_engine.spec import conventions as names
from slo_engine.spec.loader import load_services
from slo_engine.spec.model import SLO, Service
from tests.support import promtool as promtool_run
from tests.support.paths import GOLDEN, ROOT
from tests.support.victoria import (
    VictoriaServer,
    firing_minutes,
    replay,
    running_victoria,
    text_lines,
)

pytestmark = pytest.mark.prometheus

MINUTE = 60
ALIGN = 300  # the slow group's interval: every group evaluates on the same instants


def _service(case: str) -> Service:
    [service] = load_services([ROOT / f"tests/golden/{case}/slo.yaml"])
    return service


@pytest.fixture
def victoria(tmp_path_factory: pytest.TempPathFactory,
             victoria_metrics_binary: str) -> Iterator[VictoriaServer]:
    """One server per test: scenarios share series names and overlap in time."""
    with running_victoria(victoria_metrics_binary, tmp_path_factory.mktemp("vm")) as server:
        yield server


def _scenario(slo: SLO, name: str) -> Scenario:
    return next(s for s in scenarios(slo) if s.name == name)


def _steady(minutes: int, ratio: float, per_minute: int = 100_000) -> tuple[np.ndarray, ...]:
    return (np.full(minutes, per_minute, dtype=np.int64),
            np.full(minutes, round(per_minute * ratio), dtype=np.int64))


def _traffic(*parts: tuple[np.ndarray, ...]) -> Traffic:
    return Traffic(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


def quiet_hour(slo: SLO) -> Scenario:
    """A full outage, then an hour with no traffic at all, then healthy traffic: the quiet
    hour holds nothing to divide, and must neither end the alert early nor raise one."""
    budget = slo.error_budget
    return Scenario("quiet hour", "outage, an hour without events, healthy traffic",
                    _traffic(_steady(60, 0), _steady(30, 1.0), _steady(60, 0, 0),
                             _steady(90, 0), _steady(20, 20 * budget)))


@dataclass(frozen=True)
class Group:
    """One group of an SLO's series and what Prometheus fires on it, tier by minute."""

    series: list[Series]
    firing: np.ndarray  # [tier, minute], as Prometheus decides (Replay)


def _relabel(series: Sequence[Series], label: str, value: str) -> list[Series]:
    return [Series(tuple((k, value if k == label else v) for k, v in s.labels), s.role,
                   s.values) for s in series]


def _groups(slo: SLO, traffics: Sequence[tuple[str | None, Traffic]]) -> list[Group]:
    groups = []
    for value, traffic in traffics:
        series = input_series(slo, traffic)
        if value is not None:
            series = _relabel(series, slo.group_by[0], value)
        groups.append(Group(series, Replay.of(slo, series, traffic.minutes).firing_matrix()))
    return groups


def _vmalert_files(service: Service, slo: SLO, workdir: Path) -> list[Path]:
    """This SLO's groups of the vmalert layout, one file each, in file order."""
    rule_set = compile_service(service, "vmalert")
    mine = [g for g in rule_set.groups if g.name.startswith(
        names.alert_group_name(slo.service, slo.name) + ":") or
        g.name == names.alert_group_name(slo.service, slo.name)]
    assert [g.name.rsplit(":", 1)[-1] for g in mine] == ["rates", slo.name, "slow"]
    files = []
    for index, group in enumerate(mine):
        path = workdir / f"group-{index}.yml"
        path.write_text(dump_yaml({"groups": [group_data(group)]}), encoding="utf-8")
        files.append(path)
    return files


def _vmalert_firing(server: VictoriaServer, vmalert: str, service: Service, slo: SLO,
                    groups: Sequence[Group], minutes: int, workdir: Path
                    ) -> dict[tuple[str, str | None], set[int]]:
    """Import the groups' counters ending an hour ago, replay the rules over them; the
    minutes each (long window, group value) fired."""
    workdir.mkdir(parents=True, exist_ok=True)
    start = (int(time.time()) - (minutes + 60) * MINUTE) // ALIGN * ALIGN
    lines = [line for group in groups for s in group.series
             for line in text_lines(s.labels, ((start + i * MINUTE, float(v))
                                               for i, v in enumerate(s.values)))]
    server.import_prometheus(lines)
    end = start + minutes * MINUTE
    for path in _vmalert_files(service, slo, workdir):
        replay(vmalert, path, server, start, end, log_file=workdir / "vmalert.log")
    found: dict[tuple[str, str | None], set[int]] = {}
    label = slo.group_by[0] if slo.group_by else None
    for key, fired in firing_minutes(server, slo.alerting.name, start, end,
                                     {names.SLO_LABEL: slo.name}).items():
        labels = dict(key)
        found[(labels[names.LONG_WINDOW_LABEL], labels.get(label) if label else None)] = fired
    return found


def _mismatches(prometheus: np.ndarray, vmalert: set[int], step: int) -> list[int]:
    """Minutes of the tier's group evaluations where vmalert and Prometheus disagree other
    than within one evaluation of a change in Prometheus' alert."""
    wrong = []
    for m in range(step, len(prometheus), step):
        if (m in vmalert) != bool(prometheus[m]):
            near = [k for k in (m - step, m + step) if 0 <= k < len(prometheus)]
            if not any(prometheus[k] != prometheus[m] for k in near):
                wrong.append(m)
    return wrong


def _compare(slo: SLO, groups: Sequence[Group], values: Sequence[str | None],
             found: dict[tuple[str, str | None], set[int]]) -> None:
    fired_somewhere = False
    for group, value in zip(groups, values, strict=True):
        for row, tier in enumerate(slo.tiers):
            step = 5 if tier.long_seconds >= names.SLOW_TIER_SECONDS else 1
            prometheus = group.firing[row]
            vm = found.get((tier.long_window, value), set())
            assert not any(m % step for m in vm), f"{tier.long_window}: off its group's steps"
            wrong = _mismatches(prometheus, vm, step)
            assert not wrong, (f"{slo.name} {value} {tier.severity} {tier.long_window}: vmalert "
                               f"{sorted(vm)} vs Prometheus "
                               f"{np.flatnonzero(prometheus).tolist()}; differ at {wrong}")
            fired_somewhere |= bool(prometheus.any())
    assert fired_somewhere, "the scenario fires nothing: it proves nothing"


def test_vmalert_loads_every_golden_vmalert_file(vmalert_binary: str) -> None:
    """vmalert parses every expression (MetricsQL, a superset of PromQL) of every SLI kind."""
    files = sorted(GOLDEN.glob("*/vmalert/*.yml"))
    assert len(files) >= 10
    for path in files:
        result = subprocess.run([vmalert_binary, "-dryRun", f"-rule={path}"],
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, f"{path}:\n{result.stderr[-2000:]}"


@pytest.mark.parametrize("scenario_name", ["100% outage and recovery", "slow burn"])
def test_vmalert_fires_as_prometheus_does(scenario_name: str, victoria: VictoriaServer,
                                          vmalert_binary: str, tmp_path: Path) -> None:
    service = _service("reference-30d")
    [slo] = service.slos
    scenario = _scenario(slo, scenario_name)
    assert scenario.traffic is not None
    groups = _groups(slo, [(None, scenario.traffic)])
    found = _vmalert_firing(victoria, vmalert_binary, service, slo, groups,
                            scenario.traffic.minutes, tmp_path)
    _compare(slo, groups, [None], found)


def test_vmalert_fires_as_prometheus_does_around_a_quiet_hour(
        victoria: VictoriaServer, vmalert_binary: str, promtool: str, tmp_path: Path) -> None:
    service = _service("reference-30d")
    [slo] = service.slos
    scenario = quiet_hour(slo)
    assert scenario.traffic is not None
    # Prometheus agrees with the replay here too: promtool, at every change of the alert.
    (tmp_path / "rules.yml").write_text(render(compile_service(service)), encoding="utf-8")
    (tmp_path / "test.yml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yml"], "evaluation_interval": "1m",
        "group_eval_order": [names.alert_group_name(slo.service, slo.name),
                             names.slow_group_name(slo.service, slo.name)],
        "tests": [promtool_test_group(slo, scenario)]}), encoding="utf-8")
    assert not promtool_run.test_rules(promtool, [tmp_path / "test.yml"])
    groups = _groups(slo, [(None, scenario.traffic)])
    found = _vmalert_firing(victoria, vmalert_binary, service, slo, groups,
                            scenario.traffic.minutes, tmp_path / "vm")
    _compare(slo, groups, [None], found)


def test_vmalert_fires_per_group_as_prometheus_does(victoria: VictoriaServer,
                                                    vmalert_binary: str, tmp_path: Path) -> None:
    """group_by: one route in an outage, one healthy; only the first pages, as in Prometheus."""
    service = _service("latency-7d-group-by")
    [slo] = service.slos
    outage = _scenario(slo, "100% outage and recovery").traffic
    assert outage is not None
    healthy = _traffic(_steady(outage.minutes, slo.error_budget / 4))
    values = ["/checkout", "/search"]
    groups = _groups(slo, list(zip(values, [outage, healthy], strict=True)))
    found = _vmalert_firing(victoria, vmalert_binary, service, slo, groups, outage.minutes,
                            tmp_path)
    assert not any(value == "/search" for _, value in found), found
    _compare(slo, groups, values, found)


def test_the_prometheus_layout_is_what_vmalert_gets_wrong(victoria: VictoriaServer,
                                                          vmalert_binary: str,
                                                          tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The reason for the layout: replayed the same way, Prometheus' groups (rules reading
    what their own group records) miss the outage's pages in vmalert."""
    service = _service("reference-30d")
    [slo] = service.slos

    def prometheus_files(service: Service, slo: SLO, workdir: Path) -> list[Path]:
        paths = []
        for index, group in enumerate(compile_service(service).groups):
            path = workdir / f"group-{index}.yml"
            path.write_text(dump_yaml({"groups": [group_data(group)]}), encoding="utf-8")
            paths.append(path)
        return paths

    monkeypatch.setattr(f"{__name__}._vmalert_files", prometheus_files)
    scenario = _scenario(slo, "100% outage and recovery")
    assert scenario.traffic is not None
    groups = _groups(slo, [(None, scenario.traffic)])
    found = _vmalert_firing(victoria, vmalert_binary, service, slo, groups,
                            scenario.traffic.minutes, tmp_path)
    with pytest.raises(AssertionError, match="differ at"):
        _compare(slo, groups, [None], found)
