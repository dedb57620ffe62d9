"""Backtests of alert policies over an event ledger: when each tier would have fired, how late,
and how much error budget burnt with nothing firing. No clocks and no network. The only
file read is the policy file in `load_alert_policy`; `parse_alert_policy` is the pure part of it.

The arithmetic is the generated rules' (`compile`), bucket for bucket, so a backtest answers
"what would Prometheus have done" rather than "what would an ideal detector do":

- the 5m window is the single bucket at t (the recorded `bad5m / total5m` sample; a step-60
  ledger built from recorded 5m rates × 60 holds exactly that ratio in each bucket);
- a longer window W is bucket t times 300 s / step (the 5m rate at t, times 5) plus the
  buckets whose timestamp lies in the CLOSED range [t − W + 3m, t − 3m] (`sum_over_time` in
  Prometheus 2.42), bad over total: traffic-weighted, and a bucket with no traffic adds
  nothing instead of making the window NaN (`compile.window_ratio_expr`);
- a tier fires as `spec.burn_rate.fires_array` decides: both windows burn faster than its
  threshold (ratio over budget, both numbers as the rules print them) and, with
  `min_events`, the long window's mean event rate × W reaches it;
- a missing bucket is a missing sample: it is left out of sums and counts, and its 5m window
  has no value, so nothing that needs it fires.

Every tier is decided at every bucket, as `rule_tests.Replay` does. Live, the tiers whose long
window is a day or more sit in the 5m slow group, so Prometheus may fire them up to 4 min
later than a one-minute backtest says.

Prefix sums decide every bucket of every group at once. Where a float error bound says a
prefix-sum difference could land on the other side of a threshold, the bucket is decided
again exactly as Prometheus adds (in time order, compensated), so the vectorised result equals a
bucket-by-bucket replay (`rule_tests.Replay`), to the bucket.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from slo_engine.budget.ledger import DEFAULT_STEP_SECONDS
from slo_engine.errors import LedgerError, SpecError, SpecIssue
from slo_engine.rules.compile import tiled_minutes
from slo_engine.spec.burn_rate import (
    AlertTier,
    TierPolicy,
    alert_tier,
    burning_array,
    fires_array,
    rule_budget,
    rule_threshold,
)
from slo_engine.spec.conventions import API_VERSION, BASE_WINDOW, EDGE_MINUTES
from slo_engine.spec.document import TierSpec
from slo_engine.spec.durations import format_duration, parse_duration
from slo_engine.spec.loader import PathKey, SpecDocument, format_path, parse_yaml
from slo_engine.spec.model import SLO
from slo_engine.spec.promql import avg_over_time, divide, sum_over_time

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

POLICY_KIND = "AlertPolicy"
BASE_WINDOW_SECONDS = parse_duration(BASE_WINDOW)
_NS = 1_000_000_000
_U = 2.0 ** -53  # unit roundoff of float64
_SAFETY = 4.0  # slack on the float error bounds: a doubtful bucket costs only a recheck
_NAT = np.iinfo(np.int64).min  # NaT as nanoseconds
_CHUNK_CELLS = 2_000_000  # groups × buckets evaluated at once: bounds memory for wide SLOs

ALERT_COLUMNS = ("group", "severity", "long_window", "short_window", "threshold", "start",
                 "end", "onset", "delay", "bad_events", "budget_spent", "peak_burn_rate")
GROUP_COLUMNS = ("group", "pages", "tickets", "bad_events", "total_events", "budget_spent",
                 "unalerted_bad_events", "unalerted_budget_spent")


# --- alert policy files ---------------------------------------------------------------------


@dataclass(frozen=True)
class AlertPolicy:
    """Alert tiers (and optionally min_events) to try on SLOs instead of their own."""

    tiers: tuple[TierPolicy, ...]
    min_events: int | None = None  # None: keep each SLO's own
    source: str = ""


class _PolicySpec(BaseModel):
    """An alert policy file: `kind: AlertPolicy`, tiers as in an SLO's `alerting.tiers`."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=False)

    api_version: Literal["slo-engine/v1"] = Field(alias="apiVersion")
    kind: Literal["AlertPolicy"]
    tiers: list[TierSpec] = Field(min_length=1)
    min_events: int | None = Field(None, ge=0)


