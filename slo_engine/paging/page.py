"""The Slack page: what broke, why it matters, where to look, what changed, who owns it.

The on-call engineer's whole experience of the product is this message, read at 3 a.m. on a
phone, so it answers those questions in that order and stays within Block Kit's limits
(cut lists say "+N more" instead of being refused by Slack). Pure: values in, JSON out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from slo_engine.changes.correlation import Correlation
from slo_engine.changes.events import Change
from slo_engine.paging import blocks as kit
from slo_engine.paging.blocks import MAX_TEXT, SlackMessage
from slo_engine.paging.burn_alert import BurnAlert
from slo_engine.spec.burn_rate import AlertTier, budget_literal, tier_of
from slo_engine.spec.conventions import SERVICE_LABEL, SLO_LABEL, error_ratio_metric
from slo_engine.spec.durations import describe_seconds, format_duration, parse_duration
from slo_engine.spec.model import SLO, BoolGaugeSLI, ErrorRatioSLI
from slo_engine.spec.promql import number

if TYPE_CHECKING:
    from slo_engine.budget.accounting import BudgetStatus

MAX_CHANGE_LINES = 10  # more is noise at 3 a.m.; the rest are one command away
MAX_VALUE = 80  # a version or author inside a change line
MAX_NOTE = 200  # a change's description inside its line

_EMOJI = {"page": "\U0001f534", "ticket": "\U0001f7e1"}
RESOLVED_EMOJI = "\u2705"
SUSPECT_MARK = "\U0001f6a8 *Suspect*"


@dataclass(frozen=True)
class PageContext:
    """Everything one page shows: the alert, its SLO, the budget now and what changed."""

    alert: BurnAlert
    slo: SLO
    status: BudgetStatus | None  # the SLO group's budget now
    correlation: Correlation | None
    prometheus_url: str | None = None  # for a graph link of the alert's burn


def render_page(context: PageContext) -> SlackMessage:
    """The page of a firing alert. Deterministic: the same state renders the same JSON, so a
    repeat that changes nothing is recognised and not sent."""
    alert, slo = context.alert, context.slo
    tier = tier_of(slo.tiers, alert.severity, alert.long_window, alert.short_window)
    blocks: list[kit.Block] = [
        kit.header(f"{_EMOJI.get(alert.severity, '')} {alert.severity.upper()}: "
                   f"{_title(alert)}", "header"),
        _broken(context, tier),
        _impact(context),
        _links(context, tier),
        kit.divider(),
        *_changes(context),
        _owner(context),
    ]
    return kit.message(_fallback(context, tier), blocks)


def render_resolution(context: PageContext, duration_s: float,
                      budget_spent: float | None) -> SlackMessage:
    """The thread reply when an incident resolves: how long it lasted and what it cost."""
    alert, status = context.alert, context.status
    lasted = describe_seconds(max(duration_s, 0))
    spent = ("budget spent: unknown (no budget figures at the start or the end)"
             if budget_spent is None else
             f"it spent *{kit.percent(budget_spent)}* of the {context.slo.period} error budget")
    left = ("" if status is None or status.error_budget_remaining is None else
            f"; *{kit.percent(status.error_budget_remaining)}* left")
    text = (f"{RESOLVED_EMOJI} *Resolved* after *{lasted}* at {kit.when(alert.at)}: "
            f"{kit.escape(_title(alert))}; {spent}{left}.")
    return kit.message(kit.plain(text), [kit.section(text, block_id="resolution")])


def mark_resolved(message: SlackMessage, at: datetime, duration_s: float) -> SlackMessage:
    """The page as it last fired, marked resolved: what changed and the rollback stay visible
    for the post-incident review, with a banner saying the numbers are from the last update."""
    lasted = describe_seconds(max(duration_s, 0))
    blocks = [dict(block) for block in message.blocks if block.get("block_id") != "resolved"]
    banner = kit.section(f"{RESOLVED_EMOJI} *Resolved* at {kit.when(at)} after *{lasted}*. "
                         "The figures below are from the last update while it fired.",
                         block_id="resolved")
    position = 0
    if blocks and blocks[0].get("type") == "header":
        title = str(blocks[0]["text"]["text"])
        for emoji in (*_EMOJI.values(), RESOLVED_EMOJI):
            title = title.removeprefix(f"{emoji} ")
        if not title.startswith("RESOLVED"):
            title = f"RESOLVED {title}"
        blocks[0] = kit.header(f"{RESOLVED_EMOJI} {title}", "header")
        position = 1
    blocks.insert(position, banner)
    text = message.text if message.text.startswith("RESOLVED") else (
        f"RESOLVED after {lasted}: {message.text}")
    return kit.message(text, blocks)


def graph_url(prometheus_url: str, slo: SLO, alert: BurnAlert) -> str:
    """Prometheus's graph page with the alert's burn rate in both windows, over a span that
    shows the onset: the same recorded series the alert reads, divided by the budget."""
    matchers = [(SLO_LABEL, slo.name), (SERVICE_LABEL, slo.service), *alert.group]
    selector = ", ".join(f'{name}="{_promql_string(value)}"' for name, value in matchers)
    span = max(6 * 3600.0, 2 * parse_duration(alert.long_window))
    parameters: dict[str, str] = {}
    for index, window in enumerate((alert.long_window, alert.short_window)):
        parameters[f"g{index}.expr"] = (f"{error_ratio_metric(window)}{{{selector}}} / "
                                        f"{budget_literal(slo.error_budget)}")
        parameters[f"g{index}.tab"] = "0"
        parameters[f"g{index}.range_input"] = format_duration(span)
    return f"{prometheus_url.rstrip('/')}/graph?{urlencode(parameters)}"


def sample_context(at: datetime, prometheus_url: str | None = None) -> PageContext:
    """A page with every section filled, for `notify-test`: checking a set-up shows what a
    real page will look like in the channel."""
    from slo_engine.budget.accounting import BudgetStatus
    from slo_engine.spec.model import RatioSLI
    from slo_engine.spec.promql import parse_selector

    slo = SLO(
        service="checkout", name="checkout-success",
        description="Valid checkout sessions completed without internal error",
        objective=0.995, period="30d", period_seconds=30 * 86400.0,
        sli=RatioSLI(total=parse_selector('checkout_sessions_total{outcome!="invalid"}'),
                     bad=parse_selector('checkout_sessions_total{outcome="internal_error"}'),
                     group_by=("region",)),
        labels=((SLO_LABEL, "checkout-success"), (SERVICE_LABEL, "checkout")),
        tiers=(AlertTier("page", "1h", "5m", 3600, 300, 0.02, 14.4),),
        min_events=0, data_absent=False, owner="commerce-platform",
        runbook_url="https://runbooks.example.com/checkout",
        dashboard_url="https://grafana.example.com/d/checkout", source_file="sample.yaml")
    alert = BurnAlert(service="checkout", slo="checkout-success", group=(("region", "eu"),),
                      severity="page", long_window="1h", short_window="5m", firing=True,
                      at=at, burn_rate_long=21.3, burn_rate_short=26.0)
    status = BudgetStatus(
        service="checkout", slo="checkout-success", group="region=eu", objective=99.5,
        period="30d", period_start=at - timedelta(days=30), at=at, total_events=1.2e7,
        bad_events=22_200, sli=0.99815, error_budget_events=60_000,
        error_budget_consumed=0.37, error_budget_remaining=0.63,
        burn_rates={"5m": 26.0, "1h": 21.3}, time_to_exhaustion_s=0.63 * 30 * 86400 / 21.3,
        time_to_exhaustion_period_avg_s=None, status="burning", firing=("page 1h/5m",),
        partial=False, labels={"region": "eu"})
    onset = at - timedelta(minutes=14)
    deploy = Change(time=onset - timedelta(minutes=6), service="checkout", kind="deploy",
                    version="web-api:2026.05.12-8f3a91c",
                    previous_version="web-api:2026.05.10-41c2d2a", commit="8f3a91c",
                    author="ci", url="https://ci.example.com/run/812",
                    description="checkout v2 behind flag", source="cli")
    flag = Change(time=onset - timedelta(hours=3), service="payments", kind="feature_flag",
                  version="fast-3ds=on", author="alice", source="cli")
    correlation = Correlation(onset=onset, changes=(deploy, flag), suspect=deploy,
                              rollback_command=deploy.rollback(), lookback_seconds=6 * 3600)
    return PageContext(alert=alert, slo=slo, status=status, correlation=correlation,
                       prometheus_url=prometheus_url)


# --- the sections, in reading order


def _title(alert: BurnAlert) -> str:
    group = f" ({alert.group_key})" if alert.group else ""
    return f"{alert.service} / {alert.slo}{group}"


def _broken(context: PageContext, tier: AlertTier | None) -> kit.Block:
    alert, slo, status = context.alert, context.slo, context.status
    long_burn = _burn_in(context, alert.long_window, alert.burn_rate_long)
    short_burn = _burn_in(context, alert.short_window, alert.burn_rate_short)
    threshold = f"{number(round(tier.burn_rate, 2))}x" if tier else "its threshold"
    sli_now = None if short_burn is None else max(0.0, 1 - short_burn * slo.error_budget)
    what = (f"*What is broken*\nThe error budget is burning *{kit.burn(long_burn)}* as fast as "
            f"the objective allows over {alert.long_window}, and *{kit.burn(short_burn)}* over "
            f"{alert.short_window}: the {alert.severity} tier {alert.tier} fires above "
            f"{threshold} in both.{_sli_kind(slo)}")
    fields = [
        f"*SLI now ({alert.short_window})*\n{_sli(sli_now, slo)} "
        f"(objective {slo.objective_percent}%)",
        f"*SLI over {slo.period}*\n{_sli(status.sli if status else None, slo)}",
        f"*Burn rate {alert.long_window}*\n{kit.burn(long_burn)} (fires above {threshold})",
        f"*Burn rate {alert.short_window}*\n{kit.burn(short_burn)} (fires above {threshold})",
    ]
    return kit.section(what, fields, "broken")


def _sli_kind(slo: SLO) -> str:
    """What the SLI counts, where it is not requests: a probe's samples, or minutes."""
    if isinstance(slo.sli, BoolGaugeSLI):
        return (f"\nThe SLI counts `{slo.sli.metric.metric}` samples, each 0 a failed one, "
                "not requests.")
    if isinstance(slo.sli, ErrorRatioSLI):
        return ("\nThe SLI is its query's error ratio averaged over time: a quiet minute "
                "weighs as much as a busy one.")
    return ""


