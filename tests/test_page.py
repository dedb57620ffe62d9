"""The page's content, asserted on its Block Kit structure: sections, fields, links, the
suspect and its rollback, and Block Kit's limits however large the input."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slo_engine.changes.correlation import Correlation
from slo_engine.changes.events import Change
from slo_engine.paging.blocks import MAX_HEADER, as_plain_text
from slo_engine.paging.page import (
    SUSPECT_MARK,
    PageContext,
    mark_resolved,
    render_page,
    render_resolution,
    sample_context,
)
from slo_engine.spec.loader import load_services
from slo_engine.spec.model import SLO
from tests.support.slack_standin import block_kit_problems

ROOT = Path(__file__).resolve().parents[1]
AT = datetime(2026, 5, 12, 14, 20, tzinfo=UTC)
ONSET = AT - timedelta(minutes=14)


@pytest.fixture(scope="module")
def checkout() -> SLO:
    """The example spec's SLO, as the engine loads it."""
    (service,) = load_services([ROOT / "slo_definitions/checkout.yaml"])
    return service.slos[0]


def change(minutes_before_onset: float, kind: str = "deploy", service: str = "checkout",
           **fields: Any) -> Change:
    return Change.model_validate({"time": ONSET - timedelta(minutes=minutes_before_onset),
                                  "service": service, "kind": kind, **fields})


def context_with(slo: SLO, changes: list[Change], suspect: Change | None,
                 rollback: str | None = None, **alert_fields: Any) -> PageContext:
    base = sample_context(AT, prometheus_url="http://prometheus.example:9090/")
    correlation = Correlation(onset=ONSET, changes=tuple(changes), suspect=suspect,
                              rollback_command=rollback, lookback_seconds=6 * 3600)
    return replace(base, slo=slo, alert=replace(base.alert, **alert_fields),
                   correlation=correlation)


def block(blocks: list[dict[str, Any]], block_id: str) -> dict[str, Any]:
    return next(b for b in blocks if b.get("block_id") == block_id)


def field_texts(section: dict[str, Any]) -> dict[str, str]:
    """Section fields as {title: value}."""
    pairs = (f["text"].split("\n", 1) for f in section["fields"])
    return {title.strip("*"): value for title, value in pairs}


@pytest.fixture
def deploy() -> Change:
    return change(6, version="web-api:2026.05.12-8f3a91c",
                  previous_version="web-api:2026.05.10-41c2d2a", author="ci",
                  url="https://ci.example.com/run/812", description="checkout v2 behind flag")


@pytest.fixture
def page(checkout: SLO, deploy: Change) -> dict[str, Any]:
    changes = [change(2, "migration", version="orders-0042"), deploy,
               change(180, "feature_flag", service="api", version="fast-3ds=on")]
    message = render_page(context_with(checkout, changes, deploy, deploy.rollback()))
    return {"text": message.text, "blocks": message.blocks}


def test_the_sections_come_in_the_order_on_call_reads_them(page: dict[str, Any]) -> None:
    ids = [b.get("block_id", b["type"]) for b in page["blocks"]]
    assert ids == ["header", "broken", "impact", "links", "divider", "changes", "suspect",
                   "owner"]
    header = page["blocks"][0]
    assert header["type"] == "header"
    assert header["text"]["text"] == "\U0001f534 PAGE: checkout / checkout-success (region=eu)"


def test_what_is_broken_shows_the_sli_now_and_both_burn_rates_against_the_threshold(
        page: dict[str, Any]) -> None:
    broken = block(page["blocks"], "broken")
    fields = field_texts(broken)
    # 26x over 5m at a 0.5% budget is an error ratio of 13%: the SLI now is 87%
    assert fields["SLI now (5m)"] == "87.00% (objective 99.5%)"
    assert fields["SLI over 30d"] == "99.81%"  # 1 - 37% of a 0.5% budget
    assert fields["Burn rate 1h"] == "21.3x (fires above 14.4x)"
    assert fields["Burn rate 5m"] == "26.0x (fires above 14.4x)"
    assert "page tier 1h/5m" in broken["text"]["text"]


