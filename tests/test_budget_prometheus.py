"""Budget accounting and backtests against a real Prometheus holding 15 days of history.

Synthetic counters (diurnal traffic, incidents, a quiet hour, a counter reset) are
backfilled, then every generated recording rule level by level, once for the module. Then:

- the budget report (`app.budget_report` over `app.prometheus_events`) at a time T near the
  end matches the generator's own counts over the same period: 7d and 14d SLOs fully
  covered, a 30d one over the data there is and marked partial, a group_by SLO per group;
- the backtest over a step-60 ledger read from Prometheus fires exactly when Prometheus
  finds each generated alert expression (`compile.burn_condition`) true, to the step;
- `--data` (the same ledger as a CSV file) and `--prometheus-url` give the same report,
  through `app` and through the CLI;
- Prometheus down: the CLI exits 1 naming the URL, without a traceback.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from slo_engine import app
from slo_engine.budget import ledger
from slo_engine.budget.accounting import BudgetStatus
from slo_engine.budget.backtest import backtest
from slo_engine.cli import main
from slo_engine.prometheus.source import PrometheusSource
from slo_engine.rules.backfill import backfill
from slo_engine.rules.compile import burn_condition, compile_service
from slo_engine.spec.loader import load_services
from slo_engine.spec.model import SLO, Service
from tests.support.processes import free_port
from tests.support.prometheus import (
    PrometheusServer,
    backfill_openmetrics,
    move_blocks,
    running_prometheus,
)
from tests.support.synthetic import (
    DAY,
    HOUR,
    Incident,
    Profile,
    Quiet,
    Synthetic,
    generate,
    write_openmetrics,
)

pytestmark = pytest.mark.prometheus

TOLERANCE = 0.005  # relative (SLI, consumed budget); absolute for remaining, in budgets
SAME = 1e-9  # relative: the same ledger read from a file or from Prometheus
STEP = 60  # the backtest's and the alert expressions' evaluation step
BLOCK_SPAN = "162h"  # promtool's largest block span of ≤ 11,000 points at STEP
DAYS = 15
INSTANCES = ("api-1", "api-2", "api-3")

SPEC = """\
apiVersion: slo-engine/v1
service: web
owner: team-web
slos:
  - name: availability-7d
    objective: 99.9
    period: 7d
    sli:
      ratio:
        bad: http_requests_total{job="api", code=~"5.."}
        total: http_requests_total{job="api"}
  - name: availability-14d
    objective: 99.9
    period: 14d
    sli:
      ratio:
        bad: http_requests_total{job="api", code=~"5.."}
        total: http_requests_total{job="api"}
  - name: availability-30d
    objective: 99.9
    period: 30d
    sli:
      ratio:
        bad: http_requests_total{job="api", code=~"5.."}
        total: http_requests_total{job="api"}
  - name: by-instance
    objective: 99.5
    period: 7d
    sli:
      ratio:
        bad: http_requests_total{job="api", code=~"5.."}
        total: http_requests_total{job="api"}
        group_by: [instance]