def load_alert_policy(path: str | Path) -> AlertPolicy:
    """Read and check an alert policy file; raise SpecError with every mistake located."""
    path = Path(path)
    name = path.as_posix()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError([SpecIssue(name, 1, 1, "", f"cannot read the file: {error}")]) from None
    if not text.strip():
        raise SpecError([SpecIssue(name, 1, 1, "", "the file is empty; a policy file starts "
                                   f"with 'apiVersion: {API_VERSION}' and 'kind: {POLICY_KIND}'")])
    document, issues = parse_yaml(text, name)
    if issues:
        raise SpecError(issues)
    return parse_alert_policy(document)


def parse_alert_policy(document: SpecDocument) -> AlertPolicy:
    """The policy in a parsed YAML document (`loader.parse_yaml`), or SpecError."""
    if not isinstance(document.data, dict):
        raise SpecError([document.issue((), f"a policy file is a mapping that starts with "
                                        f"'apiVersion: {API_VERSION}'")])
    try:
        spec = _PolicySpec.model_validate(document.data)
    except ValidationError as error:
        raise SpecError(_policy_issues(error, document)) from None
    issues = list(_tier_issues(spec, document))
    if issues:
        raise SpecError(issues)
    return AlertPolicy(
        tiers=tuple(TierPolicy(t.severity, format_duration(parse_duration(t.long_window)),
                               format_duration(parse_duration(t.short_window)), t.budget_percent)
                    for t in spec.tiers if t.enabled),
        min_events=spec.min_events,
        source=document.file,
    )


def _policy_issues(error: ValidationError, document: SpecDocument) -> list[SpecIssue]:
    issues: list[SpecIssue] = []
    for item in error.errors(include_url=False):
        loc: PathKey = tuple(p for p in item["loc"] if p != "[key]")
        kind, value = item["type"], item.get("input")
        if kind == "extra_forbidden":
            known = _POLICY_FIELDS if len(loc) == 1 else _TIER_FIELDS
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            hint = (f"did you mean {close[0]!r}?" if close
                    else f"expected one of: {', '.join(known)}")
            issues.append(document.issue(loc, f"unknown field {loc[-1]!r}; {hint}", key=True))
        elif kind == "missing":
            issue = document.issue(loc[:-1], f"missing required field {loc[-1]!r}")
            issues.append(replace(issue, path=format_path(loc)))
        elif loc == ("apiVersion",):
            issues.append(document.issue(loc, f"unsupported apiVersion {value!r}; write "
                                         f"'apiVersion: {API_VERSION}'"))
        elif loc == ("kind",):
            issues.append(document.issue(loc, f"got kind {value!r}; write 'kind: {POLICY_KIND}'"))
        else:
            message = str(item["msg"]).removeprefix("Value error, ")
            issues.append(document.issue(loc, f"got {value!r}; {message[:1].lower()}{message[1:]}"))
    return issues


_POLICY_FIELDS = sorted(f.alias or n for n, f in _PolicySpec.model_fields.items())
_TIER_FIELDS = sorted(TierSpec.model_fields)


def _tier_issues(spec: _PolicySpec, document: SpecDocument) -> list[SpecIssue]:
    """What the rules need of windows (whole minutes ≥ 5m, the short one shorter), and each
    tier once: alerts are told apart by severity and windows."""
    issues: list[SpecIssue] = []
    seen: dict[tuple[str, float, float], int] = {}
    for index, tier in enumerate(spec.tiers):
        where: PathKey = ("tiers", index)
        long_s, short_s = parse_duration(tier.long_window), parse_duration(tier.short_window)
        for field_name, seconds in (("short_window", short_s), ("long_window", long_s)):
            if seconds < BASE_WINDOW_SECONDS or seconds % 60:
                issues.append(document.issue((*where, field_name), "windows are whole minutes "
                                             "of at least 5m (the engine's base rate window)"))
        if short_s >= long_s:
            issues.append(document.issue((*where, "short_window"), "short_window must be "
                                         "shorter than long_window (the SRE Workbook uses 1/12 "
                                         "of it)"))
        if not tier.enabled:
            continue
        first = seen.setdefault((tier.severity, long_s, short_s), index)
        if first != index:
            issues.append(document.issue(where, f"a second {tier.severity} tier "
                                         f"{tier.long_window}/{tier.short_window} (the first is "
                                         f"tiers[{first}]); alerts of both would carry the "
                                         "same labels"))
    return issues