def _impact(context: PageContext) -> kit.Block:
    slo, status, alert = context.slo, context.status, context.alert
    remaining = status.error_budget_remaining if status else None
    if remaining is not None and remaining <= 0:
        exhaustion = "already exhausted"
    elif status is None or status.time_to_exhaustion_s is None:
        exhaustion = "-"
    else:
        exhaustion = f"in {describe_seconds(status.time_to_exhaustion_s)} at the current rate"
    tier = tier_of(slo.tiers, alert.severity, alert.long_window, alert.short_window)
    cost = (f"\nA burn of {number(round(tier.burn_rate, 2))}x spends "
            f"{number(tier.budget_fraction * 100)}% of the budget in {tier.long_window}."
            if tier else "")
    heading = "*Why it matters*"
    description = ""
    if slo.description:
        room = MAX_TEXT - len(heading) - len(cost) - 3
        description = "\n>" + kit.escape_cut(slo.description.replace("\n", " "), room)
    fields = [
        f"*Error budget left*\n{kit.percent(remaining)} of {slo.period}",
        f"*Budget exhausted*\n{exhaustion}",
    ]
    return kit.section(heading + description + cost, fields, "impact")


def _links(context: PageContext, tier: AlertTier | None) -> kit.Block:
    slo = context.slo
    links = [(slo.runbook_url, "Runbook"), (slo.dashboard_url, "Dashboard")]
    if context.prometheus_url:
        links.append((graph_url(context.prometheus_url, slo, context.alert),
                      f"Burn rate in Prometheus ({context.alert.tier})"))
    shown = [f"• {kit.link(url, label)}" for url, label in links if url]
    if not slo.runbook_url:
        shown.append("• no runbook: add runbook_url to the SLO file "
                     f"{kit.escape(slo.source_file)}")
    return kit.section("*Where to look*\n" + "\n".join(shown), block_id="links")


