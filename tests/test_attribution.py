"""Budget attribution against a hand-built ledger: one incident per burn however many tiers
fired, its budget counted once, and the change that preceded it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from slo_engine.budget.attribution import INCIDENT_COLUMNS, attribute_incidents, backtest_incidents
from slo_engine.budget.backtest import backtest_slos
from slo_engine.changes.events import Change
from slo_engine.cli import main
from slo_engine.errors import LedgerError
from slo_engine.spec.loader import load_services
from slo_engine.spec.model import SLO
from slo_engine.storage.sqlite import StateDB

SPEC = """\
apiVersion: slo-engine/v1
service: checkout
owner: commerce
depends_on: [payments]
slos:
  - name: checkout-success
    objective: 99
    period: 7d
    sli:
      ratio:
        bad: requests_total{code=~"5.."}
        total: requests_total
"""
D0 = datetime(2026, 5, 1, tzinfo=UTC)
PER_MINUTE = 100.0
BUDGET_EVENTS = 0.01 * 7 * 1440 * PER_MINUTE  # the 7d period's budget: 10,080 bad events


def day(k: int, hhmm: str) -> datetime:
    hours, minutes = (int(p) for p in hhmm.split(":"))
    return D0 + timedelta(days=k, hours=hours, minutes=minutes)


# Three burns, as (first bucket, minutes, error ratio): bad events 1,200, 1,000 and 600. Each
# pages at 20x on the 7d tiers (page 14m/5m fires above 14.4x).
BURNS = {"A": (day(7, "13:01"), 60, 0.2), "B": (day(8, "09:01"), 50, 0.2),
         "C": (day(9, "03:01"), 30, 0.2)}


@pytest.fixture(scope="module")
def slo(tmp_path_factory: pytest.TempPathFactory) -> SLO:
    path = tmp_path_factory.mktemp("slos") / "checkout.yaml"
    path.write_text(SPEC, encoding="utf-8")
    [service] = load_services([path])
    return service.slos[0]


@pytest.fixture(scope="module")
def ledger() -> pd.DataFrame:
    """Ten days of 1-minute buckets, 100 events each, no errors but the three burns."""
    times = pd.date_range(D0 + timedelta(minutes=1), D0 + timedelta(days=10), freq="1min",
                          tz="UTC")
    bad = np.zeros(len(times))
    for first, minutes, error_ratio in BURNS.values():
        inside = (times >= pd.Timestamp(first)) & \
            (times < pd.Timestamp(first + timedelta(minutes=minutes)))
        bad[inside] = PER_MINUTE * error_ratio
    return pd.DataFrame({"timestamp": times, "service": "checkout", "slo": "checkout-success",
                         "group": "", "total": PER_MINUTE, "bad": bad})


CHANGES = [
    # Before A: a deploy (the suspect) and a newer migration (shown, not blamed).
    Change(time=day(7, "12:30"), service="checkout", kind="deploy", version="web:42",
           previous_version="web:41", author="ci"),
    Change(time=day(7, "12:50"), service="checkout", kind="migration", version="db:7"),
    # Before B: a config change of a dependency, and a deploy of an unrelated service.
    Change(time=day(8, "08:00"), service="payments", kind="config", version="limits-3",
           author="alice", rollback_command="cfg apply limits-2"),
    Change(time=day(8, "08:55"), service="search", kind="deploy", version="s:9"),
    # Before C: only a deploy five hours earlier, outside the 2h suspect window.
    Change(time=day(8, "22:00"), service="checkout", kind="deploy", version="web:43",
           previous_version="web:42"),
]


def test_one_incident_per_burn_with_its_budget_and_preceding_change(
        slo: SLO, ledger: pd.DataFrame) -> None:
    [result] = backtest_slos([slo], ledger, since=D0 + timedelta(days=7))
    intervals = backtest_incidents([result])
    assert len(intervals) > 3  # several tiers fire on each burn
    assert set(intervals["severity"]) == {"page", "ticket"}

    incidents = attribute_incidents(intervals, CHANGES, [slo], ledger)
    assert list(incidents.columns) == list(INCIDENT_COLUMNS)
    assert len(incidents) == 3
    a, b, c = (incidents.iloc[i] for i in range(3))

    # Budget: the burn's own bad events over the 7d period's budget, each event once.
    for row, name in ((a, "A"), (b, "B"), (c, "C")):
        first, minutes, error_ratio = BURNS[name]
        assert row["onset"] == first
        assert row["bad_events"] == pytest.approx(PER_MINUTE * error_ratio * minutes)
        assert row["budget_spent"] == pytest.approx(row["bad_events"] / BUDGET_EVENTS)
        assert row["start"] >= row["onset"] and row["end"] > row["start"]
        assert row["duration"] == row["end"] - row["start"]
        assert row["severity"] == "page"
    assert a["alerts"] == 4 and "ticket 16h48m/1h24m" in a["tiers"] \
        and "page 14m/5m" in a["tiers"]
    assert incidents["budget_spent"].sum() == pytest.approx(ledger["bad"].sum() / BUDGET_EVENTS)
    # Adding up the tiers' own figures would count each burn several times.
    assert intervals["budget_spent"].sum() > 1.3 * incidents["budget_spent"].sum()

    assert (a["change_kind"], a["change_version"], a["change_author"]) == ("deploy", "web:42",
                                                                           "ci")
    assert a["change_time"] == day(7, "12:30") and a["suspect"]
    assert a["rollback_command"] == "deploy web:41" and a["changes_before"] == 2

    assert (b["change_service"], b["change_kind"], b["change_author"]) == ("payments",
                                                                           "config", "alice")
    assert b["suspect"] and b["rollback_command"] == "cfg apply limits-2"
    assert b["changes_before"] == 1  # search is not checkout's dependency

    assert c["change_version"] == "web:43" and not c["suspect"]
    assert c["rollback_command"] is None


def test_without_a_ledger_the_largest_interval_counts(slo: SLO) -> None:
    t = day(7, "13:00")
    intervals = pd.DataFrame({
        "service": "checkout", "slo": "checkout-success", "group": ["", "", "", "region=eu"],
        "severity": ["page", "ticket", "ticket", "page"],
        "long_window": ["1h", "1d", "1d", "1h"], "short_window": ["5m", "2h", "2h", "5m"],
        "onset": [t, t - timedelta(minutes=10), t + timedelta(hours=5), t],
        "start": [t + timedelta(minutes=5), t + timedelta(minutes=30), t + timedelta(hours=6),
                  t + timedelta(minutes=5)],
        # The ticket starts as the page ends: touching intervals are one burn. The third
        # interval is a new burn whose onset reaches into the first; the other group's
        # interval is still firing.
        "end": [t + timedelta(minutes=30), t + timedelta(hours=3), t + timedelta(hours=7),
                pd.NaT],
        "budget_spent": [0.05, 0.08, 0.02, 0.3], "peak_burn_rate": [20.0, 4.0, 3.0, 15.0],
    })
    incidents = attribute_incidents(intervals, [], [slo])
    assert len(incidents) == 3
    first = incidents[(incidents["group"] == "")].iloc[0]
    assert first["alerts"] == 2 and first["severity"] == "page"
    assert first["onset"] == t - timedelta(minutes=10)
    assert first["end"] == t + timedelta(hours=3)
    assert first["budget_spent"] == 0.08 and first["peak_burn_rate"] == 20.0
    assert first["tiers"] == "page 1h/5m, ticket 1d/2h"
    assert first["change_kind"] is None and not first["suspect"]
    firing = incidents[incidents["group"] == "region=eu"].iloc[0]
    assert pd.isna(firing["end"]) and pd.isna(firing["duration"])


def test_a_later_burn_is_counted_from_the_end_of_the_one_before(slo: SLO,
                                                                ledger: pd.DataFrame) -> None:
    first, minutes, _ = BURNS["A"]
    end_a = first + timedelta(minutes=minutes)
    intervals = pd.DataFrame({
        "service": "checkout", "slo": "checkout-success", "group": "", "severity": "page",
        "onset": [first, first], "start": [first + timedelta(minutes=2), end_a + timedelta(
            minutes=10)],
        "end": [first + timedelta(minutes=30), end_a + timedelta(minutes=20)],
    })
    incidents = attribute_incidents(intervals, [], [slo], ledger)
    # The first counts the 30 buckets from its onset to its end; the second, whose onset
    # reaches back into the same burn, only the 30 burning buckets after the first ended.
    assert list(incidents["bad_events"]) == [30 * 20.0, 30 * 20.0]


def test_incidents_need_service_slo_and_start() -> None:
    with pytest.raises(LedgerError, match=r"missing column\(s\) slo, start"):
        attribute_incidents(pd.DataFrame({"service": ["checkout"]}), [])
    empty = attribute_incidents(backtest_incidents([]), [])
    assert empty.empty and list(empty.columns) == list(INCIDENT_COLUMNS)


def test_incidents_command(slo: SLO, ledger: pd.DataFrame, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "checkout.yaml").write_text(SPEC, encoding="utf-8")
    ledger.drop(columns=["group"]).to_csv(tmp_path / "events.csv", index=False)
    (tmp_path / "changes.jsonl").write_text(
        "".join(json.dumps(c.as_json()) + "\n" for c in CHANGES[:2]), encoding="utf-8")
    db = tmp_path / "state.db"
    with StateDB(db) as state:  # the rest arrive from the state database
        state.add_changes(CHANGES[1:])
    until = (D0 + timedelta(days=10)).isoformat()
    command = ["incidents", str(tmp_path / "checkout.yaml"), "--data",
               str(tmp_path / "events.csv"), "--since", "3d", "--until", until,
               "--changes", str(tmp_path / "changes.jsonl"), "--state", str(db)]
    assert main([*command, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["onset"], r["change_version"], r["suspect"]) for r in rows] == [
        ("2026-05-08T13:01:00Z", "web:42", True), ("2026-05-09T09:01:00Z", "limits-3", True),
        ("2026-05-10T03:01:00Z", "web:43", False)]
    assert rows[0]["budget_spent"] == pytest.approx(1200 / BUDGET_EVENTS)
    assert rows[0]["rollback_command"] == "deploy web:41" and rows[0]["duration_s"] > 0

    assert main([*command, "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ",".join(INCIDENT_COLUMNS) and len(lines) == 4
    assert main(command) == 0
    table = capsys.readouterr().out
    assert "SUSPECT deploy checkout web:42" in table and "cfg apply limits-2" in table

    assert main([*command[:-2], "--changes", str(tmp_path / "missing.jsonl")]) == 1
    assert "missing.jsonl: cannot read the file" in capsys.readouterr().err


def test_the_page_of_a_past_incident_names_its_suspect_and_rollback(
        ledger: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "checkout.yaml").write_text(SPEC, encoding="utf-8")
    ledger.to_csv(tmp_path / "events.csv", index=False)
    (tmp_path / "changes.jsonl").write_text(
        "".join(json.dumps(c.as_json()) + "\n" for c in CHANGES), encoding="utf-8")
    command = ["incidents", str(tmp_path / "checkout.yaml"), "--data",
               str(tmp_path / "events.csv"), "--since", "3d", "--until",
               (D0 + timedelta(days=10)).isoformat(), "--changes",
               str(tmp_path / "changes.jsonl"), "--state", str(tmp_path / "state.db")]
    assert main([*command, "--page", "worst"]) == 0
    page = capsys.readouterr().out
    assert "PAGE: checkout / checkout-success" in page and "dry run" in page
    assert "Suspect: deploy `web:42` of checkout" in page  # burn A spent the most
    assert "deploy web:41" in page  # derived from previous_version
    assert main([*command, "--page", "2"]) == 0
    assert "config `limits-3` of payments" in capsys.readouterr().out
    assert main([*command, "--page", "9"]) == 1
    assert "a number from 1 to 3" in capsys.readouterr().err