def apply_policy(slo: SLO, policy: AlertPolicy) -> SLO:
    """The SLO with the policy's tiers (thresholds scaled to its period) and min_events.

    The policy replaces the SLO's tiers whole, its page/ticket switches included. A tier
    whose threshold the objective cannot reach is kept: in a backtest it never fires.
    """
    return replace(
        slo,
        tiers=tuple(alert_tier(p, slo.period_seconds) for p in policy.tiers),
        min_events=slo.min_events if policy.min_events is None else policy.min_events,
    )


# --- the backtest ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BacktestResult:
    """Alerts a policy would have raised over a ledger, and the budget spent around them.

    `alerts`, one row per contiguous firing interval of one tier in one group:
        group           the ledger's group key ("" for an ungrouped SLO)
        severity, long_window, short_window   the tier
        threshold       its burn-rate threshold
        start           first bucket time it fires
        end             first bucket time it no longer fires; NaT while still firing at
                        the last evaluated bucket
        onset           first bucket of the run, ending at `start`, in which the short
                        window's burn rate stayed above the threshold: where the burn that
                        fired it began (at most one long window before `start`)
        delay           start − onset (detection time at bucket granularity)
        bad_events      bad events in the buckets it fires at
        budget_spent    bad_events / (error budget × total events in the SLO's period ending
                        at the interval's last firing bucket): the share of the period's
                        budget the interval burnt (less history than a period: what there is)
        peak_burn_rate  highest long-window burn rate while firing
    `groups`, one row per group:
        group, pages, tickets   alerts a person would get: runs of "any page tier firing"
                                (and any ticket tier), so overlapping tiers count once
        bad_events, total_events  over the evaluated buckets
        budget_spent            bad_events / (error budget × total_events): the share of the
                                budget of the events evaluated (the period's budget when the
                                backtest spans one period)
        unalerted_bad_events, unalerted_budget_spent   the same for buckets where no tier
                                fired: burn that went unnoticed
    """

    service: str
    slo: str
    error_budget: float  # 1 − objective
    tiers: tuple[AlertTier, ...]
    min_events: int
    step_seconds: float
    since: datetime | None  # first evaluated bucket; None when there was none
    until: datetime | None  # last evaluated bucket
    alerts: pd.DataFrame = field(repr=False)
    groups: pd.DataFrame = field(repr=False)

    @property
    def pages(self) -> int:
        return int(self.groups["pages"].sum())

    @property
    def tickets(self) -> int:
        return int(self.groups["tickets"].sum())

    @property
    def budget_spent(self) -> float:
        """Bad events of all groups over the error budget of all their events."""
        return _share(float(self.groups["bad_events"].sum()),
                      float(self.groups["total_events"].sum()), self.error_budget)

    @property
    def unalerted_budget_spent(self) -> float:
        return _share(float(self.groups["unalerted_bad_events"].sum()),
                      float(self.groups["total_events"].sum()), self.error_budget)


def _share(bad: float, total: float, budget: float) -> float:
    """Budget spent; no bad events spend nothing, even where there were no events at all."""
    return bad / (budget * total) if bad > 0 else 0.0


def backtest(slo: SLO, ledger: pd.DataFrame,
             tiers: Sequence[AlertTier] | AlertPolicy | None = None,
             since: datetime | None = None, until: datetime | None = None, *,
             step_seconds: float | None = None) -> BacktestResult:
    """Replay the SLO's alert rules (or `tiers`, or a policy) over its ledger rows.

    `ledger` holds ledger columns (timestamp, group, total, bad; rows of other SLOs, by `slo`
    and `service`, are ignored). Its step is inferred from the timestamps unless given.
    Buckets before `since` only feed the windows; alerts are evaluated in [since, until].
    Without history before `since`, the first buckets see short, partly filled windows, as
    Prometheus does right after its rules are loaded. To skip that warm-up, start `since`
    the longest long window after the ledger's first bucket.
    """
    if isinstance(tiers, AlertPolicy):
        slo = apply_policy(slo, tiers)
    elif tiers is not None:
        slo = replace(slo, tiers=tuple(tiers))
    grid = _Grid.of(_rows(slo, ledger), step_seconds)
    first, last = grid.span(since, until)
    evaluated = np.arange(first, last + 1, dtype=np.int64)
    alerts: list[_Columns] = []
    per_group: list[_Columns] = []
    for first_row in range(0, len(grid.groups), grid.chunk_rows):
        chunk = _Chunk.of(grid, first_row, first_row + grid.chunk_rows)
        _evaluate(slo, grid, chunk, evaluated, alerts, per_group)
    return BacktestResult(
        service=slo.service, slo=slo.name, error_budget=slo.error_budget, tiers=slo.tiers,
        min_events=slo.min_events,
        step_seconds=grid.step_ns / _NS,
        since=grid.time(first) if len(evaluated) else None,
        until=grid.time(last) if len(evaluated) else None,
        alerts=_alert_frame(alerts), groups=_group_frame(per_group),
    )