def _changes(context: PageContext) -> list[kit.Block]:
    correlation, slo = context.correlation, context.slo
    if correlation is None:
        return [kit.section("*What changed*\nNo change history was consulted for this alert: "
                            "record deploys with `slo-engine changes add`.", block_id="changes")]
    lookback = describe_seconds(correlation.lookback_seconds)
    onset = (f"the onset at {kit.when(correlation.onset)}" if correlation.onset
             else "the alert (onset unknown)")
    heading = f"*What changed* in the {lookback} before {onset}, newest first"
    if not correlation.changes:
        services = ", ".join((slo.service, *slo.depends_on))
        return [kit.section(f"{heading}\nNo changes recorded for {kit.escape(services)}.",
                            block_id="changes")]
    text, shown = heading, 0
    for change in correlation.changes[:MAX_CHANGE_LINES]:
        line = "\n" + _change_line(change, slo, correlation)
        if len(text) + len(line) > MAX_TEXT:
            break
        text += line
        shown += 1
    blocks = [kit.section(text, block_id="changes")]
    hidden = len(correlation.changes) - shown
    if hidden:
        blocks.append(kit.context([
            f"+{hidden} more change{'s' if hidden != 1 else ''} in the {lookback} before the "
            "onset: `slo-engine changes list`"], "changes_more"))
    blocks.append(_suspect(correlation))
    return blocks