"""


@dataclass(frozen=True)
class History:
    server: PrometheusServer
    data: Synthetic
    service: Service
    slo_dir: Path
    start: int  # first raw sample (UTC midnight)
    end: int  # last raw sample
    at: datetime  # T: the report's time, near the end
    work: Path

    @property
    def url(self) -> str:
        return self.server.url

    def slo(self, name: str) -> SLO:
        return next(s for s in self.service.slos if s.name == name)


def scenario(start: int) -> Profile:
    """Fifteen days from UTC midnight `start`, so traffic and incidents line up the same
    whatever the day the test runs. Day k is start + k days."""
    def day(k: float, hour: float) -> int:
        return int(start + k * DAY + hour * HOUR)

    return Profile(
        peak_per_minute=20_000,
        base_error_ratio=0.0002,
        incidents=(
            Incident(day(2, 14), 90, 0.02),  # at the daily peak: pages and tickets
            Incident(day(4, 3), 120, 0.05, ("api-2",)),  # one instance, at the trough
            Incident(day(9, 6), 18 * 60, 0.0065),  # a slow burn: tickets
            Incident(day(14, 18), 60, 0.03),  # 4 h before T
        ),
        quiet=(Quiet(day(12, 4), 60),),
        reset=("api-1", day(6, 10)),
    )


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory, promtool: str,
            prometheus_binary: str) -> Iterator[History]:
    work = tmp_path_factory.mktemp("budget-prometheus")
    slo_dir = work / "slos"
    slo_dir.mkdir()
    (slo_dir / "web.yaml").write_text(SPEC, encoding="utf-8")
    [service] = load_services([slo_dir])

    # The last whole UTC day that ends at least 4 h ago (the head block's span).
    end = (int(time.time()) - 4 * HOUR) // DAY * DAY
    start = end - DAYS * DAY
    data = generate(start=start, end=end, profile=scenario(start), seed=20261201,
                    labels={"job": "api"}, instances=INSTANCES, shares=(0.5, 0.3, 0.2))
    write_openmetrics(work / "requests.om", [data])
    backfill_openmetrics(promtool, work / "requests.om", work / "prometheus" / "data")
    with running_prometheus(prometheus_binary, work / "prometheus") as server:
        def load_blocks(directory: Path) -> None:
            move_blocks(directory, server.data_dir)
            server.restart()

        # Every recording rule, level by level, by the engine's own backfill. promtool writes
        # a block per rule and block span: 162h spans (9,720 steps, under Prometheus' 11,000
        # points) write 7x fewer blocks than the default 24h and take a third of the time.
        result = backfill(compile_service(service), server.url, start, end, work / "backfill",
                          eval_interval=STEP, load_blocks=load_blocks, promtool=promtool,
                          max_block_duration=BLOCK_SPAN)
        assert result.done and result.levels == 4, result
        yield History(server, data, service, slo_dir, start, end,
                      datetime.fromtimestamp(end - 2 * HOUR, UTC), work)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def relative(got: float, want: float) -> float:
    return abs(got - want) / abs(want)


# --- the report against ground truth -------------------------------------------------------


@pytest.fixture(scope="module")
def prometheus_report(history: History) -> tuple[list[BudgetStatus], list[str]]:
    return app.budget_report([history.slo_dir], app.prometheus_events(history.url), history.at)


def test_report_matches_ground_truth(history: History,
                                     prometheus_report: tuple[list[BudgetStatus], list[str]]
                                     ) -> None:
    rows, warnings = prometheus_report
    # Before the recorded history begins the source tries the raw series (there are none
    # either); it must not call the data partial or missing.
    assert not any("PARTIAL" in w or "no data" in w for w in warnings), warnings
    at = history.at.timestamp()
    expected = {(s.name, f"instance={i}" if s.group_by else "")
                for s in history.service.slos for i in (INSTANCES if s.group_by else ("",))}
    assert {(r.slo, r.group) for r in rows} == expected
    worst = {"sli": 0.0, "consumed": 0.0, "remaining": 0.0, "events": 0.0}
    for row in rows:
        slo = history.slo(row.slo)
        what = f"{row.slo} {row.group}".strip()
        instance = row.labels.get("instance")
        since = at - slo.period_seconds
        # The 30d period reaches back before the data: its truth is what there is.
        assert row.partial == (since < history.start), f"{what}: partial={row.partial}"
        assert row.period_start == datetime.fromtimestamp(since, UTC)
        bad, total = history.data.counts(since, at, instance)
        assert bad > 0 and total > 0
        sli = 1 - bad / total
        consumed = bad / (slo.error_budget * total)
        assert row.sli is not None and row.error_budget_consumed is not None
        assert row.error_budget_remaining is not None
        errors = {"sli": relative(row.sli, sli),
                  "consumed": relative(row.error_budget_consumed, consumed),
                  "remaining": abs(row.error_budget_remaining - (1 - consumed)),
                  "events": max(relative(row.total_events, total),
                                relative(row.bad_events, bad))}
        for name, error in errors.items():
            worst[name] = max(worst[name], error)
            assert error <= TOLERANCE, (
                f"{what}: {name} off by {error:.3%}: sli {row.sli:.6f} vs {sli:.6f}, "
                f"consumed {row.error_budget_consumed:.5f} vs {consumed:.5f}, "
                f"events {row.bad_events:.0f}/{row.total_events:.0f} vs {bad}/{total}")
    print(f"\nreport vs ground truth, worst: SLI {worst['sli']:.2e} relative, consumed "
          f"{worst['consumed']:.2e} relative, remaining {worst['remaining']:.2e} absolute, "
          f"events {worst['events']:.2e} relative")


def test_report_agrees_with_the_budget_prometheus_records(
        history: History, prometheus_report: tuple[list[BudgetStatus], list[str]]) -> None:
    """The rules' own `slo:error_budget_remaining:ratio` at T tells the same story."""
    worst = 0.0
    for row in prometheus_report[0]:
        matchers = [f'slo="{row.slo}"', f'service="{row.service}"',
                    *(f'{k}="{v}"' for k, v in row.labels.items())]
        recorded = history.server.query_value(
            f"slo:error_budget_remaining:ratio{{{', '.join(matchers)}}}",
            history.at.timestamp())
        assert row.error_budget_remaining is not None
        difference = abs(row.error_budget_remaining - recorded)
        worst = max(worst, difference)
        assert difference <= TOLERANCE, (
            f"{row.slo} {row.group}: report {row.error_budget_remaining:.5f}, "
            f"recorded {recorded:.5f}")
    print(f"\nreport vs recorded budget remaining, worst: {worst:.2e}")