def backtest_slos(slos: Iterable[SLO], ledger: pd.DataFrame,
                  tiers: Sequence[AlertTier] | AlertPolicy | None = None,
                  since: datetime | None = None, until: datetime | None = None, *,
                  step_seconds: float | None = None) -> list[BacktestResult]:
    """`backtest` of many SLOs over one ledger, split by (service, slo) once rather than
    filtered per SLO (a month of minutes for a thousand SLOs is tens of millions of rows).

    Ledger rows without a service (``""``) belong to the SLO of that name in any service.
    """
    missing = [c for c in ("service", "slo") if c not in ledger.columns]
    if missing:
        raise LedgerError(f"ledger: missing column(s) {', '.join(missing)}; a ledger of many "
                          "SLOs names each row's service and slo")
    parts = {key: rows for key, rows in ledger.groupby(["service", "slo"], sort=False,
                                                                  observed=True)}
    empty = ledger.iloc[:0]
    results = []
    for slo in slos:
        own = [parts[k] for k in ((slo.service, slo.name), ("", slo.name)) if k in parts]
        rows = own[0] if len(own) == 1 else pd.concat(own) if own else empty
        results.append(backtest(slo, rows, tiers, since, until, step_seconds=step_seconds))
    return results


def _rows(slo: SLO, ledger: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("timestamp", "total", "bad") if c not in ledger.columns]
    if missing:
        raise LedgerError(f"ledger: missing column(s) {', '.join(missing)}; a ledger has "
                          "columns timestamp, service, slo, group, total, bad")
    rows = ledger
    if "slo" in rows.columns:
        mine = rows["slo"] == slo.name
        if "service" in rows.columns:
            mine &= rows["service"].isin([slo.service, ""])
        rows = rows[mine]
    return rows