def test_why_it_matters_gives_the_budget_left_its_exhaustion_and_the_slos_purpose(
        page: dict[str, Any]) -> None:
    impact = block(page["blocks"], "impact")
    fields = field_texts(impact)
    assert fields["Error budget left"] == "63.0% of 30d"
    assert fields["Budget exhausted"] == "in 21h18m at the current rate"
    assert ">Valid checkout sessions completed without internal error" in impact["text"]["text"]
    assert "spends 2% of the budget in 1h" in impact["text"]["text"]


def test_an_exhausted_budget_says_so_instead_of_a_forecast(checkout: SLO) -> None:
    base = context_with(checkout, [], None)
    assert base.status is not None
    spent = replace(base, status=replace(base.status, error_budget_remaining=-0.2,
                                         time_to_exhaustion_s=None))
    fields = field_texts(block(render_page(spent).blocks, "impact"))
    assert fields == {"Error budget left": "-20.0% of 30d", "Budget exhausted": "already exhausted"}


def test_where_to_look_links_runbook_dashboard_and_the_burn_in_prometheus(
        page: dict[str, Any]) -> None:
    links = dict((label, url) for url, label in
                 re.findall(r"<([^|>]+)\|([^>]+)>", block(page["blocks"], "links")["text"]["text"]))
    assert links["Runbook"] == "https://runbooks.example.com/checkout"
    assert links["Dashboard"] == "https://grafana.example.com/d/checkout"
    graph = urlsplit(links["Burn rate in Prometheus (1h/5m)"])
    assert (graph.netloc, graph.path) == ("prometheus.example:9090", "/graph")
    query = parse_qs(graph.query)
    selector = '{slo="checkout-success", service="checkout", region="eu"}'
    assert query["g0.expr"] == [f"slo:error_ratio:rate1h{selector} / 0.005"]
    assert query["g1.expr"] == [f"slo:error_ratio:rate5m{selector} / 0.005"]
    assert query["g0.tab"] == ["0"]


def test_a_missing_runbook_is_called_out_with_the_fix(checkout: SLO) -> None:
    bare = replace(checkout, runbook_url=None, dashboard_url=None)
    text = block(render_page(context_with(bare, [], None)).blocks, "links")["text"]["text"]
    assert "no runbook: add runbook_url" in text
    assert "Dashboard" not in text


def test_what_changed_lists_changes_newest_first_and_marks_only_the_suspect(
        page: dict[str, Any]) -> None:
    lines = block(page["blocks"], "changes")["text"]["text"].split("\n")
    assert lines[0].startswith("*What changed* in the 6h before the onset at <!date^")
    assert [line.split("*")[3] if line.startswith(SUSPECT_MARK) else line.split("*")[1]
            for line in lines[1:]] == ["migration", "deploy", "feature flag"]
    marked = [line for line in lines if SUSPECT_MARK in line]
    assert len(marked) == 1
    assert "`web-api:2026.05.12-8f3a91c` (was `web-api:2026.05.10-41c2d2a`)" in marked[0]
    assert "<https://ci.example.com/run/812|details>" in marked[0]
    assert "of *api* (dependency)" in lines[3]


def test_the_suspect_block_gives_its_rollback_command_in_a_code_block(
        page: dict[str, Any]) -> None:
    text = block(page["blocks"], "suspect")["text"]["text"]
    assert text.startswith(SUSPECT_MARK)
    assert "6m before the onset" in text
    assert re.search(r"\*Roll back:\*\n```deploy web-api:2026\.05\.10-41c2d2a```$", text)


def test_a_suspect_without_a_rollback_says_how_to_get_one(checkout: SLO) -> None:
    flag = change(10, "feature_flag", version="new-cart=on")
    text = block(render_page(context_with(checkout, [flag], flag)).blocks,
                 "suspect")["text"]["text"]
    assert "```" not in text
    assert "--rollback-command or --previous-version" in text


def test_no_changes_and_no_history_are_said_plainly(checkout: SLO) -> None:
    quiet = render_page(context_with(checkout, [], None)).blocks
    assert "No changes recorded for checkout, api, authentication." in \
        block(quiet, "changes")["text"]["text"]
    assert "suspect" not in [b.get("block_id") for b in quiet]
    flag_only = change(30, "migration", version="orders-0042")
    unsuspected = render_page(context_with(checkout, [flag_only], None)).blocks
    assert "*Suspect:* none" in block(unsuspected, "suspect")["text"]["text"]
    unknown = render_page(replace(context_with(checkout, [], None), correlation=None)).blocks
    assert [b.get("block_id") for b in unknown].count("suspect") == 0
    assert "slo-engine changes add" in block(unknown, "changes")["text"]["text"]


