"""`report`, `backtest` and `sample-data` from the command line, on an event file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slo_engine.cli import main
from tests.support.paths import ROOT

UNTIL = "2026-05-31T00:00:00Z"


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("events") / "events.csv"
    assert main(["sample-data", str(ROOT / "slo_definitions"), "--out", str(path),
                 "--until", UNTIL]) == 0
    return path


def test_report_json_is_the_documented_contract(events: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(ROOT / "slo_definitions"), "--data", str(events), "--at", UNTIL,
                 "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["service"], r["slo"]) for r in rows} >= {("api", "api-latency"),
                                                         ("checkout", "checkout-success")}
    checkout = [r for r in rows if r["slo"] == "checkout-success"]
    assert [r["labels"] for r in checkout] == [{"region": "eu"}, {"region": "us"}]
    for row in rows:
        assert set(row) >= {"slo", "service", "labels", "objective", "period", "sli",
                            "error_budget_remaining", "burn_rates", "time_to_exhaustion_s",
                            "status", "firing"}
        assert row["status"] in {"healthy", "burning", "exhausted", "no_data"}
        assert 0.9 < row["sli"] <= 1
        assert "1h" in row["burn_rates"]


def test_report_table_csv_and_calendar(events: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(ROOT / "slo_definitions"), "--data", str(events), "--at", UNTIL,
                 "--calendar", "month"]) == 0
    table = capsys.readouterr().out
    assert "checkout/checkout-success" in table and "month" in table
    assert main(["report", str(ROOT / "slo_definitions"), "--data", str(events), "--at", UNTIL,
                 "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("service,slo,group,objective,period")
    assert len(lines) == 1 + 6  # five SLOs, checkout in two regions


def test_backtest_lists_pages_and_tickets(events: Path, capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    assert main(["backtest", str(ROOT / "slo_definitions"), "--data", str(events),
                 "--until", UNTIL, "--since", "7d", "--format", "json"]) == 0
    results = {r["slo"]: r for r in json.loads(capsys.readouterr().out)}
    assert results["api-latency"]["pages"] == 1  # the sample data's fast burn
    assert results["search-latency"]["tickets"] == 1  # and its slow burn
    first = results["api-latency"]["alerts"][0]
    assert first["severity"] == "page" and first["delay_s"] > 0
    policy = tmp_path / "quiet.yaml"
    policy.write_text("apiVersion: slo-engine/v1\nkind: AlertPolicy\ntiers:\n"
                      "  - {severity: page, long_window: 1h, short_window: 5m, "
                      "budget_percent: 20}\n")
    assert main(["backtest", str(ROOT / "slo_definitions/api.yaml"), "--data", str(events),
                 "--until", UNTIL, "--since", "7d", "--policy", str(policy),
                 "--format", "json"]) == 0
    quiet = json.loads(capsys.readouterr().out)[0]
    assert quiet["pages"] == 0 and quiet["tickets"] == 0


def test_a_bad_event_file_is_a_clear_error(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "events.csv"
    bad.write_text("timestamp,slo,total,bad\n2026-05-01T00:00:00Z,api-latency,10,x\n")
    assert main(["report", str(ROOT / "slo_definitions"), "--data", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "line 2: column bad must be a number" in err
    assert "Traceback" not in err


def test_parquet_and_csv_give_the_same_report(events: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    parquet = tmp_path / "events.parquet"
    assert main(["sample-data", str(ROOT / "slo_definitions"), "--out", str(parquet),
                 "--until", UNTIL]) == 0
    capsys.readouterr()
    outputs = []
    for path in (events, parquet):
        assert main(["report", str(ROOT / "slo_definitions"), "--data", str(path), "--at", UNTIL,
                     "--format", "json"]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    assert outputs[0] == outputs[1]


@pytest.mark.prometheus
def test_backfill_against_a_dead_prometheus_names_the_command(
        promtool: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backfill", str(ROOT / "slo_definitions/api.yaml"), "--prometheus-url",
                 "http://127.0.0.1:9", "--since", "1d", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "promtool tsdb create-blocks-from rules" in err and "127.0.0.1:9" in err
    assert "Traceback" not in err


def test_a_grouped_slo_without_its_column_is_a_clear_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events.csv"
    events.write_text("timestamp,slo,total,bad\n2026-05-01T00:00:00Z,checkout-success,10,1\n")
    for command in (["report"], ["backtest", "--since", "1d", "--until", UNTIL]):
        assert main([*command, str(ROOT / "slo_definitions"), "--data", str(events)]) == 1
        err = capsys.readouterr().err
        assert f"{events}: SLO checkout/checkout-success is grouped by 'region', but the " \
               "file has no region column" in err
        assert "Traceback" not in err
