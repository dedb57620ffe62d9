"""Notices: what the engine tells a team that is not a page. Pure: values in, messages out.

- Budget-policy notices when an SLO's remaining error budget falls below 50%, 25% and 0%:
  the points where a budget policy asks a team to act (review risky changes, put
  reliability first, freeze releases). Each threshold is announced once per period, so a
  budget hovering around 25% does not notify at every refresh.
- The daily digest per owner channel: every SLO's budget in one table, and the worst
  burners first, so slow burns are seen before they page; its chart shows the SLO with the
  least budget left, the one closest to a freeze.
- Prometheus outages: the engine cannot page while it cannot read, which is worth one
  notice per outage (not a page: nothing is known to be broken), and one when it ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from slo_engine.budget.accounting import BudgetStatus
from slo_engine.paging import blocks as kit
from slo_engine.paging.blocks import MAX_TEXT, SlackMessage
from slo_engine.spec.durations import describe_seconds
from slo_engine.spec.model import SLO

BUDGET_THRESHOLDS: tuple[float, ...] = (0.5, 0.25, 0.0)
POLICY: dict[float, str] = {
    0.5: "Half the error budget is spent: review risky changes before they ship.",
    0.25: "A quarter of the error budget is left: put reliability work ahead of features.",
    0.0: "The error budget is exhausted: freeze feature releases until it recovers, as the "
         "budget policy says.",
}
WORST_BURNERS = 5
BURN_WINDOW = "1h"  # the burn rate the digest ranks by: recent, but not noisy

# (service, slo, group, threshold) -> when its notice was last sent
SentNotices = Mapping[tuple[str, str, str, float], datetime]


@dataclass(frozen=True)
class BudgetNotice:
    """One SLO group's budget crossing one or more thresholds since the last notice."""

    status: BudgetStatus
    owner: str
    threshold: float  # the lowest threshold crossed: what the message announces
    crossed: tuple[float, ...]  # every threshold it stands for (a fast drop skips some)
    message: SlackMessage

    @property
    def key(self) -> str:
        """Idempotency key: one notice per SLO group, threshold and period."""
        s = self.status
        return (f"budget/{s.service}/{s.slo}/{s.group}/{self.threshold:g}/"
                f"{s.period_start:%Y%m%dT%H%M}")


def budget_notices(statuses: Iterable[BudgetStatus], slos: Mapping[tuple[str, str], SLO],
                   sent: SentNotices) -> list[BudgetNotice]:
    """The notices due after a budget refresh: for each SLO group below a threshold whose
    notice was not sent since its period began, one notice naming the lowest such threshold.

    A rolling period's start moves with time, so "once per period" there means not again
    within one period's length; a calendar period resets at its boundary.
    """
    notices: list[BudgetNotice] = []
    for status in statuses:
        slo = slos.get((status.service, status.slo))
        remaining = status.error_budget_remaining
        if slo is None or remaining is None or status.status == "no_data":
            continue
        due = tuple(
            t for t in BUDGET_THRESHOLDS
            if _below(remaining, t)
            and not _since(sent.get((status.service, status.slo, status.group, t)),
                           status.period_start))
        if due:
            lowest = min(due)
            notices.append(BudgetNotice(status, slo.owner, lowest, due,
                                        budget_message(status, slo, lowest)))
    return notices


def _below(remaining: float, threshold: float) -> bool:
    return remaining <= 0 if threshold == 0 else remaining < threshold


def _since(moment: datetime | None, start: datetime) -> bool:
    return moment is not None and moment >= start