def test_the_owner_closes_the_page(page: dict[str, Any]) -> None:
    owner = block(page["blocks"], "owner")
    texts = [e["text"] for e in owner["elements"]]
    assert texts[0] == "Owner: *commerce-platform*"
    assert texts[1].endswith("slo_definitions/checkout.yaml`")


def test_the_fallback_text_leads_with_what_a_lock_screen_needs(page: dict[str, Any]) -> None:
    first = page["text"].split(". ")[0]
    assert first == ("PAGE checkout / checkout-success (region=eu): error budget burning 21.3x "
                     "over 1h and 26.0x over 5m (fires above 14.4x)")
    assert "Roll back: deploy web-api:2026.05.10-41c2d2a" in page["text"]
    assert "Owner: commerce-platform." in page["text"]


def test_a_ticket_looks_different_from_a_page(checkout: SLO) -> None:
    ticket = render_page(context_with(checkout, [], None, severity="ticket", long_window="1d",
                                      short_window="2h", burn_rate_long=3.4,
                                      burn_rate_short=4.0))
    assert ticket.blocks[0]["text"]["text"].startswith("\U0001f7e1 TICKET:")
    assert field_texts(block(ticket.blocks, "broken"))["Burn rate 1d"] == \
        "3.4x (fires above 3x)"


def test_rendering_is_deterministic_and_sensitive_to_the_numbers(checkout: SLO) -> None:
    context = context_with(checkout, [], None)
    assert render_page(context) == render_page(context)
    hotter = replace(context, alert=replace(context.alert, burn_rate_long=30.0))
    assert render_page(hotter) != render_page(context)


def test_text_from_specs_and_changes_cannot_inject_mentions_or_links(checkout: SLO) -> None:
    sneaky = change(5, version="v2", description="<!channel> & <https://evil|click>")
    slo = replace(checkout, description="Fails when <b> & co")
    blocks = render_page(context_with(slo, [sneaky], sneaky)).blocks
    everything = repr(blocks)
    assert "<!channel>" not in everything
    assert "&lt;!channel&gt; &amp; &lt;https://evil|click&gt;" in everything
    assert "Fails when &lt;b&gt; &amp; co" in block(blocks, "impact")["text"]["text"]


def test_an_oversized_page_is_cut_to_block_kits_limits_with_plus_n_more(
        checkout: SLO) -> None:
    changes = [change(minute, "deploy" if minute % 3 else "migration", version=f"v{minute}" * 30,
                      author="release-bot" * 18, description="x" * 2000)
               for minute in range(1, 201)]
    suspect = changes[150]
    slo = replace(checkout, description="d" * 10_000, owner="o" * 500)
    message = render_page(context_with(slo, changes, suspect, "rollback " + "r" * 5000))
    assert block_kit_problems({"text": message.text, "blocks": message.blocks}) == []
    assert len(message.blocks) <= 50 and len(message.text) <= 3000
    shown = block(message.blocks, "changes")["text"]["text"].count("\n")
    more = block(message.blocks, "changes_more")["elements"][0]["text"]
    assert shown >= 1
    assert more.startswith(f"+{200 - shown} more changes in the 6h before the onset")
    assert block(message.blocks, "impact")["text"]["text"].endswith("1h.")
    assert "d" * 2500 in block(message.blocks, "impact")["text"]["text"]
    suspect_text = block(message.blocks, "suspect")["text"]["text"]
    assert "`v151v151" in suspect_text and "```rollback rrr" in suspect_text
    assert suspect_text.endswith("…```")


_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=600)
_line = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=600)


@settings(max_examples=60, deadline=None)
@given(count=st.integers(0, 120), description=_text, version=_line, author=_line,
       note=_text, owner=st.text(min_size=1, max_size=300), group=_text)
