"""The event ledger: bad and total event counts per SLO, per group, per time bucket.

Every budget number is computed from this one tidy frame, whatever filled it: the recorded
5m rates in Prometheus, a CSV or Parquet file from another system, or a test. Columns:

    timestamp  end of the bucket, tz-aware UTC; events counted in (timestamp − step, timestamp]
    service    service name
    slo        SLO name
    group      canonical group_by labels, "region=eu,zone=a"; "" for an ungrouped SLO
    total      events in the bucket (float: counts derived from rates need not be whole)
    bad        bad events in the bucket, 0 ≤ bad ≤ total

Each key's rows are in time order. `normalise` also groups rows by key; a refreshed frame
from the cache may interleave keys, and every consumer groups by key itself.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from slo_engine.errors import LedgerError
from slo_engine.spec.conventions import RESERVED_LABELS
from slo_engine.spec.model import QUERY_SLIS, SLO, Service

COLUMNS = ("timestamp", "service", "slo", "group", "total", "bad")
KEY = ("service", "slo", "group")
DEFAULT_STEP_SECONDS = 300
# Times pandas can hold as nanoseconds, which the budget maths use: a year-0001 row would
# parse (as microseconds) and then overflow deep inside a report.
EARLIEST = pd.Timestamp("1678-01-01", tz="UTC")
LATEST = pd.Timestamp("2262-01-01", tz="UTC")


def group_key(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def group_labels(key: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in key.split(",")) if key else {}


def series_group(slo: SLO, labels: Mapping[str, str]) -> str:
    """The group of one series of `slo` (recorded, raw or alert), as the rules group it.

    Ratio and latency SLIs group by their `group_by`. A query SLI groups by whatever labels
    its query keeps (`sum by (target) ...`): the recorded series, and so the alerts, carry
    them beyond the SLO's own labels, so every label but those and the reserved ones is
    the group.
    """
    if not isinstance(slo.sli, QUERY_SLIS):
        return group_key({k: labels.get(k, "") for k in slo.group_by}) if slo.group_by else ""
    own = RESERVED_LABELS.union(name for name, _ in slo.labels)
    return group_key({k: v for k, v in labels.items() if k not in own and v != ""})


def empty() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="float64" if c in ("total", "bad") else "object")
                          for c in COLUMNS})
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    for column in KEY:
        frame[column] = _categories(frame[column].astype(str))
    return frame


def _categories(values: pd.Series | pd.Categorical) -> pd.Series:
    """Key columns are categoricals with sorted categories: a million rows of 1,000 SLOs
    then group, filter and cache as small integer codes, not strings."""
    categorical = pd.Categorical(values)
    return pd.Series(categorical.reorder_categories(sorted(categorical.categories)))


def concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Ledger frames one after the other, key columns kept categorical (pandas would turn
    categoricals with different categories into strings)."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty()
    if len(frames) == 1:
        return frames[0].reset_index(drop=True)
    data: dict[str, object] = {}
    for column in COLUMNS:
        if column in KEY:
            data[column] = _categories(union_categoricals(
                [pd.Categorical(f[column]) for f in frames], ignore_order=True))
        else:
            data[column] = pd.concat([f[column] for f in frames], ignore_index=True)
    return pd.DataFrame(data)


def key_codes(frame: pd.DataFrame, columns: tuple[str, ...] = KEY) -> tuple[
        np.ndarray[Any, np.dtype[np.int64]], list[pd.Categorical]]:
    """One integer per row for its `columns` (in their sorted category order), and the
    categoricals to decode it: filters, grouping and ordering on codes, not strings."""
    categoricals = [pd.Categorical(frame[column]) for column in columns]
    key = np.zeros(len(frame), dtype=np.int64)
    for categorical in categoricals:
        key = key * (len(categorical.categories) + 1) + categorical.codes
    return key, categoricals


def by_key(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows grouped by key in normalise's order, when each key's rows are already in time
    order: a stable argsort of integer codes, far cheaper than sorting by value."""
    if len(frame) < 2:
        return frame.reset_index(drop=True)
    return frame.iloc[np.argsort(key_codes(frame)[0], kind="stable")].reset_index(drop=True)


