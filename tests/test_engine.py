"""The engine's budget jobs against a real Prometheus and the Slack stand-in: a refresh sends
the budget-policy notice of an SLO below half its budget once (not again at the next
refresh, nor after a restart), exports the budgets, and the daily digest goes to each
owner channel once a day with the burn-down of its SLO with the least budget left. A firing
tier whose recorded series are missing (Prometheus back from an outage, its rules not yet run)
is held, not resolved; and requests from ever new threads share the engine's connections."""

from __future__ import annotations

import gc
import io
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from PIL import Image

from slo_engine.budget import charts
from slo_engine.config import load_config
from slo_engine.paging.alertmanager import WebhookPayload
from slo_engine.paging.burn_alert import BurnAlert
from slo_engine.paging.dedup import UNSEEN_HOLD, encode_firing, tier_id
from slo_engine.service.engine import Engine
from slo_engine.spec.conventions import BAD_EVENTS_RATE, TOTAL_EVENTS_RATE
from tests.support.binaries import require
from tests.support.prometheus import PrometheusServer, backfill_openmetrics
from tests.support.slack_standin import TOKEN, SlackStandIn

pytestmark = pytest.mark.prometheus

RPS = 10.0
# SLO → (owner, share of its one-day budget spent over the day)
SPENT = {"checkout": ("shop", 0.6), "search": ("discovery", 0.1)}


def _specs(directory: Path, owners: dict[str, str] | None = None) -> None:
    """One SLO per service (default: SPENT's); a service without recorded data has none."""
    directory.mkdir()
    for service, owner in (owners or {s: o for s, (o, _) in SPENT.items()}).items():
        (directory / f"{service}.yaml").write_text(yaml.safe_dump({
            "apiVersion": "slo-engine/v1", "service": service, "owner": owner,
            "slos": [{"name": "availability", "objective": 99.9, "period": "1d",
                      "sli": {"ratio": {"bad": f'http_requests_total{{job="{service}", '
                                               'code="500"}',
                                        "total": f'http_requests_total{{job="{service}"}}'}},
                      "alerting": {"ticket": False}}]}), encoding="utf-8")


def _openmetrics(path: Path, first: int, last: int) -> None:
    """The recorded event rates the ledger reads, one sample a minute: a constant error
    ratio that spends SPENT of the budget over a day."""
    stamps = range(first, last + 1, 60)
    lines = []
    for metric in (TOTAL_EVENTS_RATE, BAD_EVENTS_RATE):
        lines.append(f"# TYPE {metric} gauge")
        for service, (_, spent) in SPENT.items():
            rate = RPS if metric == TOTAL_EVENTS_RATE else RPS * 0.001 * spent
            lines += [f'{metric}{{service="{service}",slo="availability"}} {rate} {t}'
                      for t in stamps]
    path.write_text("\n".join(lines) + "\n# EOF\n", encoding="utf-8")


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, datetime]]:
    binary, promtool = require("prometheus"), require("promtool")
    workdir = tmp_path_factory.mktemp("engine-budgets")
    at = (int(time.time()) - 3 * 3600) // 300 * 300  # clear of the head block
    data = workdir / "recorded.om"
    _openmetrics(data, at - 26 * 3600, at + 1800)
    server = PrometheusServer(binary, workdir / "prometheus")
    backfill_openmetrics(promtool, data, server.data_dir)
    server.start()
    try:
        yield server.url, datetime.fromtimestamp(at, UTC)
    finally:
        server.stop()


@pytest.fixture()
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn() as standin:
        yield standin


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _engine(tmp_path: Path, url: str, slack: SlackStandIn, clock: Clock, *,
            digest_chart: bool = True, paging: str = "engine",
            replica: str | None = None) -> Engine:
    """An engine on tmp_path's state; `replica` names one of several sharing it."""
    if not (tmp_path / "slos").exists():
        _specs(tmp_path / "slos")
    config = tmp_path / f"slo-engine{'-' + replica if replica else ''}.yaml"
    config.write_text(yaml.safe_dump({
        "apiVersion": "slo-engine/v1", "kind": "EngineConfig", "slo_files": ["slos"],
        "prometheus": {"url": url},
        "slack": {"token": TOKEN, "base_url": slack.url, "retries": 0, "owners": {
            "shop": {"page": "#checkout-oncall", "ticket": "#checkout-tickets"},
            "discovery": {"page": "#payments-oncall", "ticket": "#slo-notices"},
            "ghost": {"page": "#payments-oncall"}}},
        "schedule": {"digest_chart": digest_chart}, "paging": paging,
        "state": {"path": "state.db"},
        "service": {"replica_id": replica or "solo", "lease": "10m"}}), encoding="utf-8")
    return Engine.from_config(load_config(config, {}), clock=clock)