def _change_line(change: Change, slo: SLO, correlation: Correlation) -> str:
    suspect = correlation.suspect is not None and change.identity == correlation.suspect.identity
    parts = [f"{SUSPECT_MARK} ·" if suspect else "•", kit.when(change.time),
             f"*{change.kind.replace('_', ' ')}*"]
    if change.service != slo.service:
        parts.append(f"of *{kit.escape_cut(change.service, MAX_VALUE)}* (dependency)")
    if change.version:
        parts.append(f"`{kit.escape_cut(change.version, MAX_VALUE)}`")
    if change.previous_version:
        parts.append(f"(was `{kit.escape_cut(change.previous_version, MAX_VALUE)}`)")
    if change.author:
        parts.append(f"by {kit.escape_cut(change.author, MAX_VALUE)}")
    if change.url and len(change.url) <= MAX_TEXT // 4:
        parts.append(kit.link(change.url, "details"))
    if change.description:
        parts.append(f"— {kit.escape_cut(change.description.replace(chr(10), ' '), MAX_NOTE)}")
    return " ".join(parts)


def _suspect(correlation: Correlation) -> kit.Block:
    suspect = correlation.suspect
    if suspect is None:
        return kit.section("*Suspect:* none — no deploy, config or flag change landed "
                           "shortly before the onset.", block_id="suspect")
    before = ""
    if correlation.onset is not None:
        before = f", {describe_seconds((correlation.onset - suspect.time).total_seconds())} " \
                 "before the onset"
    what = (f"{SUSPECT_MARK}: {suspect.kind.replace('_', ' ')} "
            f"`{kit.escape_cut(suspect.version or '?', MAX_VALUE)}` of "
            f"{kit.escape_cut(suspect.service, MAX_VALUE)} at {kit.when(suspect.time)}{before}.")
    command = correlation.rollback_command
    if not command:
        return kit.section(f"{what}\nNo rollback command known: record changes with "
                           "--rollback-command or --previous-version.", block_id="suspect")
    code = kit.escape_cut(command.replace("```", "'''"), MAX_TEXT - len(what) - 40)
    return kit.section(f"{what}\n*Roll back:*\n```{code}```", block_id="suspect")


def _owner(context: PageContext) -> kit.Block:
    alert, slo = context.alert, context.slo
    return kit.context([
        f"Owner: *{kit.escape_cut(slo.owner, MAX_VALUE)}*",
        f"SLO file: `{kit.escape_cut(slo.source_file, MAX_NOTE)}`",
        f"Alert from {alert.source}",  # no time: a repeat with the same figures is no change
    ], "owner")


def _fallback(context: PageContext, tier: AlertTier | None) -> str:
    """One line a lock screen can show, then the essentials for screen readers."""
    alert, status, correlation = context.alert, context.status, context.correlation
    long_burn = _burn_in(context, alert.long_window, alert.burn_rate_long)
    short_burn = _burn_in(context, alert.short_window, alert.burn_rate_short)
    threshold = f"{number(round(tier.burn_rate, 2))}x" if tier else "the threshold"
    parts = [f"{alert.severity.upper()} {_title(alert)}: error budget burning "
             f"{kit.burn(long_burn)} over {alert.long_window} and {kit.burn(short_burn)} over "
             f"{alert.short_window} (fires above {threshold})."]
    if status is not None:
        parts.append(f"Budget left: {kit.percent(status.error_budget_remaining)}.")
    if correlation is not None and correlation.suspect is not None:
        suspect = correlation.suspect
        parts.append(f"Suspect: {suspect.kind} {suspect.version or ''} at "
                     f"{suspect.time:%H:%M} UTC.".replace("  ", " "))
        if correlation.rollback_command:
            parts.append(f"Roll back: {correlation.rollback_command}")
    if context.slo.runbook_url:
        parts.append(f"Runbook: {context.slo.runbook_url}")
    parts.append(f"Owner: {context.slo.owner}.")
    return " ".join(parts)  # kit.message clips it to Slack's limit


# --- text


def _promql_string(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _burn_in(context: PageContext, window: str, from_alert: float | None) -> float | None:
    if from_alert is not None:
        return from_alert
    return context.status.burn_rates.get(window) if context.status else None


def _sli(value: float | None, slo: SLO) -> str:
    """As many decimals as the objective has, plus one: 99.95% needs 99.941%, not 99.9%."""
    if value is None:
        return "-"
    decimals = len(slo.objective_percent.partition(".")[2]) + 1
    return f"{value * 100:.{min(max(decimals, 1), 5)}f}%"