def normalise(frame: pd.DataFrame, *, source: str = "frame") -> pd.DataFrame:
    """Check and coerce a frame to the ledger's columns and types; sort by key and time.

    Columns beyond timestamp, service, slo, group, total and bad are group labels and are
    folded into `group`. `service` may be missing when every SLO name is unique.
    """
    missing = [c for c in ("timestamp", "slo", "total", "bad") if c not in frame.columns]
    if missing:
        raise LedgerError(f"{source}: missing column(s) {', '.join(missing)}; an event file has "
                          "columns timestamp, slo, total, bad (further columns are group labels)")
    frame = frame.copy()
    label_columns = [c for c in frame.columns if c not in COLUMNS]
    if "group" not in frame.columns:
        frame["group"] = _label_groups(frame[label_columns]) if label_columns else ""
    if "service" not in frame.columns:
        frame["service"] = ""
    frame["timestamp"] = _timestamps(frame["timestamp"], source)
    for column in ("total", "bad"):
        values = pd.to_numeric(frame[column], errors="coerce")
        # inf would make every budget NaN and the status "healthy"
        bad_rows = values.isna() | (values < 0) | ~np.isfinite(values.to_numpy(dtype="float64"))
        if bad_rows.any():
            row = int(bad_rows.to_numpy().nonzero()[0][0]) + 2  # header is line 1
            raise LedgerError(f"{source}: line {row}: column {column} must be a number ≥ 0, "
                              f"and finite, got {frame[column].iloc[row - 2]!r}")
        frame[column] = values.astype("float64")
    over = frame["bad"] > frame["total"]
    if over.any():
        row = int(over.to_numpy().nonzero()[0][0]) + 2
        raise LedgerError(f"{source}: line {row}: bad ({frame['bad'].iloc[row - 2]}) exceeds "
                          f"total ({frame['total'].iloc[row - 2]})")
    # An ungrouped SLO's "" group (and a missing service) come back from CSV as NaN.
    for column in KEY:
        values = frame[column]
        if not isinstance(values.dtype, pd.CategoricalDtype):
            values = values.astype(object).fillna("").astype(str)
        frame[column] = _categories(values).array
    frame = frame[list(COLUMNS)]
    return frame.sort_values([*KEY, "timestamp"], kind="stable").reset_index(drop=True)


def _timestamps(values: pd.Series, source: str) -> pd.Series:
    """The timestamp column as tz-aware UTC, or LedgerError naming the first line whose time
    cannot be read or lies outside what the budget maths can hold (1678–2261)."""
    hint = "use ISO 8601 times, e.g. 2026-05-12T14:05:00Z"
    try:
        with warnings.catch_warnings():
            # Times in no one format are read one by one, as intended; pandas' warning
            # about it would reach the user's terminal as noise.
            warnings.filterwarnings("ignore", "Could not infer format", UserWarning)
            parsed = pd.to_datetime(values, utc=True)
    except (ValueError, TypeError, OverflowError) as error:
        try:
            each = pd.to_datetime(values, utc=True, errors="coerce", format="mixed")
        except (ValueError, TypeError, OverflowError):
            each = pd.Series(pd.NaT, index=values.index)
        unread = each.isna().to_numpy().nonzero()[0]
        if len(unread):
            raise LedgerError(f"{source}: line {int(unread[0]) + 2}: column timestamp: cannot "
                              f"read {values.iloc[int(unread[0])]!r} as a time; {hint}") from None
        raise LedgerError(f"{source}: column timestamp: {' '.join(str(error).split())}; "
                          f"{hint}") from None
    wrong = (parsed.isna() | (parsed < EARLIEST) | (parsed >= LATEST)).to_numpy().nonzero()[0]
    if len(wrong):
        row = int(wrong[0])
        raise LedgerError(f"{source}: line {row + 2}: column timestamp: "
                          f"{values.iloc[row]!r} is not a time between 1678 and 2261; {hint}")
    return parsed


def _label_groups(labels: pd.DataFrame) -> list[str]:
    """Group keys of label columns, row by row. A blank cell means the row has no such
    label: one file holds SLOs grouped by a column and SLOs that leave it empty."""
    text = labels.astype(str)
    blank = labels.isna().to_numpy() | (text.apply(lambda c: c.str.strip()) == "").to_numpy()
    names = list(labels.columns)
    return [group_key({n: v for n, v, b in zip(names, row, skip, strict=True) if not b})
            for row, skip in zip(text.itertuples(index=False), blank.tolist(), strict=True)]


def _row_groups(raw: pd.DataFrame) -> list[str]:
    """Each row's group key, from a `group` column or folded from the label columns: worked
    out once per file, for the ledger and for the checks that name the file's lines."""
    if "group" in raw.columns:
        return raw["group"].fillna("").astype(str).tolist()
    label_columns = [c for c in raw.columns if c not in COLUMNS]
    return _label_groups(raw[label_columns]) if label_columns else [""] * len(raw)


def read_event_file(path: Path, services: Sequence[Service] = ()) -> pd.DataFrame:
    """A CSV or Parquet file of event counts, as analysts export them from other systems.

    With `services`, rows that cannot be told apart are errors rather than silently wrong
    budgets (see `check_rows`)."""
    try:
        parquet = path.suffix in (".parquet", ".pq")
        # CSV cells stay text: a label "NA" or "1" must not become NaN or 1.0.
        raw = pd.read_parquet(path) if parquet else \
            pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise LedgerError(f"{path}: no such file") from None
    except (OSError, ValueError, ImportError) as error:
        raise LedgerError(f"{path}: cannot read events: {error}") from None
    groups = _row_groups(raw)
    frame = normalise(raw if "group" in raw.columns else raw.assign(group=groups),
                      source=str(path))
    check_rows(raw, groups, services, source=str(path))
    _check_duplicates(raw, groups, source=str(path))
    return frame