def test_any_input_renders_within_block_kits_limits(count: int, description: str, version: str,
                                                    author: str, note: str, owner: str,
                                                    group: str) -> None:
    (service,) = load_services([ROOT / "slo_definitions/checkout.yaml"])
    slo = replace(service.slos[0], description=description, owner=owner)
    changes = [Change(time=ONSET - timedelta(minutes=i + 1), service="checkout", kind="deploy",
                      version=version[:500] or None, author=author[:200] or None,
                      description=note[:2000] or None, rollback_command=note[:2000] or None)
               for i in range(count)]
    suspect = changes[count // 2] if changes else None
    context = context_with(slo, changes, suspect, suspect.rollback() if suspect else None,
                           group=(("region", group),))
    message = render_page(context)
    assert block_kit_problems({"text": message.text, "blocks": message.blocks}) == []
    assert len(message.blocks[0]["text"]["text"]) <= MAX_HEADER
    assert len(message.text) <= 3000
    if count:
        shown = block(message.blocks, "changes")["text"]["text"].count("\n")
        hidden = count - shown
        more = [b for b in message.blocks if b.get("block_id") == "changes_more"]
        assert (more[0]["elements"][0]["text"].startswith(f"+{hidden} more") if hidden
                else not more)


def test_the_resolution_reply_gives_the_duration_and_the_budget_spent(checkout: SLO) -> None:
    context = context_with(checkout, [], None, firing=False, at=AT + timedelta(minutes=42))
    reply = render_resolution(context, duration_s=42 * 60, budget_spent=0.031)
    (section,) = reply.blocks
    text = section["text"]["text"]
    assert text.startswith("\u2705 *Resolved* after *42m* at <!date^")
    assert "it spent *3.1%* of the 30d error budget; *63.0%* left." in text
    assert reply.text.startswith("\u2705 Resolved after 42m at 2026-05-12 15:02 UTC")
    unknown = render_resolution(context, duration_s=42 * 60, budget_spent=None)
    assert "budget spent: unknown" in unknown.text


def test_a_resolved_page_keeps_its_content_under_a_resolved_banner(
        page: dict[str, Any], checkout: SLO, deploy: Change) -> None:
    original = render_page(context_with(checkout, [deploy], deploy, deploy.rollback()))
    resolved = mark_resolved(original, AT + timedelta(minutes=42), 42 * 60)
    assert resolved.blocks[0]["text"]["text"] == \
        "\u2705 RESOLVED PAGE: checkout / checkout-success (region=eu)"
    assert resolved.blocks[1]["block_id"] == "resolved"
    assert "after *42m*" in resolved.blocks[1]["text"]["text"]
    assert resolved.blocks[2:] == original.blocks[1:]
    assert resolved.text.startswith("RESOLVED after 42m: PAGE checkout")
    again = mark_resolved(resolved, AT + timedelta(minutes=50), 50 * 60)
    assert [b.get("block_id") for b in again.blocks].count("resolved") == 1
    assert again.blocks[0] == resolved.blocks[0]


def test_plain_text_shows_the_page_as_a_terminal_would(page: dict[str, Any],
                                                       checkout: SLO, deploy: Change) -> None:
    text = as_plain_text(render_page(context_with(checkout, [deploy], deploy,
                                                  deploy.rollback())))
    assert text.startswith("\U0001f534 PAGE: checkout / checkout-success (region=eu)\n====")
    assert "  Burn rate 1h: 21.3x (fires above 14.4x)\n" in text
    assert "Runbook (https://runbooks.example.com/checkout)" in text
    assert "Roll back:\n\n    deploy web-api:2026.05.10-41c2d2a" in text
    assert "2026-05-12 14:00 UTC" in text and "<!date" not in text and "*" not in text


def test_a_page_links_the_slos_own_runbook_and_dashboard_over_the_services() -> None:
    (service,) = load_services([ROOT / "tests/spec_cases/good/alert-routing.yaml"])
    own, inherited = service.slos
    for slo, runbook, dashboard in (
            (own, "https://runbooks.example.com/api/availability",
             "https://grafana.example.com/d/api-availability"),
            (inherited, "https://runbooks.example.com/api", None)):
        message = render_page(context_with(slo, [], None))
        links = dict((label, url) for url, label in re.findall(
            r"<([^|>]+)\|([^>]+)>", block(message.blocks, "links")["text"]["text"]))
        assert links["Runbook"] == runbook
        assert links.get("Dashboard") == dashboard
        assert f"Runbook: {runbook}" in message.text
