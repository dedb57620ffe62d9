"""Deploys read from a build-info metric in a real Prometheus holding backfilled history, and
the onset of a burn read from the recorded 5m error ratio there.

Four hours of 30-second samples: checkout rolls v1 → v2 over two instances, then rolls back
to v1; payments has a scrape gap longer than the lookback, then deploys v8; search appears
mid-range; another metric with other label names deploys too. A burn begins five minutes
after checkout's v2 and pages a quarter of an hour later.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from slo_engine.app import correlate_alert, ratio_window
from slo_engine.cli import main
from slo_engine.config import BuildInfoSource
from slo_engine.paging.burn_alert import BurnAlert
from slo_engine.prometheus.build_info import build_info_changes, deploys
from slo_engine.prometheus.queries import error_ratio_series
from slo_engine.prometheus.source import PrometheusSource
from slo_engine.spec.loader import load_services
from slo_engine.spec.model import SLO
from slo_engine.storage.sqlite import StateDB
from tests.support.prometheus import PrometheusServer, backfill_openmetrics, running_prometheus

pytestmark = pytest.mark.prometheus

MINUTE = 60
HOURS = 4
OFFSET = 17  # build-info samples at start + 17 s + 30 s × k: off the query steps on purpose
SPEC = """\
apiVersion: slo-engine/v1
service: checkout
owner: commerce
depends_on: [payments]
slos:
  - name: checkout-success
    objective: 99.9
    sli:
      ratio:
        bad: requests_total{code=~"5.."}
        total: requests_total