def test_history_has_its_counter_reset_and_quiet_hour(history: History) -> None:
    """Not vacuous: Prometheus sees the restart, and the quiet hour holds no events."""
    at = history.end
    resets = history.server.query_value(
        f'sum(resets(http_requests_total{{instance="api-1", code="200"}}[{DAYS}d]))', at)
    assert resets == 1
    [quiet] = scenario(history.start).quiet
    middle = quiet.start + quiet.minutes * 30
    total = history.server.query_value(
        'sum(slo:total_events:rate5m{slo="availability-7d"})', middle)
    assert total == 0 and history.data.counts(quiet.start, quiet.start + 3600) == (0, 0)


# --- backtest against Prometheus' own evaluation of the alert expressions ------------------

Interval = tuple[int, int]  # [start, end): first firing step, first step no longer firing


def runs(stamps: list[int], last: int) -> list[Interval]:
    """Runs of consecutive steps; a run still true at `last` ends one step after it."""
    out: list[Interval] = []
    for t in sorted(stamps):
        if out and t == out[-1][1]:
            out[-1] = (out[-1][0], t + STEP)
        else:
            out.append((t, t + STEP))
    return [(a, min(b, last + STEP)) for a, b in out]


def mismatches(mine: list[Interval], theirs: list[Interval]) -> int:
    """Intervals without a partner within one step at both ends (either side)."""
    unmatched = list(theirs)
    missing = 0
    for a, b in mine:
        partner = next((p for p in unmatched
                        if abs(p[0] - a) <= STEP and abs(p[1] - b) <= STEP), None)
        if partner is None:
            missing += 1
        else:
            unmatched.remove(partner)
    return missing + len(unmatched)


def test_backtest_fires_when_prometheus_evaluates_the_alerts_true(history: History) -> None:
    since = datetime.fromtimestamp(history.start, UTC)
    until = datetime.fromtimestamp(history.end, UTC)
    with PrometheusSource(history.url) as source:
        frame, _ = source.fetch_ledger([history.service], since, until, step_seconds=STEP)
    first, last = history.start + STEP, history.end
    severities: set[str] = set()
    compared = total_mismatches = 0
    worst_shift = 0
    fired: dict[str, dict[str, int]] = {}
    for slo in history.service.slos:
        result = backtest(slo, frame, step_seconds=STEP)
        for tier in slo.tiers:
            mine: dict[str, list[Interval]] = {}
            alerts = result.alerts[(result.alerts["severity"] == tier.severity)
                                   & (result.alerts["long_window"] == tier.long_window)
                                   & (result.alerts["short_window"] == tier.short_window)]
            still_firing = pd.Timestamp(last + STEP, unit="s", tz="UTC")
            for group, start, end in zip(alerts["group"].astype(str), seconds(alerts["start"]),
                                         seconds(alerts["end"].fillna(still_firing)),
                                         strict=True):
                mine.setdefault(group, []).append((start, end))
            theirs: dict[str, list[Interval]] = {}
            for series in history.server.query_range(burn_condition(slo, tier), first, last,
                                                     STEP):
                group = ledger.group_key({k: series.labels[k] for k in slo.group_by})
                theirs[group] = runs([int(t) for t, _ in series.points], last)
            for group in sorted(set(mine) | set(theirs)):
                ours, prometheus = mine.get(group, []), theirs.get(group, [])
                bad = mismatches(ours, prometheus)
                assert not bad, (
                    f"{slo.name} {group} {tier.name}: backtest {fmt(ours)}\n"
                    f"  Prometheus {fmt(prometheus)}")
                for (a, b), (c, d) in zip(sorted(ours), sorted(prometheus), strict=True):
                    worst_shift = max(worst_shift, abs(a - c), abs(b - d))
                compared += len(ours)
                if ours:
                    tiers = fired.setdefault(slo.name, {})
                    tiers[tier.name] = tiers.get(tier.name, 0) + len(ours)
                total_mismatches += bad
                if ours:
                    severities.add(tier.severity)
        assert len(result.alerts), f"{slo.name}: the history fires none of its tiers"
    assert severities == {"page", "ticket"}, severities
    print(f"\nbacktest vs Prometheus: {compared} intervals, {total_mismatches} mismatches, "
          f"largest shift {worst_shift} s; intervals by SLO and tier: {fired}")