@dataclass(frozen=True)
class _Grid:
    """The ledger rows of one SLO on a regular time grid: groups × buckets."""

    start_ns: int
    step_ns: int
    groups: list[str]
    bad: Floats
    total: Floats
    present: Bools

    @classmethod
    def of(cls, rows: pd.DataFrame, step_seconds: float | None) -> _Grid:
        stamps = pd.DatetimeIndex(pd.to_datetime(rows["timestamp"], utc=True)).as_unit("ns")
        ns = np.asarray(stamps.asi8, dtype=np.int64)
        step_ns = round(step_seconds * _NS) if step_seconds else _infer_step(ns)
        if step_ns <= 0:
            raise LedgerError(f"ledger: step must be positive, got {step_seconds}")
        if not len(ns):
            empty = np.zeros((0, 0))
            return cls(0, step_ns, [], empty, empty, np.zeros((0, 0), dtype=bool))
        start = int(ns.min())
        offsets = ns - start
        off_grid = offsets % step_ns != 0
        if off_grid.any():
            at = stamps[int(np.argmax(off_grid))]
            raise LedgerError(f"ledger: timestamp {at.isoformat()} is not on the "
                              f"{step_ns / _NS:g}s grid starting at {stamps.min().isoformat()}; "
                              "every bucket of an SLO must end on the same step")
        columns = offsets // step_ns
        size = int(columns.max()) + 1
        group_values = rows["group"].astype(str) if "group" in rows.columns \
            else pd.Series([""] * len(rows), index=rows.index)
        codes, uniques = pd.factorize(group_values, sort=True)
        shape = (len(uniques), size)
        bad, total = np.zeros(shape), np.zeros(shape)
        present = np.zeros(shape, dtype=bool)
        present[codes, columns] = True
        if int(present.sum()) != len(rows):
            cells = codes.astype(np.int64) * size + columns
            _, first_index, counts = np.unique(cells, return_index=True, return_counts=True)
            where = int(first_index[np.argmax(counts > 1)])
            raise LedgerError(f"ledger: two rows for group {group_values.iloc[where]!r} at "
                              f"{stamps[where].isoformat()}; sum them into one bucket")
        bad[codes, columns] = pd.to_numeric(rows["bad"]).to_numpy(dtype=np.float64)
        total[codes, columns] = pd.to_numeric(rows["total"]).to_numpy(dtype=np.float64)
        return cls(start, step_ns, [str(g) for g in uniques], bad, total, present)

    @property
    def size(self) -> int:
        return int(self.bad.shape[1])

    @property
    def chunk_rows(self) -> int:
        return max(1, _CHUNK_CELLS // max(1, self.size))

    def time(self, index: int) -> datetime:
        return pd.Timestamp(self.start_ns + index * self.step_ns, unit="ns", tz="UTC")

    def times(self, indices: Ints) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(pd.to_datetime(self.start_ns + indices * self.step_ns,
                                               unit="ns", utc=True))

    def span(self, since: datetime | None, until: datetime | None) -> tuple[int, int]:
        """First and last bucket index inside [since, until] (last < first: none)."""
        first, last = 0, self.size - 1
        if since is not None:
            offset = _ns(since) - self.start_ns
            first = max(first, -(-offset // self.step_ns))
        if until is not None:
            last = min(last, (_ns(until) - self.start_ns) // self.step_ns)
        return first, last


def _ns(when: datetime) -> int:
    stamp = pd.Timestamp(when)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.as_unit("ns").value)


def _infer_step(ns: Ints) -> int:
    """The smallest spacing of distinct bucket times (gaps are multiples of it)."""
    gaps = np.diff(np.sort(ns))
    gaps = gaps[gaps > 0]
    return int(gaps.min()) if len(gaps) else DEFAULT_STEP_SECONDS * _NS


@dataclass(frozen=True)
class _Chunk:
    """Some groups of the grid with their prefix sums: any window's sum in O(1)."""

    groups: list[str]
    bad: Floats
    total: Floats
    present: Bools
    cum_bad: Floats  # [:, j] = sum of buckets before j
    cum_total: Floats
    cum_present: Ints
    cum_bad_nonzero: Ints  # exact: a window without bad events sums to exactly 0
    cum_total_nonzero: Ints

    @classmethod
    def of(cls, grid: _Grid, first_row: int, stop_row: int) -> _Chunk:
        rows = slice(first_row, stop_row)
        bad, total, present = grid.bad[rows], grid.total[rows], grid.present[rows]

        def prefix(values: npt.NDArray[Any], dtype: type) -> npt.NDArray[Any]:
            out = np.zeros((values.shape[0], values.shape[1] + 1), dtype=dtype)
            np.cumsum(values, axis=1, dtype=dtype, out=out[:, 1:])
            return out

        return cls(grid.groups[rows], bad, total, present, prefix(bad, np.float64),
                   prefix(total, np.float64), prefix(present, np.int64),
                   prefix(bad > 0, np.int64), prefix(total > 0, np.int64))

    @property
    def rows(self) -> int:
        return int(self.bad.shape[0])


def _window_buckets(window_seconds: float, step_ns: int, *, ratio: bool) -> int:
    """How many buckets before t a window reaches back: the closed range [t − W, t].

    The 5m error ratio is the one recorded sample at t, not a range (compile.error_ratio_expr).
    """
    if ratio and window_seconds == BASE_WINDOW_SECONDS:
        return 0
    return int(round(window_seconds * _NS) // step_ns)


@dataclass(frozen=True)
class _Window:
    """An error-ratio window in buckets: the sum of buckets [t − lo, t − hi] plus `recent`
    times bucket t (compile.window_ratio_expr: 5 times the 5m rate at t and the rates of
    [t − W + 3m, t − 3m]; a bucket of step s holds s/300 of a 5m rate's events). `recent`
    0 is a plain closed range, which has no value without a bucket; a tiled window has
    none without bucket t."""

    lo: int
    hi: int = 0
    recent: float = 0.0


def _ratio_window(window_seconds: float, step_ns: int) -> _Window:
    window_ns = round(window_seconds * _NS)
    if tiled_minutes(window_seconds) is None or window_seconds == BASE_WINDOW_SECONDS \
            or step_ns > BASE_WINDOW_SECONDS * _NS:  # a bucket longer than a 5m rate's
        return _Window(_window_buckets(window_seconds, step_ns, ratio=True))
    edge_ns = EDGE_MINUTES * 60 * _NS
    return _Window((window_ns - edge_ns) // step_ns, -(-edge_ns // step_ns),
                   BASE_WINDOW_SECONDS * _NS / step_ns)



def _columns(values: npt.NDArray[Any], first: int, width: int) -> npt.NDArray[Any]:
    """values[:, max(first + i, 0)] for i in range(width), sliced (gathering is 5x slower)."""
    if first >= 0:
        return values[:, first:first + width]
    pad = min(-first, width)
    return np.concatenate((np.repeat(values[:, :1], pad, axis=1),
                           values[:, :max(first + width, 0)]), axis=1)


def _window_sum(prefix: npt.NDArray[Any], first: int, width: int,
                back: int) -> npt.NDArray[Any]:
    """Sum of buckets [j − back, j] for j = first … first + width − 1, from prefix sums."""
    sums: npt.NDArray[Any] = _columns(prefix, first + 1, width) - \
        _columns(prefix, first - back, width)
    return sums


def _burn(chunk: _Chunk, first: int, width: int, window: _Window, budget: float,
          threshold: float, step_seconds: float) -> Floats:
    """The burn rate of one window at every evaluated bucket of every group, NaN without a
    sample; exact as Prometheus adds wherever it is close enough to `threshold` to matter."""
    back, recent = window.lo - window.hi, window.recent
    older = first - window.hi  # the range's newest bucket, for j = first
    with np.errstate(divide="ignore", invalid="ignore"):
        if window.lo == 0:
            burn: Floats = _columns(chunk.bad, first, width) \
                / _columns(chunk.total, first, width) / budget
            burn[~_columns(chunk.present, first, width)] = np.nan
            return burn
        hi = np.arange(first + 1, first + 1 + width, dtype=np.float64)
        count = _window_sum(chunk.cum_present, older, width, back)
        bad_nonzero = _window_sum(chunk.cum_bad_nonzero, older, width, back)
        total_nonzero = _window_sum(chunk.cum_total_nonzero, older, width, back)
        bad_now = recent * _columns(chunk.bad, first, width)
        total_now = recent * _columns(chunk.total, first, width)
        bad = np.where(bad_nonzero > 0, _window_sum(chunk.cum_bad, older, width, back), 0.0) \
            + bad_now
        total = np.where(total_nonzero > 0, _window_sum(chunk.cum_total, older, width, back),
                         0.0) + total_now
        ratio = bad / total
        burn = ratio / budget
        missing = ~_columns(chunk.present, first, width) if recent else count == 0
        burn[missing] = np.nan
        # Each prefix sum is off by at most (j · u · itself); Prometheus' own sum of the
        # window by (k · u · the window's sum), and adding bucket t by u of the total. A
        # bucket within that of the threshold is decided again below, as Prometheus adds.
        scale = _U * (2.0 * hi + back + 1)
        bad_error = np.where(bad_nonzero > 0,
                             scale * _columns(chunk.cum_bad, first + 1, width), 0.0) \
            + 2 * _U * bad
        total_error = np.where(total_nonzero > 0,
                               scale * _columns(chunk.cum_total, first + 1, width), 0.0) \
            + 2 * _U * total
        floor = total - total_error
        error = (bad_error + np.abs(ratio) * total_error) / floor / budget
        margin = _SAFETY * (error + 4 * _U * threshold)
        doubt = ~missing & ((total_nonzero > 0) | (total_now > 0)) & (
            (floor <= 0) | ~(np.abs(burn - threshold) > margin))
    for row, column in zip(*np.nonzero(doubt), strict=True):
        t = first + int(column)
        start, stop = max(t - window.lo, 0), max(t - window.hi + 1, 0)
        if recent:  # in rates (events / step), as Prometheus adds the recorded 5m rates
            bad_sum = sum_over_time((chunk.bad[row, start:stop] / step_seconds).tolist()) \
                + recent * float(chunk.bad[row, t] / step_seconds)
            total_sum = sum_over_time((chunk.total[row, start:stop] / step_seconds).tolist()) \
                + recent * float(chunk.total[row, t] / step_seconds)
        else:
            bad_sum = sum_over_time(chunk.bad[row, start:stop].tolist())
            total_sum = sum_over_time(chunk.total[row, start:stop].tolist())
        burn[row, column] = divide(bad_sum, total_sum) / budget
    return burn


def _events(chunk: _Chunk, first: int, width: int, back: int, window_seconds: float,
            step_seconds: float, min_events: int) -> Floats:
    """avg_over_time(total rate[W]) × W, the rate of a bucket being total/step, NaN without a
    sample; exact as Prometheus averages wherever it is close to `min_events`."""
    hi = np.arange(first + 1, first + 1 + width, dtype=np.float64)
    count = _window_sum(chunk.cum_present, first, width, back)
    nonzero = _window_sum(chunk.cum_total_nonzero, first, width, back)
    total = np.where(nonzero > 0, _window_sum(chunk.cum_total, first, width, back), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        events: Floats = total / step_seconds / count * window_seconds
        events[count == 0] = np.nan
        # The prefix sums' error as in _burn, plus the running mean's (k · count · u).
        relative = _U * (6.0 * (back + 1) * count
                         + (2.0 * hi + back + 1) * _columns(chunk.cum_total, first + 1, width)
                         / total + 16)
        margin = _SAFETY * relative * np.abs(events)
        doubt = (count > 0) & (nonzero > 0) & (
            (total <= 0) | ~(np.abs(events - min_events) > margin))
    for row, column in zip(*np.nonzero(doubt), strict=True):
        t = first + int(column)
        start = max(t - back, 0)
        values = chunk.total[row, start:t + 1][chunk.present[row, start:t + 1]] / step_seconds
        mean = avg_over_time(values.tolist())
        events[row, column] = mean * window_seconds
    return events


def _runs(firing: Bools) -> tuple[Ints, Ints, Ints]:
    """(row, start, end) of every run of True along each row; end is exclusive."""
    padded = np.zeros((firing.shape[0], firing.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = firing
    steps = np.diff(padded, axis=1)
    rows, starts = np.nonzero(steps == 1)
    _, ends = np.nonzero(steps == -1)
    return rows.astype(np.int64), starts.astype(np.int64), ends.astype(np.int64)


_Columns = dict[str, npt.NDArray[Any]]


def _evaluate(slo: SLO, grid: _Grid, chunk: _Chunk, evaluated: Ints,
              alerts: list[_Columns], per_group: list[_Columns]) -> None:
    """Firing intervals of every tier and the budget summary of one chunk of groups."""
    budget = rule_budget(slo.error_budget)
    step_seconds = grid.step_ns / _NS
    period_back = int(round(slo.period_seconds * _NS) // grid.step_ns)
    first_index, span = int(evaluated[0]) if len(evaluated) else 0, len(evaluated)
    any_firing = np.zeros((chunk.rows, span), dtype=bool)
    severities: dict[str, Bools] = {}
    for tier in slo.tiers:
        threshold = rule_threshold(tier)
        long_window = _ratio_window(tier.long_seconds, grid.step_ns)
        long_back = long_window.lo
        long_burn = _burn(chunk, first_index, span, long_window, budget, threshold,
                          step_seconds)
        lead = min(long_back, first_index)  # history before `since`, to find onsets there
        short_burn = _burn(chunk, first_index - lead, span + lead,
                           _ratio_window(tier.short_seconds, grid.step_ns), budget, threshold,
                           step_seconds)
        events = None
        if slo.min_events:
            events_back = _window_buckets(tier.long_seconds, grid.step_ns, ratio=False)
            events = _events(chunk, first_index, span, events_back, tier.long_seconds,
                             step_seconds, slo.min_events)
        firing = fires_array(long_burn, short_burn[:, lead:], threshold, events, slo.min_events)
        short_over = burning_array(short_burn, threshold)
        any_firing |= firing
        seen = severities.setdefault(tier.severity, np.zeros_like(firing))
        seen |= firing
        if not firing.any() or not span:
            continue
        rows, starts, ends = _runs(firing)
        first, stop = evaluated[starts], evaluated[0] + ends  # grid indices; stop exclusive
        bad_events = chunk.cum_bad[rows, stop] - chunk.cum_bad[rows, first]
        period_total = chunk.cum_total[rows, stop] - \
            chunk.cum_total[rows, np.maximum(stop - period_back, 0)]
        with np.errstate(divide="ignore", invalid="ignore"):
            spent = np.where(bad_events > 0, bad_events / (slo.error_budget * period_total), 0.0)
        # The burn began where the short window last rose above the threshold: smoother than
        # single buckets, which cross and recross a slow tier's threshold on noise alone.
        positions = np.arange(span + lead, dtype=np.int64)
        last_below = np.maximum.accumulate(np.where(short_over, -1, positions), axis=1)
        onset = np.maximum(evaluated[0] - lead + last_below[rows, starts + lead] + 1,
                           first - long_back)
        flat = np.append(long_burn.ravel(), 0.0)
        bounds = np.column_stack((rows * span + starts, rows * span + ends)).ravel()
        peak = np.maximum.reduceat(flat, bounds)[::2]
        count = len(rows)
        alerts.append({
            "group": np.asarray(chunk.groups, dtype=object)[rows],
            "severity": np.full(count, tier.severity, dtype=object),
            "long_window": np.full(count, tier.long_window, dtype=object),
            "short_window": np.full(count, tier.short_window, dtype=object),
            "threshold": np.full(count, threshold),
            "start": grid.start_ns + first * grid.step_ns,
            "end": np.where(ends >= span, _NAT, grid.start_ns + stop * grid.step_ns),
            "onset": grid.start_ns + onset * grid.step_ns,
            "bad_events": bad_events, "budget_spent": spent, "peak_burn_rate": peak,
        })
    bad = _columns(chunk.bad, first_index, span)
    total = _columns(chunk.total, first_index, span)
    bad_sum, total_sum = bad.sum(axis=1), total.sum(axis=1)
    unalerted = np.where(any_firing, 0.0, bad).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_group.append({
            "group": np.asarray(chunk.groups, dtype=object),
            "pages": _count_runs(severities.get("page"), chunk.rows),
            "tickets": _count_runs(severities.get("ticket"), chunk.rows),
            "bad_events": bad_sum, "total_events": total_sum,
            "budget_spent": np.where(bad_sum > 0, bad_sum / (slo.error_budget * total_sum), 0.0),
            "unalerted_bad_events": unalerted,
            "unalerted_budget_spent": np.where(
                unalerted > 0, unalerted / (slo.error_budget * total_sum), 0.0),
        })


def _count_runs(firing: Bools | None, rows: int) -> Ints:
    if firing is None or not firing.size:
        return np.zeros(rows, dtype=np.int64)
    runs_rows = _runs(firing)[0]
    return np.bincount(runs_rows, minlength=rows).astype(np.int64)


def _joined(blocks: list[_Columns], column: str, dtype: Any) -> npt.NDArray[Any]:
    if not blocks:
        return np.zeros(0, dtype=dtype)
    return np.concatenate([b[column] for b in blocks]).astype(dtype, copy=False)


def _alert_frame(blocks: list[_Columns]) -> pd.DataFrame:
    """One frame from the per-tier column blocks, by group and start, tiers in policy order."""
    texts = ("group", "severity", "long_window", "short_window")
    data = {c: _joined(blocks, c, object if c in texts else np.float64)
            for c in ALERT_COLUMNS if c not in ("start", "end", "onset", "delay")}
    ns = {c: _joined(blocks, c, np.int64) for c in ("start", "end", "onset")}
    order = np.lexsort((ns["start"], data["group"].astype(str)))
    frame = pd.DataFrame({
        **{c: data[c][order] for c in texts},
        "threshold": data["threshold"][order],
        **{c: pd.to_datetime(ns[c][order], unit="ns", utc=True) for c in ns},
        "delay": pd.to_timedelta(ns["start"][order] - ns["onset"][order], unit="ns"),
        **{c: data[c][order] for c in ("bad_events", "budget_spent", "peak_burn_rate")},
    }, columns=list(ALERT_COLUMNS))
    for column in texts:
        frame[column] = frame[column].astype(str)
    return frame


def _group_frame(blocks: list[_Columns]) -> pd.DataFrame:
    counts = ("pages", "tickets")
    frame = pd.DataFrame({c: _joined(blocks, c, object if c == "group" else
                                     np.int64 if c in counts else np.float64)
                          for c in GROUP_COLUMNS}, columns=list(GROUP_COLUMNS))
    frame["group"] = frame["group"].astype(str)
    return frame
