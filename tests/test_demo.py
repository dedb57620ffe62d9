"""The demo's month and `make demo`: the story the data tells is the one the engine finds.

The dataset is checked for what the README promises (diurnal traffic, a quiet hour, two
incidents a deploy started and a rollback ended, one slow burn with no change behind it,
everyday changes as noise), then replayed by the backtest: one page per incident, a ticket
for the slow burn, nothing else. `make demo` runs from the existing venv (`-o` keeps make
from reinstalling it) into a temporary DEMO_OUT; its output and charts are checked.
`make demo-prometheus` does the same against a real Prometheus, page included.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from slo_engine.budget.backtest import backtest_slos
from slo_engine.budget.charts import SIZE_PX
from slo_engine.changes.events import SUSPECT_KINDS, read_change_lines
from slo_engine.cli import main
from slo_engine.demo.month import DemoData, demo_data
from slo_engine.spec.loader import load_services
from slo_engine.spec.model import Service
from tests.support.binaries import require
from tests.support.paths import ROOT

UNTIL = datetime(2026, 5, 31, 12, tzinfo=UTC)
CHARTS = 11  # a burn-down and an SLI chart for each of the 5 SLOs, and the heatmap


@pytest.fixture(scope="module")
def services() -> list[Service]:
    return load_services([ROOT / "slo_definitions"])


@pytest.fixture(scope="module")
def data(services: list[Service]) -> DemoData:
    return demo_data(services, UNTIL)


def test_thirty_days_of_five_minute_buckets_for_every_slo_group(data: DemoData) -> None:
    ledger = data.ledger
    keys = ledger.groupby(["service", "slo", "group"], observed=True).size()
    assert len(keys) == 6  # five SLOs, checkout in two regions
    assert set(keys) == {30 * 288}
    assert ledger["timestamp"].max() == pd.Timestamp(UNTIL)
    assert (ledger["bad"] <= ledger["total"]).all()
    assert data.start == UNTIL - timedelta(days=30)


def test_the_same_end_gives_the_same_month_whatever_the_span(services: list[Service],
                                                             data: DemoData) -> None:
    again = demo_data(services, UNTIL)
    pd.testing.assert_frame_equal(again.ledger, data.ledger)
    assert again.changes == data.changes
    longer = demo_data(services, UNTIL, days=31)
    overlap = longer.ledger[longer.ledger["timestamp"] > pd.Timestamp(data.start)]
    pd.testing.assert_frame_equal(overlap.reset_index(drop=True), data.ledger)
    assert {c.identity for c in data.changes} <= {c.identity for c in longer.changes}


def test_traffic_follows_the_day_and_stops_for_the_quiet_hour(data: DemoData) -> None:
    api = data.ledger[data.ledger["slo"] == "api-latency"]
    by_hour = api.groupby(api["timestamp"].dt.hour)["total"].mean()
    assert by_hour.max() > 3 * by_hour[by_hour > 0].min()
    silent = data.ledger.groupby("timestamp")["total"].sum()
    quiet = silent[silent == 0]
    assert len(quiet) == 12  # one hour, every SLO at once
    assert (quiet.index[-1] - quiet.index[0]) == pd.Timedelta(minutes=55)


def test_two_incidents_each_started_by_a_deploy_and_ended_by_its_rollback(
        data: DemoData) -> None:
    incidents = [b for b in data.burns if b.kind == "incident"]
    assert [(b.service, b.slo) for b in incidents] == [("api", "api-latency"),
                                                        ("checkout", "checkout-success")]
    for burn in incidents:
        cause, fix = burn.cause, burn.fix
        assert cause is not None and fix is not None
        assert cause.kind == fix.kind == "deploy" and cause.service == burn.service
        assert timedelta(0) < burn.start - cause.time <= timedelta(minutes=5)
        assert cause.previous_version and cause.rollback_command == \
            f"deploy {cause.previous_version}"
        assert fix.version == cause.previous_version and fix.previous_version == cause.version
        assert timedelta(0) <= burn.end - fix.time <= timedelta(minutes=5)
        assert cause in data.changes and fix in data.changes
        before = [c for c in data.changes if c.service == burn.service
                  and burn.start - timedelta(hours=2) <= c.time < burn.start]
        assert before == [cause]  # the suspect is the only change of its service just before


def test_the_slow_burn_has_no_change_behind_it(data: DemoData) -> None:
    (slow,) = [b for b in data.burns if b.kind == "slow_burn"]
    assert slow.cause is None and slow.end == UNTIL
    assert not [c for c in data.changes if c.service == slow.service
                and slow.start - timedelta(hours=3) <= c.time <= slow.end]


def test_everyday_changes_surround_the_incidents(data: DemoData) -> None:
    kinds = {c.kind for c in data.changes}
    assert {"deploy", "config", "feature_flag", "migration"} <= kinds
    routine = [c for c in data.changes if c.kind == "deploy" and c.author == "ci"]
    assert len(routine) >= 20
    times = [c.time for c in data.changes]
    assert times == sorted(times)
    assert all(data.start < t < UNTIL for t in times)
    for burn in data.burns:  # another service changed just before, and is not the suspect
        if burn.kind == "incident":
            assert any(c.service != burn.service and c.kind in SUSPECT_KINDS
                       and burn.start - timedelta(hours=1) <= c.time < burn.start
                       for c in data.changes)


def test_the_backtest_finds_the_story(services: list[Service], data: DemoData) -> None:
    slos = [slo for service in services for slo in service.slos]
    since = data.start + timedelta(days=3)  # every alert window full
    results = {r.slo: r for r in backtest_slos(slos, data.ledger, since=since)}
    assert {name: (r.pages, r.tickets > 0) for name, r in results.items()} == {
        "api-latency": (1, True), "checkout-success": (1, True),
        "search-latency": (0, True), "login-success": (0, False),
        "critical-jobs-on-time": (0, False)}
    for burn in data.burns:
        alerts = results[burn.slo].alerts
        first = alerts.iloc[0]
        assert pd.Timestamp(burn.start) < first["start"] <= pd.Timestamp(burn.start) + \
            (timedelta(hours=1) if burn.kind == "incident" else timedelta(days=2))
        if burn.kind == "incident":
            assert first["severity"] == "page"
            assert first["group"] in ("", "region=eu")  # the first group takes the brunt


def test_sample_data_writes_the_changes_as_json_lines(tmp_path: Path, data: DemoData,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    events, changes = tmp_path / "events.csv", tmp_path / "changes.jsonl"
    assert main(["sample-data", str(ROOT / "slo_definitions"), "--out", str(events),
                 "--changes", str(changes), "--until", "2026-05-31T12:00:00Z"]) == 0
    assert f"wrote {len(data.changes)} change events" in capsys.readouterr().out
    assert read_change_lines(changes) == data.changes


def _png_sizes(directory: Path) -> dict[str, tuple[int, int]]:
    sizes = {}
    for path in sorted(directory.glob("*.png")):
        assert path.stat().st_size > 10_000, path
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            sizes[path.name] = image.size
    return sizes


def _make(target: str, out: Path) -> str:
    make = shutil.which("make")
    if make is None:
        pytest.fail("make not found: apt-get install make", pytrace=False)
    venv = ROOT / ".venv"
    result = subprocess.run(
        [make, "-o", f"{venv}/.installed", target, f"VENV={venv}", f"DEMO_OUT={out}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "COLUMNS": "160"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return result.stdout + result.stderr


def _check_demo_output(output: str, charts: Path) -> None:
    assert "Error budgets" in output  # the report
    assert "checkout/checkout-success" in output and "{region=eu}" in output
    assert "Alerts the policy would have sent" in output and "Summary" in output  # backtest
    assert "2026-05-29 12:" in output  # the api incident's page
    assert f"wrote {CHARTS} charts to {charts}" in output
    sizes = _png_sizes(charts)
    assert len(sizes) == CHARTS
    assert set(sizes.values()) == {SIZE_PX}
    assert "burn-down--api--api-latency.png" in sizes and "burn-rate-heatmap.png" in sizes
    assert "Incidents: budget spent and the change before each" in output
    page = output[output.index("dry run: nothing is sent"):]
    assert "PAGE: checkout / checkout-success (region=eu)" in page  # the worst incident
    assert "🚨 Suspect: deploy `checkout:" in page and "Roll back:" in page


def test_make_demo(tmp_path: Path) -> None:
    if not (ROOT / ".venv" / "bin" / "slo-engine").exists():
        pytest.fail("run `make setup` first: the demo test uses the existing .venv",
                    pytrace=False)
    out = tmp_path / "demo_out"
    output = _make("demo", out)
    assert "OK: 5 SLOs in 5 services valid" in output
    assert (out / "rules" / "checkout.yml").is_file()
    assert len(read_change_lines(out / "changes.jsonl")) > 50
    _check_demo_output(output, out / "charts")


@pytest.mark.prometheus
def test_make_demo_prometheus(tmp_path: Path) -> None:
    require("prometheus")
    require("promtool")
    out = tmp_path / "demo_out"
    output = _make("demo-prometheus", out)
    assert "Prometheus serves them at http://127.0.0.1:" in output
    assert "read from raw series" not in output  # the recorded series cover the period
    assert "Prometheus stopped" in output
    _check_demo_output(output, out / "prometheus" / "charts")
    log = (out / "prometheus" / "prometheus.log").read_text()
    assert "level=error" not in log
    (backfilled,) = [line for line in output.splitlines() if line.startswith("backfilling")]
    assert int(backfilled.split()[1].replace(",", "")) == 31 * 1440 * 12 - 6 * 2 * 4