def seconds(times: pd.Series) -> list[int]:
    return [int(t) for t in times.dt.as_unit("s").astype("int64")]


def fmt(intervals: list[Interval]) -> str:
    return ", ".join(f"{iso(datetime.fromtimestamp(a, UTC))}..{iso(datetime.fromtimestamp(b, UTC))}"
                     for a, b in intervals) or "none"


# --- the same numbers from a file and from Prometheus --------------------------------------


def assert_same(got: Any, want: Any, path: str = "") -> None:
    """Equal JSON values; numbers within SAME relative."""
    if isinstance(want, bool) or want is None or isinstance(want, str):
        assert got == want, f"{path}: {got!r} != {want!r}"
    elif isinstance(want, int | float):
        assert isinstance(got, int | float) and not isinstance(got, bool), f"{path}: {got!r}"
        assert math.isclose(got, want, rel_tol=SAME, abs_tol=0.0), f"{path}: {got!r} != {want!r}"
    elif isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{path}: keys {got} != {want}"
        for key in want:
            assert_same(got[key], want[key], f"{path}.{key}")
    else:
        assert isinstance(got, list) and len(got) == len(want), f"{path}: {got!r} != {want!r}"
        for index, (a, b) in enumerate(zip(got, want, strict=True)):
            assert_same(a, b, f"{path}[{index}]")


@pytest.fixture(scope="module")
def event_file(history: History) -> Path:
    """The ledger a report at T reads from Prometheus, as a CSV file."""
    services = [history.service]
    frame, _ = app.prometheus_events(history.url)(services,
                                                  *app.report_window(services, history.at))
    assert len(frame) and set(frame["slo"]) == {s.name for s in history.service.slos}
    path = history.work / "events.csv"
    frame.to_csv(path, index=False)
    return path


def test_file_and_prometheus_reports_agree(
        history: History, event_file: Path,
        prometheus_report: tuple[list[BudgetStatus], list[str]]) -> None:
    from_file, warnings = app.budget_report([history.slo_dir], app.file_events(event_file),
                                            history.at)
    assert not warnings
    assert_same([r.as_json() for r in from_file],
                [r.as_json() for r in prometheus_report[0]], "report")


def test_cli_data_and_prometheus_url_agree(
        history: History, event_file: Path, capsys: pytest.CaptureFixture[str],
        prometheus_report: tuple[list[BudgetStatus], list[str]]) -> None:
    common = ["report", str(history.slo_dir), "--at", iso(history.at), "--format", "json"]
    outputs = []
    for source in (["--prometheus-url", history.url], ["--data", str(event_file)]):
        code = main([*common, *source])
        out, err = capsys.readouterr()
        assert code == 0, err
        outputs.append(json.loads(out))
    from_prometheus, from_file = outputs
    assert_same(from_prometheus, [r.as_json() for r in prometheus_report[0]], "cli vs app")
    assert_same(from_file, from_prometheus, "cli")


# --- Prometheus down -------------------------------------------------------------------------


def test_cli_reports_prometheus_down_without_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "web.yaml").write_text(SPEC, encoding="utf-8")
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code = main(["report", str(tmp_path), "--prometheus-url", url, "--at",
                 "2026-05-12T14:00:00Z", "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 1
    assert url in err, err
    assert "Traceback" not in out + err
    assert out == ""