def _texts(slack: SlackStandIn, channel: str) -> list[str]:
    return [r.params["text"] for r in slack.posts() if r.answer["channel"] == channel]


def test_a_budget_below_half_is_announced_once(tmp_path: Path, slack: SlackStandIn,
                                               prometheus: tuple[str, datetime]) -> None:
    url, at = prometheus
    clock = Clock(at)
    engine = _engine(tmp_path, url, slack, clock)
    try:
        statuses = {s.service: s for s in engine.refresh_budgets()}
        assert statuses["checkout"].error_budget_remaining == pytest.approx(0.4, abs=0.01)
        assert statuses["search"].error_budget_remaining == pytest.approx(0.9, abs=0.01)
        [notice] = _texts(slack, "C0TICKET")
        assert notice.startswith("checkout / availability: error budget below 50% (40.")
        assert _texts(slack, "C0NOTICE") == []  # search has 90% left
        remaining = engine.telemetry.registry.get_sample_value(
            "slo_engine_error_budget_remaining_ratio",
            {"service": "checkout", "slo": "availability", "group": ""})
        assert remaining == pytest.approx(0.4, abs=0.01)
        clock.now = at + timedelta(minutes=5)
        engine.refresh_budgets()
        assert len(_texts(slack, "C0TICKET")) == 1
    finally:
        engine.close()
    restarted = _engine(tmp_path, url, slack, Clock(at + timedelta(minutes=10)))
    try:
        restarted.refresh_budgets()
        assert len(_texts(slack, "C0TICKET")) == 1  # the state database remembers it
    finally:
        restarted.close()


def test_a_standby_reads_the_budgets_and_leaves_the_notices_to_the_leader(
        tmp_path: Path, slack: SlackStandIn, prometheus: tuple[str, datetime]) -> None:
    url, at = prometheus
    clock = Clock(at)
    leader = _engine(tmp_path, url, slack, clock, replica="a")
    standby = _engine(tmp_path, url, slack, clock, replica="b")
    try:
        assert leader.leadership.renew() and not standby.leadership.renew()
        statuses = {s.service: s for s in standby.refresh_budgets()}
        assert statuses["checkout"].error_budget_remaining == pytest.approx(0.4, abs=0.01)
        remaining = standby.telemetry.registry.get_sample_value(
            "slo_engine_error_budget_remaining_ratio",
            {"service": "checkout", "slo": "availability", "group": ""})
        assert remaining == pytest.approx(0.4, abs=0.01)  # its API and gauges answer too
        assert _texts(slack, "C0TICKET") == []  # the notice is the leader's to send
        leader.refresh_budgets()
        assert len(_texts(slack, "C0TICKET")) == 1
    finally:
        standby.close()
        leader.close()


def test_the_digest_goes_to_each_owner_channel_once_a_day(
        tmp_path: Path, slack: SlackStandIn, prometheus: tuple[str, datetime]) -> None:
    url, at = prometheus
    clock = Clock(at)
    engine = _engine(tmp_path, url, slack, clock)
    try:
        assert engine.send_digest() == 2
        [shop] = [t for t in _texts(slack, "C0TICKET") if t.startswith("SLO digest")]
        [discovery] = [t for t in _texts(slack, "C0NOTICE") if t.startswith("SLO digest")]
        assert shop.startswith(f"SLO digest {at:%Y-%m-%d} for shop: 1 SLO, 1 healthy.")
        assert discovery.startswith(f"SLO digest {at:%Y-%m-%d} for discovery: 1 SLO, 1 healthy.")
        uploads = {upload.channel: upload for upload in slack.uploads.values()}
        assert sorted(uploads) == ["C0NOTICE", "C0TICKET"]  # one chart each, in its channel
        for channel, service, left in (("C0TICKET", "checkout", "4"), ("C0NOTICE", "search", "9")):
            upload = uploads[channel]
            assert upload.filename == f"burn-down--{service}--availability.png"
            assert upload.title is not None and upload.title.startswith(
                f"Burn-down of {service}/availability: {left}")
            assert upload.title.endswith("% of its error budget left, the least in this digest")
            assert upload.content is not None
            with Image.open(io.BytesIO(upload.content)) as image:
                assert (image.format, image.size) == ("PNG", charts.SIZE_PX)
                low, high = image.convert("L").getextrema()
                assert high - low > 100  # something was drawn
        digest_calls = [r.method for r in slack.requests if r.method != "chat.postMessage"
                        or r.params["text"].startswith("SLO digest")]
        assert digest_calls == 2 * ["chat.postMessage", "files.getUploadURLExternal", "upload",
                                    "files.completeUploadExternal"]  # each chart after its digest
        clock.now = at.replace(hour=23, minute=59)  # later the same day
        assert engine.send_digest() == 0  # the same day's digest is not sent twice
        assert len([r for r in slack.posts() if r.params["text"].startswith("SLO digest")]) == 2
        assert len(slack.uploads) == 2
    finally:
        engine.close()


