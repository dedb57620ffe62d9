"""The notifier through slack-sdk's real HTTP path, against a local stand-in of Slack's Web API:
the lifecycle of an incident's message, the outbox through outages and restarts, and the
errors a broken set-up gives."""

from __future__ import annotations

import itertools
import logging
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from rich.console import Console

from slo_engine.changes.events import Change
from slo_engine.cli import main
from slo_engine.config import EngineConfig, SlackConfig
from slo_engine.errors import ConfigError, NotifyError
from slo_engine.paging.blocks import SlackMessage
from slo_engine.paging.burn_alert import Severity
from slo_engine.paging.notifier import Notifier
from slo_engine.paging.page import SUSPECT_MARK, PageContext, sample_context
from slo_engine.paging.slack import DryRunDelivery, SlackDelivery, delivery_from_config
from slo_engine.spec.loader import load_services
from slo_engine.spec.model import SLO
from slo_engine.storage.sqlite import StateDB
from tests.support.slack_standin import TOKEN, SlackStandIn

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 5, 12, 14, 20, tzinfo=UTC)
PROMETHEUS = "http://prometheus.example:9090"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """slack-sdk sends through HTTP(S)_PROXY when set; the stand-in is on 127.0.0.1."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def checkout() -> SLO:
    (service,) = load_services([ROOT / "slo_definitions/checkout.yaml"])
    return service.slos[0]


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn() as standin:
        yield standin


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateDB]:
    with StateDB(tmp_path / "state.db") as db:
        yield db


def engine_config(page: str = "C0PAGE", ticket: str = "C0TICKET") -> EngineConfig:
    return EngineConfig.model_validate({
        "apiVersion": "slo-engine/v1", "kind": "EngineConfig", "prometheus": {"url": PROMETHEUS},
        "slack": {"owners": {"commerce-platform": {"page": page, "ticket": ticket}}}})


def delivery(slack: SlackStandIn, token: str = TOKEN, retries: int = 1) -> SlackDelivery:
    return SlackDelivery(SlackConfig(token=SecretStr(token), base_url=slack.url, retries=retries),
                         backoff_seconds=0.01)


def notifier(state: StateDB, slack: SlackStandIn, **options: Any) -> Notifier:
    route = options.pop("route", engine_config().channel_for)
    return Notifier(state, delivery(slack, **options), route)


def alert_context(slo: SLO, minute: float = 0, *, firing: bool = True,
                  severity: Severity = "page", windows: tuple[str, str] = ("1h", "5m"),
                  burn: tuple[float, float] = (20.0, 25.0), consumed: float = 0.30,
                  region: str = "eu") -> PageContext:
    base = sample_context(T0, PROMETHEUS)  # the same onset and changes at every minute
    assert base.status is not None
    alert = replace(base.alert, at=T0 + timedelta(minutes=minute), severity=severity,
                    long_window=windows[0],
                    short_window=windows[1], firing=firing, burn_rate_long=burn[0],
                    burn_rate_short=burn[1], group=(("region", region),))
    status = replace(base.status, error_budget_consumed=consumed,
                     error_budget_remaining=1 - consumed)
    return replace(base, slo=slo, alert=alert, status=status)


def header(blocks: list[dict[str, Any]]) -> str:
    return str(blocks[0]["text"]["text"])


def block(blocks: list[dict[str, Any]], block_id: str) -> dict[str, Any]:
    return next(b for b in blocks if b.get("block_id") == block_id)


# --- the lifecycle


def test_the_first_firing_posts_a_page_with_every_section(slack: SlackStandIn, state: StateDB,
                                                          checkout: SLO) -> None:
    notifier(state, slack).handle(alert_context(checkout))
    (post,) = slack.posts()
    assert post.params["channel"] == "C0PAGE"
    assert post.authorization == f"Bearer {TOKEN}"
    blocks = post.params["blocks"]
    assert header(blocks) == "\U0001f534 PAGE: checkout / checkout-success (region=eu)"
    assert "20.0x (fires above 14.4x)" in str(block(blocks, "broken")["fields"])
    assert "70.0% of 30d" in str(block(blocks, "impact")["fields"])
    suspect = block(blocks, "suspect")["text"]["text"]
    assert suspect.startswith(SUSPECT_MARK)
    assert "```deploy web-api:2026.05.10-41c2d2a```" in suspect
    assert post.params["text"].startswith("PAGE checkout / checkout-success (region=eu)")
    assert post.params["unfurl_links"] is False


def test_repeats_update_the_message_in_place_and_identical_ones_call_nothing(
        slack: SlackStandIn, state: StateDB, checkout: SLO) -> None:
    pager = notifier(state, slack)
    pager.handle(alert_context(checkout, 0, burn=(20.0, 25.0)))
    pager.handle(alert_context(checkout, 1, burn=(22.5, 30.0)))
    requests = len(slack.requests)
    pager.handle(alert_context(checkout, 2, burn=(22.5, 30.0)))
    assert len(slack.requests) == requests  # the same state: Slack is not called
    (post,) = slack.posts()
    (update,) = slack.calls("chat.update")
    assert (update.params["channel"], update.params["ts"]) == ("C0PAGE",
                                                               post.answer["ts"])
    message = slack.messages[post.answer["ts"]]
    assert message.updates == 1
    assert "22.5x (fires above 14.4x)" in str(block(message.blocks, "broken")["fields"])


def test_resolution_marks_the_message_and_replies_in_its_thread(
        slack: SlackStandIn, state: StateDB, checkout: SLO) -> None:
    pager = notifier(state, slack)
    pager.handle(alert_context(checkout, 0, consumed=0.30))
    pager.handle(alert_context(checkout, 42, firing=False, burn=(3.0, 0.5), consumed=0.345))
    (post,) = slack.posts()
    ts = post.answer["ts"]
    message = slack.messages[ts]
    assert header(message.blocks).startswith("\u2705 RESOLVED PAGE: checkout")
    assert "after *42m*" in block(message.blocks, "resolved")["text"]["text"]
    assert block(message.blocks, "suspect") == block(post.params["blocks"], "suspect")
    (reply,) = slack.replies(ts)
    assert reply.channel == "C0PAGE"
    text = reply.blocks[0]["text"]["text"]
    assert "after *42m*" in text
    assert "it spent *4.5%* of the 30d error budget; *65.5%* left" in text
    assert pager.outbox_depth() == 0


def test_a_resolution_without_an_incident_is_ignored(slack: SlackStandIn, state: StateDB,
                                                     checkout: SLO,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="slo_engine.paging.notifier")
    notifier(state, slack).handle(alert_context(checkout, firing=False))
    assert slack.requests == []
    assert "resolution of checkout/checkout-success/region=eu/page ignored" in caplog.text


def test_an_escalation_posts_the_page_once_while_the_ticket_keeps_its_message(
        slack: SlackStandIn, state: StateDB, checkout: SLO) -> None:
    pager = notifier(state, slack)
    pager.handle(alert_context(checkout, 0, burn=(3.5, 4.0), severity="ticket",
                               windows=("1d", "2h")))
    pager.handle(alert_context(checkout, 5, burn=(16.0, 20.0)))
    for minute in (6, 7):
        pager.handle(alert_context(checkout, minute, burn=(16.0, 20.0)))
        pager.handle(alert_context(checkout, minute, burn=(3.5 + minute, 4.0),
                                   severity="ticket", windows=("1d", "2h")))
    posts = slack.posts()
    assert [(p.params["channel"], header(p.params["blocks"]).split(":")[0]) for p in posts] == [
        ("C0TICKET", "\U0001f7e1 TICKET"), ("C0PAGE", "\U0001f534 PAGE")]
    assert {u.params["ts"] for u in slack.calls("chat.update")} == {posts[0].answer["ts"]}


def test_two_page_tiers_share_one_message_and_resolve_when_both_stop(
        slack: SlackStandIn, state: StateDB, checkout: SLO) -> None:
    pager = notifier(state, slack)
    slow = ("6h", "30m")
    pager.handle(alert_context(checkout, 0, burn=(20.0, 25.0)))
    pager.handle(alert_context(checkout, 1, burn=(7.0, 8.0), windows=slow))
    pager.handle(alert_context(checkout, 30, firing=False, burn=(2.0, 1.0)))
    assert len(slack.posts()) == 1
    assert slack.calls("chat.update") == []  # the slower tier does not repaint the message
    pager.handle(alert_context(checkout, 31, burn=(7.5, 8.0), windows=slow))
    (update,) = slack.calls("chat.update")
    assert "Burn rate 6h" in str(update.params["blocks"])
    pager.handle(alert_context(checkout, 90, firing=False, burn=(1.0, 0.5), windows=slow))
    ts = slack.posts()[0].answer["ts"]
    assert header(slack.messages[ts].blocks).startswith("\u2705 RESOLVED")
    assert len(slack.replies(ts)) == 1



def test_tiers_with_one_long_window_lead_in_name_order(slack: SlackStandIn, state: StateDB,
                                                       checkout: SLO) -> None:
    pager = notifier(state, slack)
    pager.handle(alert_context(checkout, 0, windows=("1h", "5m")))
    pager.handle(alert_context(checkout, 1, windows=("1h", "10m"), burn=(21.0, 22.0)))
    pager.handle(alert_context(checkout, 2, windows=("1h", "5m"), burn=(23.0, 24.0)))
    (update,) = slack.calls("chat.update")  # not a repaint by whichever set order says leads
    assert "Burn rate 10m" in str(update.params["blocks"])


# --- Slack misbehaving


def test_a_rate_limited_page_waits_in_the_outbox_for_its_retry_after(
        slack: SlackStandIn, state: StateDB, checkout: SLO) -> None:
    """Issue 14: after a 429 with Retry-After 1 s the next flush posted again at once
    (0.0 s). The outbox now keeps the not-before time and nothing sleeps in the caller."""
    slack.answer_429(3, retry_after=1)
    pager = notifier(state, slack, retries=2)
    began = time.monotonic()
    pager.handle(alert_context(checkout))  # no exception, and no sleep: an outage
    assert time.monotonic() - began < 0.9
    assert [r.status for r in slack.calls("chat.postMessage")] == [429]
    assert pager.outbox_depth() == 1
    assert pager.next_attempt() is not None
    report = pager.flush()  # too early: nothing is called
    assert (report.sent, report.queued) == (0, 1)
    assert len(slack.calls("chat.postMessage")) == 1
    attempts = 1
    while not slack.posts():
        time.sleep(0.05)
        pager.flush()
        attempts = len(slack.calls("chat.postMessage"))
        assert attempts <= 4 and time.monotonic() - began < 10
    calls = slack.calls("chat.postMessage")
    assert [r.status for r in calls] == [429, 429, 429, 200]
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(calls)]
    assert all(gap >= 1.0 for gap in gaps), gaps
    assert pager.outbox_depth() == 0
    assert len(slack.posts()) == 1


def test_a_retry_after_survives_a_restart(slack: SlackStandIn, tmp_path: Path,
                                          checkout: SLO) -> None:
    path = tmp_path / "state.db"
    slack.answer_429(1, retry_after=2)
    with StateDB(path) as first:
        notifier(first, slack).handle(alert_context(checkout))
    with StateDB(path) as second:
        restarted = notifier(second, slack)
        assert restarted.flush().sent == 0  # the restarted engine waits too
        time.sleep(2.0)
        assert restarted.flush().sent == 1
    (limited, accepted) = slack.calls("chat.postMessage")
    assert accepted.at - limited.at >= 2.0


def test_a_run_of_500s_queues_everything_and_recovery_drains_it_in_order(
        slack: SlackStandIn, state: StateDB, checkout: SLO) -> None:
    pager = notifier(state, slack)
    pager.handle(alert_context(checkout, 0, region="eu"))
    slack.answer_500(1000)
    pager.handle(alert_context(checkout, 1, region="us"))
    pager.handle(alert_context(checkout, 2, region="eu", burn=(30.0, 40.0)))
    pager.handle(alert_context(checkout, 3, region="eu", firing=False))
    pager.handle(alert_context(checkout, 4, region="ap", severity="ticket",
                               windows=("1d", "2h"), burn=(3.5, 4.0)))
    assert pager.outbox_depth() == 4  # post us, update eu (its repeat folded in), reply eu, post ap
    assert all(r.status == 500 for r in slack.requests[1:])
    slack.clear_faults()
    report = pager.flush()
    assert (report.sent, report.failed, report.queued) == (4, 0, 0)
    delivered = [r for r in slack.requests if r.ok]
    assert [(r.method, r.params.get("thread_ts") is not None) for r in delivered] == [
        ("chat.postMessage", False),  # eu, before the outage
        ("chat.postMessage", False),  # us
        ("chat.update", False),  # eu: its last state, resolved (the repeat folded into it)
        ("chat.postMessage", True),  # eu: the resolution in its thread
        ("chat.postMessage", False),  # ap
    ]
    eu_ts = delivered[0].answer["ts"]
    assert delivered[2].params["ts"] == eu_ts and delivered[3].params["thread_ts"] == eu_ts
    assert header(delivered[2].params["blocks"]).startswith("\u2705 RESOLVED")
    assert "30.0x" in str(delivered[2].params["blocks"])
    assert "region=us" in header(delivered[1].params["blocks"])
    assert "region=ap" in header(delivered[4].params["blocks"])
    assert pager.flush().sent == 0  # nothing is sent twice


def test_slack_unreachable_then_back_on_the_same_port(slack: SlackStandIn, state: StateDB,
                                                      checkout: SLO) -> None:
    pager = notifier(state, slack)
    slack.stop()
    pager.handle(alert_context(checkout))
    assert pager.outbox_depth() == 1
    slack.start()
    assert pager.flush().sent == 1
    assert len(slack.posts()) == 1


def test_a_restart_mid_incident_never_pages_twice_and_still_resolves(
        slack: SlackStandIn, tmp_path: Path, checkout: SLO) -> None:
    path = tmp_path / "state.db"
    with StateDB(path) as first:
        notifier(first, slack).handle(alert_context(checkout, 0))
    with StateDB(path) as second:
        restarted = notifier(second, slack)
        restarted.handle(alert_context(checkout, 5, burn=(25.0, 30.0)))
        restarted.handle(alert_context(checkout, 40, firing=False))
    (post,) = slack.posts()
    ts = post.answer["ts"]
    assert [u.params["ts"] for u in slack.calls("chat.update")] == [ts, ts]
    assert header(slack.messages[ts].blocks).startswith("\u2705 RESOLVED")
    assert len(slack.replies(ts)) == 1


def test_a_page_queued_before_a_restart_goes_out_once_already_resolved(
        slack: SlackStandIn, tmp_path: Path, checkout: SLO) -> None:
    path = tmp_path / "state.db"
    slack.answer_500(1000)
    with StateDB(path) as first:
        pager = notifier(first, slack)
        pager.handle(alert_context(checkout, 0))
        pager.handle(alert_context(checkout, 30, firing=False))
    slack.clear_faults()
    with StateDB(path) as second:
        report = notifier(second, slack).flush()
    assert (report.sent, report.queued) == (2, 0)
    (post,) = slack.posts()
    assert header(post.params["blocks"]).startswith("\u2705 RESOLVED")
    assert len(slack.replies(post.answer["ts"])) == 1
    assert slack.calls("chat.update") == []



def test_a_call_cut_short_by_a_crash_goes_out_after_the_restart(
        slack: SlackStandIn, tmp_path: Path, checkout: SLO) -> None:
    path = tmp_path / "state.db"
    slack.answer_500(1000)
    with StateDB(path) as first:
        notifier(first, slack).handle(alert_context(checkout, 0))
        with first.transaction() as unit:  # killed between claiming and recording
            assert unit.claim_next() is not None
    slack.clear_faults()
    with StateDB(path) as second:
        restarted = notifier(second, slack)
        assert restarted.outbox_depth() == 1
        assert restarted.flush().sent == 1
    assert len(slack.posts()) == 1


def test_pages_from_many_threads_at_once_post_each_incident_once(
        slack: SlackStandIn, state: StateDB, checkout: SLO) -> None:
    pager = notifier(state, slack)
    regions = [f"r{i}" for i in range(5)]

    def fire(region: str, repeat: int) -> None:  # the evaluator and the webhook, racing
        for minute in range(3):
            pager.handle(alert_context(checkout, minute, region=region,
                                       burn=(20.0 + minute + repeat / 10, 25.0)))

    def run(work: list[threading.Thread]) -> None:
        for thread in work:
            thread.start()
        for thread in work:
            thread.join()

    run([threading.Thread(target=fire, args=(region, repeat))
         for region in regions for repeat in range(2)])
    run([threading.Thread(target=pager.handle,
                          args=(alert_context(checkout, 10, region=region, firing=False),))
         for region in regions])
    posts = slack.posts()
    assert sorted(header(p.params["blocks"]).split("region=")[1] for p in posts) == [
        f"{region})" for region in regions]
    for post in posts:
        assert header(slack.messages[post.answer["ts"]].blocks).startswith("\u2705 RESOLVED")
        assert len(slack.replies(post.answer["ts"])) == 1
    assert all(r.ok for r in slack.requests) and pager.outbox_depth() == 0


# --- a broken set-up


def test_a_bad_token_is_a_clear_error_and_the_page_waits_for_the_fix(
        slack: SlackStandIn, state: StateDB, checkout: SLO,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "xoxb-revoked-9876543210"
    with pytest.raises(NotifyError) as refused:
        notifier(state, slack, token=wrong).handle(alert_context(checkout))
    message = str(refused.value)
    assert "invalid_auth" in message and "slack.token" in message and "xoxb-..." in message
    fixed = notifier(state, slack)
    assert fixed.outbox_depth() == 1
    assert fixed.flush().sent == 1
    assert len(slack.posts()) == 1
    assert wrong not in message and wrong not in caplog.text and TOKEN not in caplog.text


def test_an_unknown_channel_is_a_clear_error_and_other_pages_still_go(
        slack: SlackStandIn, state: StateDB, checkout: SLO) -> None:
    broken_route = engine_config(page="C0GONE").channel_for
    pager = notifier(state, slack, route=broken_route)
    with pytest.raises(NotifyError) as refused:
        pager.handle(alert_context(checkout))
    message = str(refused.value)
    assert "chat.postMessage to C0GONE (channel_not_found)" in message
    assert "slack.owners" in message
    pager.handle(alert_context(checkout, severity="ticket", windows=("1d", "2h")))
    assert [p.params["channel"] for p in slack.posts()] == ["C0TICKET"]
    assert pager.outbox_depth() == 0
    requests = len(slack.requests)
    pager.handle(alert_context(checkout, 1, firing=False))  # nothing was posted to resolve
    assert len(slack.requests) == requests
    fixed = notifier(state, slack)  # routing fixed: the next firing pages
    fixed.handle(alert_context(checkout, 2))
    assert [p.params["channel"] for p in slack.posts()] == ["C0TICKET", "C0PAGE"]


def test_an_owner_without_a_channel_is_a_config_error_not_a_silent_drop(
        slack: SlackStandIn, state: StateDB, checkout: SLO) -> None:
    pager = notifier(state, slack)
    with pytest.raises(ConfigError, match="no Slack channel for owner 'payments'"):
        pager.handle(alert_context(replace(checkout, owner="payments")))
    assert pager.outbox_depth() == 0 and slack.requests == []
    pager.handle(alert_context(checkout))  # nothing half-recorded: the next firing pages
    assert len(slack.posts()) == 1


def test_an_oversized_page_goes_through_within_block_kits_limits(
        slack: SlackStandIn, state: StateDB, checkout: SLO) -> None:
    context = alert_context(checkout)
    assert context.correlation is not None
    changes = tuple(Change(time=T0 - timedelta(minutes=20 + i), service="checkout",
                           kind="deploy", version=f"v{i}", description="y" * 1500)
                    for i in range(200))
    huge = replace(context, slo=replace(checkout, description="z" * 10_000),
                   correlation=replace(context.correlation, changes=changes,
                                       suspect=changes[0]))
    notifier(state, slack).handle(huge)
    (post,) = slack.posts()  # the stand-in refuses what Slack would refuse as invalid_blocks
    more = block(post.params["blocks"], "changes_more")["elements"][0]["text"]
    assert more.startswith("+") and " more changes" in more


# --- notices


def test_a_notice_is_sent_once_per_key_with_its_chart(slack: SlackStandIn, state: StateDB) -> None:
    pager = notifier(state, slack)
    chart = tiny_png()
    digest = SlackMessage(text="Daily SLO digest", blocks=[
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Daily SLO digest*"}}])
    assert pager.send_notice("C0NOTICE", digest, "digest/2026-05-12", ("budget.png", chart))
    assert not pager.send_notice("C0NOTICE", digest, "digest/2026-05-12", ("budget.png", chart))
    (post,) = slack.posts()
    assert post.params["channel"] == "C0NOTICE"
    (asked,) = slack.calls("files.getUploadURLExternal")
    assert asked.params["filename"] == "budget.png" and asked.params["length"] == str(len(chart))
    (upload,) = slack.uploads.values()
    assert (upload.content, upload.channel, upload.title) == (chart, "C0NOTICE",
                                                              "Daily SLO digest")
    assert [r.method for r in slack.requests] == [
        "chat.postMessage", "files.getUploadURLExternal", "upload",
        "files.completeUploadExternal"]
    assert pager.has_notice("digest/2026-05-12") and not pager.has_notice("digest/2026-05-13")
    assert pager.send_notice("C0NOTICE", digest, "digest/2026-05-13", ("budget.png", chart),
                             title="Burn-down of checkout/availability")
    assert sorted(u.title or "" for u in slack.uploads.values()) == [
        "Burn-down of checkout/availability", "Daily SLO digest"]


def test_delivered_calls_are_pruned_but_what_an_open_incident_needs_stays(
        slack: SlackStandIn, state: StateDB, checkout: SLO) -> None:
    pager = Notifier(state, delivery(slack), engine_config().channel_for,
                     retention=timedelta(0))  # everything delivered is old enough
    pager.handle(alert_context(checkout, 0, region="eu"))
    pager.handle(alert_context(checkout, 0, region="us"))
    pager.handle(alert_context(checkout, 30, firing=False, region="us"))
    assert pager.send_notice("C0NOTICE", SlackMessage(text="digest", blocks=[]), "digest/1",
                             ("chart.png", tiny_png()))
    kept = state.query("SELECT kind, content FROM notify_outbox")
    assert [row["kind"] for row in kept] == ["post"]  # the open eu incident's page
    assert state.query("SELECT incident_key FROM notify_incidents")[0]["incident_key"] \
        .endswith("region=eu/page")
    pager.handle(alert_context(checkout, 5, burn=(30.0, 40.0), region="eu"))  # still updatable
    pager.handle(alert_context(checkout, 50, firing=False, region="eu"))
    (eu,) = [p for p in slack.posts() if "region=eu" in p.params["text"]]
    assert header(slack.messages[eu.answer["ts"]].blocks).startswith("\u2705 RESOLVED")
    assert len(slack.replies(eu.answer["ts"])) == 1
    assert state.query("SELECT COUNT(*) AS n FROM notify_outbox")[0]["n"] == 0


def test_a_chart_is_not_kept_once_slack_has_it(slack: SlackStandIn, state: StateDB) -> None:
    pager = notifier(state, slack)
    assert pager.send_notice("C0NOTICE", SlackMessage(text="digest", blocks=[]), "digest/1",
                             ("chart.png", tiny_png()))
    (upload,) = state.query("SELECT state, content FROM notify_outbox WHERE kind = 'upload'")
    assert upload["state"] == "sent" and upload["content"] is None


# --- the dry run and notify-test


def test_a_dry_run_shows_the_lifecycle_in_the_terminal(state: StateDB, checkout: SLO) -> None:
    console = Console(record=True, width=120)
    pager = Notifier(state, DryRunDelivery(console), engine_config().channel_for)
    pager.handle(alert_context(checkout, 0))
    pager.handle(alert_context(checkout, 42, firing=False))
    shown = console.export_text()
    assert "post to C0PAGE" in shown and "PAGE: checkout / checkout-success" in shown
    assert "update of " in shown and "RESOLVED PAGE" in shown
    assert "reply in the thread of" in shown and "Resolved after 42m" in shown
    assert isinstance(delivery_from_config(SlackConfig(dry_run=True)), DryRunDelivery)


def write_config(tmp_path: Path, slack: SlackStandIn) -> Path:
    path = tmp_path / "slo-engine.yaml"
    path.write_text("apiVersion: slo-engine/v1\nkind: EngineConfig\n"
                    f"prometheus: {{url: '{PROMETHEUS}'}}\n"
                    f"slack:\n  token: ${{SLACK_BOT_TOKEN}}\n  base_url: {slack.url}\n"
                    "  retries: 1\n")
    return path


def test_notify_test_sends_a_sample_page(slack: SlackStandIn, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
    code = main(["notify-test", "--channel", "#checkout-oncall", "--config",
                 str(write_config(tmp_path, slack))])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("sample page sent to C0PAGE (ts ")
    assert "as slo-engine in workspace Stand-in" in out
    assert [r.method for r in slack.requests] == ["auth.test", "chat.postMessage"]
    (post,) = slack.posts()
    assert [b.get("block_id") for b in post.params["blocks"]][:4] == [
        "header", "broken", "impact", "links"]
    assert PROMETHEUS in block(post.params["blocks"], "links")["text"]["text"]


@pytest.mark.parametrize(("token", "channel", "expected"), [
    ("xoxb-not-the-one-123", "C0PAGE", "Slack refused the token (invalid_auth"),
    (TOKEN, "C0NOPE", "chat.postMessage to C0NOPE (channel_not_found)"),
])
def test_notify_test_explains_a_broken_set_up_without_a_traceback(
        slack: SlackStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], token: str, channel: str, expected: str) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", token)
    code = main(["notify-test", "--channel", channel, "--config",
                 str(write_config(tmp_path, slack))])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.startswith("error: ") and expected in captured.err
    assert "Traceback" not in captured.err and token not in captured.err + captured.out


def test_notify_test_reports_slack_down(slack: SlackStandIn, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
    config = write_config(tmp_path, slack)
    slack.answer_500(10)
    assert main(["notify-test", "--channel", "C0PAGE", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "error: Slack answered auth.test with HTTP 500 after 1 retries" in err


def test_notify_test_dry_run_sends_nothing(slack: SlackStandIn,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    assert main(["notify-test", "--channel", "C0PAGE", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "post to C0PAGE" in out and "Roll back:" in out
    assert slack.requests == []


def test_notify_test_without_a_token_says_where_to_put_one(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    assert main(["notify-test", "--channel", "C0PAGE"]) == 1
    assert "export SLACK_BOT_TOKEN" in capsys.readouterr().err


def tiny_png() -> bytes:
    """A valid 1x1 PNG, so the upload carries what a digest chart would."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b""))