"""


@dataclass(frozen=True)
class History:
    server: PrometheusServer
    start: int  # unix seconds, on the minute
    slo: SLO

    @property
    def end(self) -> int:
        return self.start + HOURS * 3600

    def at(self, minutes: float) -> datetime:
        return datetime.fromtimestamp(self.start + minutes * MINUTE, UTC)


def _series(name: str, labels: str, samples: list[tuple[int, float]]) -> list[str]:
    return [f"{name}{{{labels}}} {value} {stamp}" for stamp, value in samples]


def _build_info(start: int, first_minute: float, last_minute: float,
                gap: tuple[int, int] | None = None) -> list[tuple[int, float]]:
    """Samples every 30 s from start + first_minute (+ OFFSET) to before last_minute."""
    stamps = range(start + int(first_minute * MINUTE) + OFFSET,
                   start + int(last_minute * MINUTE), 30)
    return [(t, 1.0) for t in stamps
            if gap is None or not start + gap[0] * MINUTE <= t < start + gap[1] * MINUTE]


def openmetrics(start: int) -> str:
    end = HOURS * 60
    lines = ["# HELP app_build_info Version of the running build.", "# TYPE app_build_info gauge"]
    for labels, first, last, gap in [
        ('service="checkout",version="v1",instance="a"', 0, 60, None),
        ('service="checkout",version="v2",instance="a"', 60, 150, None),
        ('service="checkout",version="v1",instance="a"', 150, end, None),
        ('service="checkout",version="v1",instance="b"', 0, 70, None),
        ('service="checkout",version="v2",instance="b"', 70, 150, None),
        ('service="checkout",version="v1",instance="b"', 150, end, None),
        ('service="payments",version="v7",instance="p"', 0, 200.5, (100, 120)),
        ('service="payments",version="v8",instance="p"', 200.5, end, None),
        ('service="search",version="s1",instance="s"', 30, end, None),
    ]:
        lines += _series("app_build_info", labels, _build_info(start, first, last, gap))
    lines += ["# HELP other_build_info Another naming.", "# TYPE other_build_info gauge"]
    lines += _series("other_build_info", 'app="ledger",release="r1"',
                     _build_info(start, 0, 90))
    lines += _series("other_build_info", 'app="ledger",release="r2"',
                     _build_info(start, 90, end))
    # The recorded 5m error ratio: healthy, burning from minute 65 to 150.
    lines += ["# HELP slo:error_ratio:rate5m Recorded.", "# TYPE slo:error_ratio:rate5m gauge"]
    ratio = [(start + k * MINUTE, 0.05 if 65 <= k < 150 else 0.0001) for k in range(end + 1)]
    lines += _series("slo:error_ratio:rate5m", 'service="checkout",slo="checkout-success"', ratio)
    return "\n".join([*lines, "# EOF", ""])


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory, promtool: str,
            prometheus_binary: str) -> Iterator[History]:
    work = tmp_path_factory.mktemp("build-info")
    # Ends 3 h ago, outside the head block's span, on the minute.
    start = (int(time.time()) - 3 * 3600 - HOURS * 3600) // MINUTE * MINUTE
    (work / "history.om").write_text(openmetrics(start), encoding="utf-8")
    backfill_openmetrics(promtool, work / "history.om", work / "prometheus" / "data")
    (work / "checkout.yaml").write_text(SPEC, encoding="utf-8")
    [service] = load_services([work / "checkout.yaml"])
    with running_prometheus(prometheus_binary, work / "prometheus") as server:
        yield History(server, start, service.slos[0])


def test_new_versions_are_deploys_at_their_first_sample(history: History) -> None:
    with PrometheusSource(history.server.url) as source:
        found = build_info_changes(source, BuildInfoSource(), history.at(0), history.at(240))
    assert [(c.service, c.version, c.previous_version, c.time) for c in found] == [
        # The rolling deploy is one change, at the first instance's first v2 sample.
        ("checkout", "v2", "v1", history.at(60) + timedelta(seconds=OFFSET)),
        ("checkout", "v1", "v2", history.at(150) + timedelta(seconds=OFFSET)),  # rollback
        # No deploy after payments' 20-minute scrape gap; search's first version is a baseline.
        ("payments", "v8", "v7", history.at(200.5) + timedelta(seconds=OFFSET)),
    ]
    assert {(c.kind, c.source) for c in found} == {("deploy", "build_info")}
    assert found[0].rollback() == "deploy v1"


def test_the_range_start_is_a_baseline_and_the_step_only_sets_the_scan(history: History) -> None:
    with PrometheusSource(history.server.url) as source:
        later = build_info_changes(source, BuildInfoSource(), history.at(100), history.at(240),
                                   step_seconds=300)
        coarse = build_info_changes(source, BuildInfoSource(), history.at(0), history.at(240),
                                    step_seconds=300)
        none = build_info_changes(source, BuildInfoSource(), history.at(0), history.at(59))
    # v2 was live when this range began: only the rollback and payments' deploy are changes.
    assert [(c.service, c.version) for c in later] == [("checkout", "v1"), ("payments", "v8")]
    with PrometheusSource(history.server.url) as source:
        fine = build_info_changes(source, BuildInfoSource(), history.at(0), history.at(240))
    assert [c.identity for c in coarse] == [c.identity for c in fine]  # same times: dedup works
    assert none == []


def test_metric_and_label_names_are_configurable(history: History) -> None:
    spec = BuildInfoSource(metric="other_build_info", service_label="app",
                           version_label="release")
    with PrometheusSource(history.server.url) as source:
        [found] = build_info_changes(source, spec, history.at(0), history.at(240))
    assert (found.service, found.version, found.previous_version) == ("ledger", "r2", "r1")
    assert found.description == "release r1 -> r2 on other_build_info"


def test_presence_rules_without_a_server() -> None:
    """The pure part: a baseline of two versions, a gap, and two versions at once."""
    presence = {("api", "a"): [(0, 2), (60, 2), (300, 1)],
                ("api", "b"): [(0, 1), (60, 1)],
                ("api", "c"): [(300, 1)], ("api", "d"): [(300, 1)],
                ("api", ""): [(60, 1)], ("", "x"): [(60, 1)]}
    found = deploys(presence)
    # Minutes 2-4 are a gap; c and d both replace a (on more series at the baseline).
    assert [(c.version, c.previous_version, c.time.timestamp()) for c in found] == [
        ("c", "a", 300), ("d", "a", 300)]


def test_sync_build_info_records_each_deploy_once(history: History, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "state.db"
    since = f"{(time.time() - history.start) // 3600 + 1:.0f}h"
    sync = ["changes", "sync-build-info", "--prometheus-url", history.server.url,
            "--since", since, "--state", str(db)]
    assert main(sync) == 0
    out = capsys.readouterr().out
    assert "app_build_info: 3 deploys since" in out and out.count("recorded: deploy") == 3
    assert main(sync) == 0
    again = capsys.readouterr().out
    assert "app_build_info: 3 deploys since" in again and again.rstrip().endswith(", 0 new")
    with StateDB(db) as state:
        assert len(state.changes()) == 3

    config = tmp_path / "slo-engine.yaml"
    config.write_text(
        "apiVersion: slo-engine/v1\nkind: EngineConfig\n"
        f"prometheus:\n  url: {history.server.url}\n"
        "changes:\n  build_info:\n    - {metric: other_build_info, service_label: app, "
        "version_label: release}\n"
        f"state:\n  path: {db}\n", encoding="utf-8")
    assert main(["changes", "sync-build-info", "--config", str(config), "--since", since]) == 0
    assert "other_build_info: 1 deploy since" in capsys.readouterr().out
    with StateDB(db) as state:
        assert {c.service for c in state.changes()} == {"checkout", "payments", "ledger"}

    assert main(["changes", "sync-build-info", "--prometheus-url", history.server.url,
                 "--metric", "app build", "--state", str(db)]) == 1
    assert "is not a Prometheus metric name" in capsys.readouterr().err


def test_the_page_blames_the_deploy_before_the_onset(history: History, tmp_path: Path) -> None:
    """Build info → state database; the recorded 5m ratio → onset; the suspect and its
    rollback, as the notifier gets them."""
    alert = BurnAlert(service="checkout", slo="checkout-success", group=(), severity="page",
                      long_window="1h", short_window="5m", firing=True, at=history.at(80))
    with PrometheusSource(history.server.url) as source, StateDB(tmp_path / "s.db") as state:
        state.add_changes(build_info_changes(source, BuildInfoSource(), history.at(0),
                                             history.at(240)))
        ratio = error_ratio_series(source, history.slo, alert.group,
                                   *ratio_window(alert, history.slo))
        assert len(ratio) == 61 and ratio.max() == 0.05
        result = correlate_alert(alert, history.slo, state, ratio)
        other = error_ratio_series(source, history.slo, {"region": "nowhere"},
                                   history.at(0), history.at(240))
    assert result.onset == history.at(65)
    assert result.suspect is not None and result.suspect.version == "v2"
    assert result.rollback_command == "deploy v1"
    assert [c.version for c in result.changes] == ["v2"]  # the rollback came after the onset
    assert other.empty