def _check_duplicates(raw: pd.DataFrame, groups: list[str], *, source: str) -> None:
    """A row repeated (same time, service, SLO and group) would count its events twice."""
    if raw.empty:
        return
    keys = pd.DataFrame({
        "timestamp": pd.to_datetime(raw["timestamp"], utc=True),
        "service": raw["service"].fillna("").astype(str).str.strip()
        if "service" in raw.columns else "",
        "slo": raw["slo"].astype(str),
        "group": groups})
    repeated = keys.duplicated(keep="first").to_numpy().nonzero()[0]
    if len(repeated):
        second = int(repeated[0])
        same = (keys.iloc[:second] == keys.iloc[second]).all(axis=1).to_numpy().nonzero()[0]
        first = int(same[0]) if len(same) else second
        raise LedgerError(f"{source}: lines {first + 2} and {second + 2}: the same time, "
                          f"SLO and group twice ({keys['slo'].iloc[second]!r} at "
                          f"{raw['timestamp'].iloc[second]}), so its events would count twice; "
                          "remove one, or add them up into one row")


def file_warnings(frame: pd.DataFrame, services: Sequence[Service], start: datetime,
                  end: datetime, *, source: str) -> list[str]:
    """What in an event file would otherwise silently read as `no_data`: rows of SLOs no
    given file defines (a typo, or a file exported for more services than these), and a
    file whose rows all fall outside the report's window (epoch times, a wrong year).
    Warnings, not errors: one export may serve many reports over a subset of the SLOs."""
    if frame.empty:
        return [f"{source}: the file holds no rows"]
    known = {(slo.service, slo.name) for service in services for slo in service.slos}
    names = {name for _, name in known}
    pairs = frame[["service", "slo"]].astype(str).drop_duplicates().itertuples(index=False)
    unknown = sorted({f"{s}/{n}" if s else n for s, n in pairs
                      if (s, n) not in known and not (s == "" and n in names)})
    warnings: list[str] = []
    if unknown:
        close = difflib.get_close_matches(unknown[0].rsplit("/", 1)[-1], sorted(names), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        warnings.append(f"{source}: rows of {len(unknown)} SLO(s) no given SLO file defines "
                        f"are ignored: {', '.join(unknown[:5])}{', …' if len(unknown) > 5 else ''}"
                        f"{hint}")
    stamps = frame["timestamp"]
    inside = (stamps > pd.Timestamp(start)) & (stamps <= pd.Timestamp(end))
    if not inside.any():
        warnings.append(f"{source}: no row falls in the report window {_iso(start)} – "
                        f"{_iso(end)}; the file's rows run from {_iso(stamps.min())} to "
                        f"{_iso(stamps.max())}; check the timestamps (ISO 8601, UTC) or --at")
    return warnings


def _iso(when: datetime) -> str:
    return pd.Timestamp(when).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def check_rows(raw: pd.DataFrame, groups: list[str], services: Sequence[Service], *,
               source: str) -> None:
    """Raise LedgerError where a file's rows cannot be given to its SLOs unambiguously.

    Without a service (column or cell), an SLO name two services share would count its
    events for both; a grouped SLO's rows without their `group_by` label would merge all
    groups into one. `raw` is the file as read and `groups` its rows' group keys, so lines
    are the file's.
    """
    slo = raw["slo"].astype(str).to_numpy()
    service = raw["service"].fillna("").astype(str).str.strip().to_numpy() \
        if "service" in raw.columns else np.full(len(raw), "", dtype=object)
    owners: dict[str, list[str]] = {}
    for one in services:
        for s in one.slos:
            owners.setdefault(s.name, []).append(s.service)
    for name, named in owners.items():
        rows = np.flatnonzero((slo == name) & (service == ""))
        if len(named) > 1 and len(rows):
            where = "the file has no service column" if "service" not in raw.columns \
                else "this row leaves service blank"
            raise LedgerError(
                f"{source}: line {rows[0] + 2}: SLO {name!r} is defined by services "
                f"{' and '.join(map(repr, sorted(set(named))))}, but {where}, so its events "
                "would count for both; add a service column naming each row's service")
    for one in services:
        for s in one.slos:
            rows = np.flatnonzero((slo == s.name) & np.isin(service, ["", s.service]))
            for label in s.group_by if len(rows) else ():
                if label not in raw.columns and "group" not in raw.columns:
                    raise LedgerError(
                        f"{source}: SLO {s.service}/{s.name} is grouped by {label!r}, but "
                        f"the file has no {label} column; add it, with each row's {label}")
                unlabelled = [r for r in rows.tolist() if label not in group_labels(groups[r])]
                if unlabelled:
                    raise LedgerError(
                        f"{source}: line {unlabelled[0] + 2}: SLO {s.service}/{s.name} is "
                        f"grouped by {label!r}, but this row leaves {label} blank")
