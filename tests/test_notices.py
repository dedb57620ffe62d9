"""Budget-policy notices (once per threshold per period), the daily digest per owner channel,
and the Prometheus outage notices."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from slo_engine.budget.accounting import BudgetStatus
from slo_engine.paging.blocks import MAX_BLOCKS, MAX_TEXT, SlackMessage, as_plain_text
from slo_engine.paging.notices import (
    BUDGET_THRESHOLDS,
    POLICY,
    budget_notices,
    digest_chart_title,
    digest_messages,
    least_budget,
    outage_message,
    recovery_message,
)
from slo_engine.spec.loader import load_services
from slo_engine.spec.model import SLO

AT = datetime(2026, 5, 12, 9, 0, tzinfo=UTC)
PERIOD = timedelta(days=30)


@pytest.fixture()
def slos(tmp_path: Path) -> dict[tuple[str, str], SLO]:
    found: dict[tuple[str, str], SLO] = {}
    for service, owner in (("checkout", "shop"), ("cart", "shop"), ("search", "discovery")):
        document = {"apiVersion": "slo-engine/v1", "service": service, "owner": owner,
                    "runbook_url": f"https://runbooks.example.com/{service}",
                    "slos": [{"name": "success", "objective": 99.9, "sli": {"ratio": {
                        "bad": 'http_requests_total{code=~"5.."}',
                        "total": "http_requests_total", "group_by": ["region"]}}}]}
        path = tmp_path / f"{service}.yaml"
        path.write_text(yaml.safe_dump(document), encoding="utf-8")
        slo = load_services([path])[0].slos[0]
        found[(slo.service, slo.name)] = slo
    return found


def _status(remaining: float | None, service: str = "checkout", group: str = "region=eu",
            at: datetime = AT, burn: float | None = 0.5, state: str = "healthy",
            **changes: Any) -> BudgetStatus:
    status = BudgetStatus(
        service=service, slo="success", group=group, objective=99.9, period="30d",
        period_start=at - PERIOD, at=at, total_events=1e6, bad_events=500, sli=0.9995,
        error_budget_events=1000, error_budget_consumed=None if remaining is None
        else 1 - remaining, error_budget_remaining=remaining, burn_rates={"1h": burn},
        time_to_exhaustion_s=None, time_to_exhaustion_period_avg_s=None,
        status=state,  # type: ignore[arg-type]
        firing=(), partial=False, labels={})
    return replace(status, **changes)


def _key(status: BudgetStatus, threshold: float) -> tuple[str, str, str, float]:
    return (status.service, status.slo, status.group, threshold)


def test_no_notice_while_more_than_half_the_budget_is_left(
        slos: dict[tuple[str, str], SLO]) -> None:
    assert budget_notices([_status(0.5), _status(0.9), _status(1.0)], slos, {}) == []


def test_crossing_half_notifies_once_per_period(slos: dict[tuple[str, str], SLO]) -> None:
    status = _status(0.42)
    [notice] = budget_notices([status], slos, {})
    assert (notice.threshold, notice.crossed, notice.owner) == (0.5, (0.5,), "shop")
    assert notice.key == "budget/checkout/success/region=eu/0.5/20260412T0900"
    text = as_plain_text(notice.message)
    assert "Error budget below 50%: checkout / success (region=eu)" in text
    assert "42.0% of 30d" in text
    assert POLICY[0.5] in text
    assert "https://runbooks.example.com/checkout" in str(notice.message.blocks)
    # Sent an hour ago: not again, even a day later while still below 50%.
    sent = {_key(status, 0.5): AT - timedelta(hours=1)}
    later = _status(0.41, at=AT + timedelta(days=1))
    assert budget_notices([later], slos, sent) == []
    # A rolling period later the last notice is out of the period: announced again.
    much_later = _status(0.41, at=AT + PERIOD)
    assert [n.threshold for n in budget_notices([much_later], slos, sent)] == [0.5]


def test_each_lower_threshold_is_its_own_crossing(slos: dict[tuple[str, str], SLO]) -> None:
    sent = {_key(_status(0.4), 0.5): AT - timedelta(days=2)}
    [quarter] = budget_notices([_status(0.2)], slos, sent)
    assert (quarter.threshold, quarter.crossed) == (0.25, (0.25,))
    sent[_key(_status(0.2), 0.25)] = AT - timedelta(days=1)
    assert budget_notices([_status(0.01)], slos, sent) == []
    [empty] = budget_notices([_status(0.0)], slos, sent)
    assert empty.threshold == 0.0
    assert "exhausted" in empty.message.text and POLICY[0.0] in empty.message.text


def test_a_fast_drop_sends_one_notice_for_every_threshold_it_passed(
        slos: dict[tuple[str, str], SLO]) -> None:
    [notice] = budget_notices([_status(-0.3)], slos, {})
    assert notice.threshold == 0.0
    assert notice.crossed == BUDGET_THRESHOLDS
    assert "-30.0% of 30d" in as_plain_text(notice.message)


def test_no_notice_without_budget_figures_or_for_unknown_slos(
        slos: dict[tuple[str, str], SLO]) -> None:
    assert budget_notices([_status(None)], slos, {}) == []
    assert budget_notices([_status(0.1, state="no_data")], slos, {}) == []
    assert budget_notices([_status(0.1, service="gone")], slos, {}) == []


def test_groups_of_one_slo_cross_on_their_own(slos: dict[tuple[str, str], SLO]) -> None:
    notices = budget_notices([_status(0.4, group="region=eu"), _status(0.9, group="region=us"),
                              _status(0.1, group="region=ap")], slos, {})
    assert [(n.status.group, n.threshold) for n in notices] == [("region=eu", 0.5),
                                                                ("region=ap", 0.25)]


def _routes(owner: str) -> str:
    return {"shop": "#shop", "discovery": "#discovery"}[owner]


def test_the_digest_goes_to_each_owner_channel_with_its_slos_only(
        slos: dict[tuple[str, str], SLO]) -> None:
    statuses = [_status(0.9, "checkout"), _status(0.3, "cart", burn=4.0, state="burning",
                                                  time_to_exhaustion_s=3 * 86400),
                _status(0.7, "search", burn=2.0)]
    messages = digest_messages(statuses, slos, _routes, AT)
    assert sorted(messages) == ["#discovery", "#shop"]
    shop = as_plain_text(messages["#shop"])
    assert "SLO digest 2026-05-12: shop" in shop
    assert "2 SLOs: 1 burning, 1 healthy." in shop
    assert "search" not in shop
    assert "cart/success (region=eu) burning 4.0x over 1h, 30.0% left, exhausted in 3d" in shop
    table = shop[shop.index("objective"):]
    assert table.index("cart/success") < table.index("checkout/success")  # lowest budget first
    discovery = as_plain_text(messages["#discovery"])
    assert "search/success (region=eu) burning 2.0x" in discovery
    assert messages["#shop"].text.startswith("SLO digest 2026-05-12 for shop: 2 SLOs")


def test_a_digest_without_burners_says_so(slos: dict[tuple[str, str], SLO]) -> None:
    message = digest_messages([_status(0.9)], slos, _routes, AT)["#shop"]
    assert "No SLO burns faster than its budget over 1h." in as_plain_text(message)


def test_a_large_digest_stays_within_block_kit_limits(slos: dict[tuple[str, str], SLO]) -> None:
    statuses = [_status(i / 500, group=f"region=r{i:03d}", burn=float(i)) for i in range(500)]
    message = digest_messages(statuses, slos, _routes, AT)["#shop"]
    assert len(message.blocks) <= MAX_BLOCKS
    texts = [b["text"]["text"] for b in message.blocks if b["type"] == "section"]
    assert all(len(t) <= MAX_TEXT for t in texts)
    shown = "\n".join(texts)
    assert "region=r000" in shown and "region=r499" in shown  # every group is in the table
    worst = shown[shown.index("Worst burners"):shown.index("```")]
    assert worst.count("•") == 5 and "region=r499" in worst.splitlines()[1]


def test_each_digest_charts_its_group_with_the_least_budget_left(
        slos: dict[tuple[str, str], SLO]) -> None:
    cart_us = _status(0.2, "cart", group="region=us")
    statuses = [_status(0.3, "checkout"), _status(0.6, "cart"), cart_us,
                _status(None, "checkout", group="region=us", state="no_data"),
                _status(0.9, "search"), _status(0.1, "unknown")]
    least = least_budget(statuses, slos, _routes)
    assert least == {"#shop": cart_us, "#discovery": statuses[4]}
    assert least_budget([_status(None, state="no_data")], slos, _routes) == {}
    assert digest_chart_title(cart_us) == ("Burn-down of cart/success (region=us): 20.0% of "
                                           "its error budget left, the least in this digest")


def test_outage_and_recovery_notices_name_the_server_and_the_duration() -> None:
    since = AT - timedelta(minutes=12)
    down = outage_message("http://prometheus:9090", since, AT, "connection refused")
    assert isinstance(down, SlackMessage)
    assert "http://prometheus:9090" in down.text and "12m" in down.text
    assert "not a page" in down.text
    assert "connection refused" in as_plain_text(down)
    back = recovery_message("http://prometheus:9090", since, AT + timedelta(minutes=3))
    assert "answers again" in back.text and "15m" in back.text


def test_notices_escape_user_text_and_encode_links_as_pages_do(
        slos: dict[tuple[str, str], SLO]) -> None:
    """The drift the shared Block Kit module closed: the digest's table and the notices'
    links once took names and URLs as they came."""
    odd = _status(0.3, group="path=<admin>&x", burn=4.0, state="burning")
    digest = digest_messages([odd], slos, _routes, AT)["#shop"]
    table = next(b["text"]["text"] for b in digest.blocks
                 if b["type"] == "section" and b["text"]["text"].startswith("```"))
    assert "path=&lt;admin&gt;&amp;x" in table and "<admin>" not in table
    slo = replace(slos[("checkout", "success")], runbook_url="https://rb.example.com/a|b c>")
    notice = budget_notices([odd], {("checkout", "success"): slo}, {})[0]
    elements = [e["text"] for b in notice.message.blocks if b["type"] == "context"
                for e in b["elements"]]
    assert "<https://rb.example.com/a%7Cb%20c%3E|Runbook>" in elements