def test_the_digest_chart_can_be_switched_off(
        tmp_path: Path, slack: SlackStandIn, prometheus: tuple[str, datetime]) -> None:
    url, at = prometheus
    engine = _engine(tmp_path, url, slack, Clock(at), digest_chart=False)
    try:
        assert engine.send_digest() == 2
        assert slack.calls("files.getUploadURLExternal") == []
        assert slack.uploads == {}
    finally:
        engine.close()


def test_a_digest_without_budget_figures_goes_without_a_chart(
        tmp_path: Path, slack: SlackStandIn, prometheus: tuple[str, datetime],
        caplog: pytest.LogCaptureFixture) -> None:
    url, at = prometheus
    _specs(tmp_path / "slos", {"checkout": "shop", "ghost": "ghost"})  # ghost: no events
    engine = _engine(tmp_path, url, slack, Clock(at))
    try:
        with caplog.at_level(logging.WARNING, logger="slo_engine.service.engine"):
            assert engine.send_digest() == 2
        [ghost] = [t for t in _texts(slack, "C0OTHER") if t.startswith("SLO digest")]
        assert ghost.startswith(f"SLO digest {at:%Y-%m-%d} for ghost: 1 SLO, 1 no data.")
        assert [u.channel for u in slack.uploads.values()] == ["C0TICKET"]
        assert "the digest to #payments-oncall goes without a chart" in caplog.text
    finally:
        engine.close()


def test_a_firing_tier_without_samples_is_held_before_it_resolves(
        tmp_path: Path, slack: SlackStandIn, prometheus: tuple[str, datetime]) -> None:
    url, at = prometheus  # this Prometheus has no error-ratio series: every window is unseen
    clock = Clock(at)
    engine = _engine(tmp_path, url, slack, clock)
    firing = BurnAlert("checkout", "availability", (), "page", "12m", "5m", True,
                       at - timedelta(minutes=5), 20.0, 100.0, "engine")
    with engine.state.transaction() as unit:  # as an evaluation before the outage left it
        unit.save_firing(encode_firing({tier_id(firing): firing}))
    try:
        for later in (timedelta(0), UNSEEN_HOLD - timedelta(minutes=1)):
            clock.now = at + later
            assert engine.evaluate() == []
            assert list(engine.firing().values()) == [firing]
        clock.now = at + UNSEEN_HOLD
        [resolved] = engine.evaluate()
        assert (resolved.tier, resolved.firing, resolved.at) == ("12m/5m", False, clock.now)
        assert engine.firing() == {}
    finally:
        engine.close()


def test_a_deposed_leaders_evaluation_records_nothing(
        tmp_path: Path, slack: SlackStandIn, prometheus: tuple[str, datetime],
        caplog: pytest.LogCaptureFixture) -> None:
    """A leader paused past its lease (which another replica then took) finds a transition
    when it resumes: the fencing token in its write's transaction rolls it back, and the
    replica that leads now records it."""
    url, at = prometheus
    clock = Clock(at)
    deposed = _engine(tmp_path, url, slack, clock, replica="a")
    leader = _engine(tmp_path, url, slack, clock, replica="b")
    firing = BurnAlert("checkout", "availability", (), "page", "12m", "5m", True,
                       at - timedelta(minutes=5), 20.0, 100.0, "engine")
    with deposed.state.transaction() as unit:
        unit.save_firing(encode_firing({tier_id(firing): firing}))
    try:
        deposed.start_delivery()  # renews on its own thread, every 200 s of real time
        assert deposed.evaluate() == [] and deposed.role().token == 1  # the tier is held
        clock.now = at + UNSEEN_HOLD  # the held tier resolves now; a's 10m lease lapsed
        assert leader.leadership.renew() and leader.role().token == 2
        assert deposed.leadership.token == 1  # it has not renewed since: it believes it leads
        with caplog.at_level(logging.WARNING, logger="slo_engine.service.leadership"):
            assert deposed.evaluate() == []
        assert "no longer leading, leader-only work stops" in caplog.text
        assert deposed.role().role == "standby"
        assert list(leader.firing().values()) == [firing]  # the write rolled back
        deposed.close()

        assert leader.evaluate() == []  # its own hold of the unseen tier starts now
        clock.now = at + 2 * UNSEEN_HOLD
        [resolved] = leader.evaluate()
        assert (resolved.tier, resolved.firing) == ("12m/5m", False)
        assert leader.firing() == {}
    finally:
        deposed.close()
        leader.close()