def budget_message(status: BudgetStatus, slo: SLO, threshold: float) -> SlackMessage:
    title = f"{status.service} / {status.slo}" + (f" ({status.group})" if status.group else "")
    what = "exhausted" if threshold == 0 else f"below {threshold:.0%}"
    burn = status.burn_rates.get(BURN_WINDOW)
    fields = [
        f"*Error budget left*\n{kit.percent(status.error_budget_remaining)} of {slo.period}",
        f"*SLI over {slo.period}*\n{kit.percent(status.sli, 3)} (objective "
        f"{slo.objective_percent}%)",
        f"*Burn rate {BURN_WINDOW}*\n{kit.burn(burn)}",
        f"*Budget exhausted*\n{_exhaustion(status)}",
    ]
    links = [kit.link(url, label) for url, label in ((slo.runbook_url, "Runbook"),
                                                     (slo.dashboard_url, "Dashboard")) if url]
    blocks: list[kit.Block] = [
        kit.header(f"Error budget {what}: {title}"),
        kit.section(f"*{kit.escape(POLICY[threshold])}*", fields),
        kit.context([f"Owner: *{kit.escape(slo.owner)}*",
                     f"SLO file: `{kit.escape(slo.source_file)}`",
                     *links, f"Budget as of {kit.when(status.at)}"]),
    ]
    text = (f"{title}: error budget {what} ({kit.percent(status.error_budget_remaining)} left "
            f"of {slo.period}). {POLICY[threshold]}")
    return kit.message(text, blocks)


def _exhaustion(status: BudgetStatus) -> str:
    if (status.error_budget_remaining or 0) <= 0:
        return "already exhausted"
    if status.time_to_exhaustion_s is None:
        return "not at the current rate (burning at or below 1x)"
    return f"in {describe_seconds(status.time_to_exhaustion_s)} at the current rate"


# --- the daily digest --------------------------------------------------------------------


def digest_messages(statuses: Iterable[BudgetStatus], slos: Mapping[tuple[str, str], SLO],
                    channel_of: Callable[[str], str], at: datetime,
                    worst: int = WORST_BURNERS) -> dict[str, SlackMessage]:
    """One digest per channel that owners' SLOs route to: the worst burners, then a table
    of every SLO group's budget (lowest budget first)."""
    by_channel: dict[str, list[tuple[BudgetStatus, SLO]]] = {}
    for status in statuses:
        slo = slos.get((status.service, status.slo))
        if slo is not None:
            by_channel.setdefault(channel_of(slo.owner), []).append((status, slo))
    return {channel: _digest(rows, at, worst) for channel, rows in sorted(by_channel.items())}


def least_budget(statuses: Iterable[BudgetStatus], slos: Mapping[tuple[str, str], SLO],
                 channel_of: Callable[[str], str]) -> dict[str, BudgetStatus]:
    """Per digest channel, the SLO group with the least error budget left (ties: by name):
    the burn-down its digest attaches. Groups without a budget figure are passed over."""
    least: dict[str, BudgetStatus] = {}
    for status in statuses:
        slo = slos.get((status.service, status.slo))
        if slo is None or status.error_budget_remaining is None \
                or status.status == "no_data":
            continue
        channel = channel_of(slo.owner)
        best = least.get(channel)
        if best is None or _least_key(status) < _least_key(best):
            least[channel] = status
    return least


def _least_key(status: BudgetStatus) -> tuple[float, str]:
    return _sort_remaining(status), _name(status)


def digest_chart_title(status: BudgetStatus) -> str:
    """The title of the digest's chart: whose burn-down, and why this one."""
    return (f"Burn-down of {_name(status)}: {kit.percent(status.error_budget_remaining)} of its "
            "error budget left, the least in this digest")


def _digest(rows: list[tuple[BudgetStatus, SLO]], at: datetime, worst: int) -> SlackMessage:
    owners = sorted({slo.owner for _, slo in rows})
    counts: dict[str, int] = {}
    for status, _ in rows:
        counts[status.status] = counts.get(status.status, 0) + 1
    summary = ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in sorted(counts.items()))
    burners = sorted((r for r in rows if (r[0].burn_rates.get(BURN_WINDOW) or 0) > 1),
                     key=lambda r: -(r[0].burn_rates.get(BURN_WINDOW) or 0))[:worst]
    lines = [f"• {_linked_name(s, slo)} burning *{kit.burn(s.burn_rates.get(BURN_WINDOW))}* "
             f"over {BURN_WINDOW}, {kit.percent(s.error_budget_remaining)} left"
             + (f", exhausted in {describe_seconds(s.time_to_exhaustion_s)}"
                if s.time_to_exhaustion_s is not None else "")
             for s, slo in burners]
    worst_text = ("*Worst burners*\n" + "\n".join(lines) if lines else
                  f"*Worst burners*\nNo SLO burns faster than its budget over {BURN_WINDOW}.")
    table = sorted(rows, key=lambda r: (_sort_remaining(r[0]), _name(r[0])))
    blocks: list[kit.Block] = [
        kit.header(f"SLO digest {at:%Y-%m-%d}: {', '.join(owners)}"),
        kit.section(f"{_slos(len(rows))}: {summary}."),
        kit.section(worst_text),
        *[kit.section(chunk) for chunk in _table_chunks([s for s, _ in table])],
        kit.context([f"Budgets as of {kit.when(at)}", "`GET /api/v1/slos` for every figure"]),
    ]
    text = (f"SLO digest {at:%Y-%m-%d} for {', '.join(owners)}: {_slos(len(rows))}, {summary}."
            + (f" Worst: {_name(burners[0][0])} at "
               f"{kit.burn(burners[0][0].burn_rates.get(BURN_WINDOW))}." if burners else ""))
    return kit.message(text, blocks)


