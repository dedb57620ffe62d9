"""What changed before a burn: the changes preceding its onset, and the suspect among them.

The window ends at the burn's onset, not at the page: a 6h/30m tier fires long after the
burn began, and what caused it landed before the burn, not before the page. The onset is
read from the 5m error ratio (the recorded `slo:error_ratio:rate5m`, or a ledger's bad/total
per bucket). Everything here is pure: the ratio comes from `prometheus.queries` (or a
ledger), the changes from the state database through `app.correlate_alert`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from slo_engine.changes.events import DEFAULT_ROLLBACK_TEMPLATE, SUSPECT_KINDS, Change, newest_first
from slo_engine.spec.burn_rate import (
    AlertTier,
    burning,
    most_sensitive_tier,
    rule_budget,
    rule_threshold,
    tier_of,
)
from slo_engine.spec.model import SLO

if TYPE_CHECKING:  # pandas only for the callers that hand it a ratio
    import pandas as pd

DEFAULT_LOOKBACK_S = 6 * 3600.0
DEFAULT_SUSPECT_WINDOW_S = 2 * 3600.0
RATIO_STEP_SECONDS = 60  # the rules' evaluation interval: the 5m ratio's own resolution


@dataclass(frozen=True)
class Correlation:
    """The context of one burn, as the page shows it.

    `onset` is None when the error ratio never rose above the tier's threshold before the
    alert (or no ratio was available): the lookback then ends at the alert's time instead,
    and the page should say the onset is unknown.
    """

    onset: datetime | None  # when the error ratio first rose above the tier's threshold
    changes: tuple[Change, ...]  # within the lookback before the onset, newest first
    suspect: Change | None  # latest deploy/config/flag change within the suspect window
    rollback_command: str | None  # the suspect's, given or derived from previous_version
    lookback_seconds: float


def services_of(slo: SLO) -> tuple[str, ...]:
    """The services whose changes are context for an SLO: its own, then its `depends_on`."""
    return tuple(dict.fromkeys((slo.service, *slo.depends_on)))


def onset_tier(slo: SLO, severity: str, long_window: str, short_window: str) -> AlertTier | None:
    """The SLO's tier an alert reports. An alert whose windows match no tier (the spec changed
    since it fired) gets the most sensitive tier of its severity, so an onset is still found;
    None when the SLO has no tier of that severity either."""
    return tier_of(slo.tiers, severity, long_window, short_window) \
        or most_sensitive_tier(slo.tiers, severity)


def estimate_onset(ratio: pd.Series, at: datetime, slo: SLO, tier: AlertTier) -> datetime | None:
    """When the burn that fired `tier` at `at` began: the first point of the run of 5m
    error-ratio points above the tier's threshold (burn rate × error budget) leading up to `at`.

    `ratio` is indexed by time (naive means UTC), NaN where there was no traffic. Points after
    `at` and more than the tier's long window before it are ignored: a burn older than its
    long window would have fired earlier. A dip below the threshold shorter than the tier's
    short window does not end the run (the short window, which must also burn for the tier to
    fire, would hardly notice it), nor does a gap in the data that short; longer ones do.
    None when no point within one short window before `at` is above the threshold: then the
    alert's time is all there is.
    Compared as the rules compare (`ratio / budget > burn rate`, both numbers as printed).
    """
    import pandas as pd

    budget, threshold = rule_budget(slo.error_budget), rule_threshold(tier)
    index = pd.DatetimeIndex(ratio.index)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    times: list[datetime] = list(index.to_pydatetime())
    points = [(when, float(value)) for when, value in
              zip(times, ratio.to_numpy(dtype=float), strict=True) if not math.isnan(value)]
    since = at - timedelta(seconds=tier.long_seconds)
    above = sorted(when for when, value in points
                   if since <= when <= at and burning(value / budget, threshold))
    if not above or (at - above[-1]).total_seconds() > tier.short_seconds:
        return None
    step = _step(sorted(when for when, _ in points))
    onset = above[-1]
    for earlier in reversed(above[:-1]):
        if (onset - earlier).total_seconds() - step >= tier.short_seconds:
            break
        onset = earlier
    return onset


def _step(times: Sequence[datetime]) -> float:
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times) if b > a]
    return min(gaps, default=float(RATIO_STEP_SECONDS))


def correlate(changes: Iterable[Change], onset: datetime | None, *,
              fired_at: datetime | None = None, lookback_s: float = DEFAULT_LOOKBACK_S,
              suspect_window_s: float = DEFAULT_SUSPECT_WINDOW_S,
              rollback_template: str = DEFAULT_ROLLBACK_TEMPLATE,
              services: Collection[str] | None = None) -> Correlation:
    """The changes of `services` (all, when None) in [onset − lookback, onset], both ends
    included, newest first; the suspect is the newest deploy, config or feature_flag change
    among them no earlier than onset − suspect window; its rollback command is the one given,
    else `rollback_template` filled with its previous_version.

    With `onset` None (not estimated), the window ends at `fired_at` instead and the result's
    onset stays None.
    """
    end = onset if onset is not None else fired_at
    if end is None:
        raise ValueError("correlate needs an onset or the alert's time (fired_at)")
    start = end - timedelta(seconds=lookback_s)
    within = tuple(newest_first(
        c for c in changes
        if start <= c.time <= end and (services is None or c.service in services)))
    suspect_from = end - timedelta(seconds=suspect_window_s)
    suspect = next((c for c in within if c.kind in SUSPECT_KINDS and c.time >= suspect_from),
                   None)
    return Correlation(onset=onset, changes=within, suspect=suspect,
                       rollback_command=suspect.rollback(rollback_template) if suspect else None,
                       lookback_seconds=lookback_s)


def ratio_from_ledger(ledger: pd.DataFrame, slo: SLO, group: str = "") -> pd.Series:
    """The 5m error ratio of one SLO group from a ledger: bad/total of each bucket (a bucket
    of a step-60 or step-300 ledger read from the recorded rates holds exactly that ratio),
    NaN where there was no traffic; indexed by the buckets' UTC times."""
    import pandas as pd

    rows = ledger[(ledger["slo"] == slo.name)
                  & ledger["service"].isin([slo.service, ""])
                  & (ledger["group"].astype(str) == group)]
    total = rows["total"].to_numpy(dtype=float)
    bad = rows["bad"].to_numpy(dtype=float)
    ratio = [b / t if t > 0 else math.nan for b, t in zip(bad, total, strict=True)]
    index = pd.DatetimeIndex(pd.to_datetime(rows["timestamp"], utc=True))
    return pd.Series(ratio, index=index, dtype=float).sort_index()