def test_pages_of_one_evaluation_show_each_their_own_budget(
        tmp_path: Path, slack: SlackStandIn, prometheus: tuple[str, datetime]) -> None:
    """The budgets of the SLOs paged about at once are fetched together (a ledger fetch per
    report window, not per page); each page still shows its own SLO's."""
    url, at = prometheus
    engine = _engine(tmp_path, url, slack, Clock(at), paging="alertmanager")
    alerts = [{"status": "firing", "startsAt": at.isoformat(),
               "labels": {"alertname": "SLOErrorBudgetBurn", "service": service,
                          "slo": "availability", "severity": "page", "long_window": "1h",
                          "short_window": "5m"}} for service in SPENT]
    try:
        payload = WebhookPayload.model_validate({"version": "4", "status": "firing",
                                                 "alerts": alerts})
        assert engine.handle_alertmanager(payload) == 2
        engine.deliver()
        pages = {r.answer["channel"]: json.dumps(r.params["blocks"]) for r in slack.posts()}
        assert "*Error budget left*\\n40." in pages["C0PAGE"], pages["C0PAGE"]
        assert "*Error budget left*\\n90." in pages["C0OTHER"], pages["C0OTHER"]
    finally:
        engine.close()


def test_an_slo_removed_by_a_reload_is_evaluated_no_more(
        tmp_path: Path, slack: SlackStandIn, prometheus: tuple[str, datetime]) -> None:
    """The evaluator's plan of the loaded SLOs is made again after a reload: the firing tier
    of an SLO whose file was removed resolves at once instead of being held as unseen."""
    url, at = prometheus  # no error-ratio series: a loaded SLO's firing tier is held
    clock = Clock(at)
    engine = _engine(tmp_path, url, slack, clock)
    firing = BurnAlert("checkout", "availability", (), "page", "12m", "5m", True,
                       at - timedelta(minutes=5), 20.0, 100.0, "engine")
    with engine.state.transaction() as unit:
        unit.save_firing(encode_firing({tier_id(firing): firing}))
    try:
        assert engine.evaluate() == []  # held: checkout is loaded
        (tmp_path / "slos" / "checkout.yaml").unlink()
        assert engine.reload() is True
        clock.now = at + timedelta(minutes=1)
        [resolved] = engine.evaluate()
        assert (resolved.slo, resolved.firing, resolved.at) == ("availability", False, clock.now)
        assert engine.firing() == {}
    finally:
        engine.close()


def _connections_to(port: int) -> int:
    """Established TCP connections of this process to `port` (a closed source's socket
    lingers until its last response is collected)."""
    gc.collect()
    sockets = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            sockets.add(target[len("socket:["):-1])
    count = 0
    for line in Path("/proc/net/tcp").read_text(encoding="ascii").splitlines()[1:]:
        fields = line.split()
        remote, state, inode = fields[2], fields[3], fields[9]
        count += int(remote.split(":")[1], 16) == port and state == "01" and inode in sockets
    return count


def test_webhooks_from_ever_new_threads_share_the_engines_connections(
        tmp_path: Path, slack: SlackStandIn, prometheus: tuple[str, datetime]) -> None:
    """The HTTP thread pool retires idle threads: a connection per thread would pile up."""
    url, at = prometheus
    port = int(url.rsplit(":", 1)[1])
    engine = _engine(tmp_path, url, slack, Clock(at), paging="alertmanager")
    labels = {"alertname": "SLOErrorBudgetBurn", "service": "checkout", "slo": "availability",
              "severity": "page", "long_window": "1h", "short_window": "5m"}
    before = _connections_to(port)
    try:
        for status in 3 * ("firing", "resolved"):
            payload = WebhookPayload.model_validate({
                "version": "4", "status": status, "alerts": [{
                    "status": status, "labels": labels, "startsAt": at.isoformat(),
                    "endsAt": (at + timedelta(minutes=1)).isoformat()}]})
            accepted: list[int] = []
            thread = threading.Thread(target=lambda p=payload, into=accepted: into.append(
                engine.handle_alertmanager(p)))
            thread.start()
            thread.join(30)
            assert accepted == [1]
        assert _connections_to(port) - before == 1
    finally:
        engine.close()
    assert _connections_to(port) == before