def _linked_name(status: BudgetStatus, slo: SLO) -> str:
    """A worst burner's name, linked to its dashboard (the web view's page of the SLO when
    the spec names none and the engine knows its public URL)."""
    name = kit.escape(_name(status))
    return f"*{kit.link(slo.dashboard_url, name)}*" if slo.dashboard_url else f"*{name}*"


def _slos(count: int) -> str:
    return f"{count} SLO{'s' if count != 1 else ''}"


def _table_chunks(statuses: list[BudgetStatus]) -> list[str]:
    """The budget table as code blocks of at most MAX_TEXT characters each. Names are
    escaped like every user text (a code block does not stop Slack reading `<...>`); the
    columns are aligned on the names as shown."""
    names = [_name(s) for s in statuses]
    width = min(max((len(n) for n in names), default=3), 48)
    header = f"{'SLO':<{width}}  {'objective':>9}  {'SLI':>8}  {'left':>7}  " \
             f"{'burn ' + BURN_WINDOW:>7}  status"
    rows = [kit.escape(f"{name[:width]:<{width}}  {s.objective:>8.6g}%  "
                       f"{kit.percent(s.sli, 3):>8}  {kit.percent(s.error_budget_remaining):>7}  "
                       f"{kit.burn(s.burn_rates.get(BURN_WINDOW)):>7}  "
                       f"{s.status.replace('_', ' ')}")
            for name, s in zip(names, statuses, strict=True)]
    chunks: list[str] = []
    current = [header]
    for row in rows:
        if sum(len(line) + 1 for line in [*current, row]) + 6 > MAX_TEXT:
            chunks.append("```" + "\n".join(current) + "```")
            current = [header]
        current.append(row)
    chunks.append("```" + "\n".join(current) + "```")
    return chunks


def _sort_remaining(status: BudgetStatus) -> float:
    return status.error_budget_remaining if status.error_budget_remaining is not None \
        else float("inf")


def _name(status: BudgetStatus) -> str:
    return f"{status.service}/{status.slo}" + (f" ({status.group})" if status.group else "")


# --- Prometheus outages ------------------------------------------------------------------


def outage_message(url: str, since: datetime, at: datetime, reason: str) -> SlackMessage:
    """No page can fire while the engine cannot read Prometheus: say so, once."""
    lasted = describe_seconds((at - since).total_seconds())
    text = (f"slo-engine cannot read Prometheus at {url} since {since:%Y-%m-%d %H:%M} UTC "
            f"({lasted}): burn-rate pages and budget figures are paused until it answers "
            "again. This is not a page: no SLO is known to be broken.")
    blocks = [
        kit.header(f"No SLO data for {lasted}: Prometheus unreachable"),
        kit.section(kit.escape(text)),
        kit.context([f"Last error: `{kit.escape(kit.one_line(reason, 500).replace('`', chr(39)))}`",
                     "The engine keeps retrying; `GET /readyz` shows the check."]),
    ]
    return kit.message(text, blocks)


def recovery_message(url: str, since: datetime, until: datetime) -> SlackMessage:
    lasted = describe_seconds((until - since).total_seconds())
    text = (f"Prometheus at {url} answers again since {until:%Y-%m-%d %H:%M} UTC after "
            f"{lasted} without data: burn-rate pages and budget figures are back.")
    return kit.message(text, [kit.header(f"SLO data is back after {lasted}"),
                              kit.section(kit.escape(text))])
