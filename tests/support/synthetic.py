"""Deterministic synthetic request counters and the ground truth they encode.

Prometheus' answers are checked against sums the generator computed itself, so every event
is known: traffic follows a day (sinusoid, `swing`x between trough and peak) with seeded
Poisson noise, incidents raise the error ratio, quiet intervals carry no traffic at all
(counters stay flat, they do not vanish), one instance may restart (a counter reset) and
another may never fail, exposing no bad-code series at all.
Bad events are spread with a fractional accumulator rather than drawn, so a window's error
ratio is the configured one and a 1 % comparison never depends on noise.

Counts are per 1-minute interval: interval k covers (start + 60k, start + 60(k+1)] and
shows up in the counter sample at start + 60(k+1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

MINUTE = 60
HOUR = 3600
DAY = 86400

Counts = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Incident:
    """Error ratio `error_ratio` during (start, start + minutes] on `instances` (all if empty)."""

    start: int
    minutes: int
    error_ratio: float
    instances: tuple[str, ...] = ()


@dataclass(frozen=True)
class Quiet:
    """No traffic at all during (start, start + minutes]: counters flat, series present."""

    start: int
    minutes: int


@dataclass(frozen=True)
class Profile:
    peak_per_minute: float = 6000.0
    swing: float = 10.0  # peak / trough
    peak_hour_utc: float = 15.0
    base_error_ratio: float = 0.0005
    incidents: tuple[Incident, ...] = ()
    quiet: tuple[Quiet, ...] = ()
    reset: tuple[str, int] | None = None  # (instance, unix s): its counters restart after
    # Instances that never fail and, like exporters creating label values lazily, expose
    # no bad-code series at all.
    error_free: tuple[str, ...] = ()


@dataclass(frozen=True)
class Series:
    labels: tuple[tuple[str, str], ...]
    values: Counts  # counter value at each of the minutes + 1 samples


@dataclass(frozen=True)
class Synthetic:
    """Counters of one metric family plus the per-instance, per-minute truth behind them."""

    metric: str  # OpenMetrics family name, without `_total`
    start: int  # unix seconds of the first sample
    minutes: int
    instance_label: str
    instances: tuple[str, ...]
    good: Counts  # shape (instances, minutes)
    bad: Counts
    series: tuple[Series, ...] = field(repr=False)

    @property
    def end(self) -> int:
        """Time of the last sample."""
        return self.start + MINUTE * self.minutes

    def _rows(self, instance: str | None) -> slice | list[int]:
        return slice(None) if instance is None else [self.instances.index(instance)]

    def _span(self, since: float, until: float) -> slice:
        """Intervals whose end lies in (since, until]."""
        lo = int(np.clip(np.floor((since - self.start) / MINUTE), 0, self.minutes))
        hi = int(np.clip(np.floor((until - self.start) / MINUTE), 0, self.minutes))
        return slice(lo, max(lo, hi))

    def counts(self, since: float, until: float, instance: str | None = None) -> tuple[int, int]:
        """(bad, total) events in (since, until], of one instance or all."""
        rows, span = self._rows(instance), self._span(since, until)
        bad = int(self.bad[rows, span].sum())
        return bad, bad + int(self.good[rows, span].sum())

    def error_ratio(self, since: float, until: float, instance: str | None = None) -> float:
        bad, total = self.counts(since, until, instance)
        return bad / total if total else float("nan")


def _diurnal(ends: npt.NDArray[np.int64], profile: Profile) -> npt.NDArray[np.float64]:
    trough = profile.peak_per_minute / profile.swing
    day_fraction = (ends % DAY) / DAY - profile.peak_hour_utc / 24
    wave = (1 + np.cos(2 * np.pi * day_fraction)) / 2  # 1 at the peak hour, 0 twelve hours off
    return np.asarray(trough + (profile.peak_per_minute - trough) * wave, dtype=np.float64)


def _spread(totals: npt.NDArray[np.float64]) -> Counts:
    """Whole events per minute whose running sum tracks `totals`' running sum (no drawing)."""
    running = np.floor(np.cumsum(totals) + 1e-9).astype(np.int64)
    return np.diff(running, prepend=0)


def _in(ends: npt.NDArray[np.int64], start: int, minutes: int) -> npt.NDArray[np.bool_]:
    return np.asarray((ends > start) & (ends <= start + MINUTE * minutes))


def generate(*, start: int, end: int, profile: Profile, seed: int,
             metric: str = "http_requests", labels: Mapping[str, str] | None = None,
             instance_label: str = "instance",
             instances: Sequence[str] = ("api-1", "api-2", "api-3"),
             shares: Sequence[float] | None = None,
             good_code: str = "200", bad_codes: Sequence[str] = ("500", "503")) -> Synthetic:
    """Counters `<metric>_total{labels, instance, code}` sampled every minute in [start, end].

    `shares` splits traffic across instances (default: equal); bad events go to one or two
    `bad_codes` (70 % to the first), good ones to `good_code`.
    """
    if len(bad_codes) not in (1, 2):
        raise ValueError("give one or two bad codes")
    if start % MINUTE or end % MINUTE or end <= start:
        raise ValueError("start and end must be whole minutes, start before end")
    minutes = (end - start) // MINUTE
    rng = np.random.default_rng(seed)
    ends = start + MINUTE * np.arange(1, minutes + 1, dtype=np.int64)
    weights = np.asarray(shares if shares is not None else [1.0] * len(instances), dtype=float)
    weights = weights / weights.sum()
    level = _diurnal(ends, profile)
    silent = np.zeros(minutes, dtype=bool)
    for quiet in profile.quiet:
        silent |= _in(ends, quiet.start, quiet.minutes)

    good = np.zeros((len(instances), minutes), dtype=np.int64)
    bad = np.zeros_like(good)
    for row, (instance, weight) in enumerate(zip(instances, weights, strict=True)):
        total = rng.poisson(level * weight).astype(np.int64)
        total[silent] = 0
        ratio = np.full(minutes, profile.base_error_ratio)
        for incident in profile.incidents:
            if not incident.instances or instance in incident.instances:
                ratio[_in(ends, incident.start, incident.minutes)] = incident.error_ratio
        if instance in profile.error_free:
            ratio[:] = 0
        bad[row] = np.minimum(_spread(total * ratio), total)
        good[row] = total - bad[row]

    series: list[Series] = []
    base = tuple((labels or {}).items())
    for row, instance in enumerate(instances):
        per_code = [(good_code, good[row])]
        if instance not in profile.error_free:
            per_code += zip(bad_codes, _split_bad(bad[row], len(bad_codes)), strict=True)
        for code, counts in per_code:
            values = _counter(counts, int(rng.integers(1_000, 100_000)),
                              _reset_index(profile, instance, start, minutes))
            series.append(Series((*base, (instance_label, instance), ("code", code)), values))
    return Synthetic(metric, start, minutes, instance_label, tuple(instances), good, bad,
                     tuple(series))


def _split_bad(bad: Counts, codes: int) -> list[Counts]:
    """Bad events per code: all to one, or 70/30 with both running sums exact."""
    if codes == 1:
        return [bad]
    first = np.diff(np.floor(np.cumsum(bad) * 0.7 + 1e-9).astype(np.int64), prepend=0)
    return [first, bad - first]


def _reset_index(profile: Profile, instance: str, start: int, minutes: int) -> int | None:
    if profile.reset is None or profile.reset[0] != instance:
        return None
    index = (profile.reset[1] - start) // MINUTE
    return index if 0 < index < minutes else None


def _counter(counts: Counts, offset: int, reset: int | None) -> Counts:
    """Counter samples: `offset` at the start, restarting from 0 just after sample `reset`."""
    values = offset + np.concatenate(([0], np.cumsum(counts)))
    if reset is not None:
        before = int(values[reset])
        values[reset + 1:] -= before
        if before and values[reset + 1] >= before:
            raise ValueError("a counter reset Prometheus cannot see: reset later in the data")
    return values.astype(np.int64)


def _label_text(labels: Iterable[tuple[str, str]]) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return ",".join(f'{k}="{escape(v)}"' for k, v in labels)


def write_openmetrics(path: Path, datasets: Sequence[Synthetic]) -> int:
    """One OpenMetrics file of every dataset (families kept together, `# EOF` last) for
    `promtool tsdb create-blocks-from openmetrics`; returns the number of samples."""
    families: dict[str, list[Synthetic]] = {}
    for data in datasets:
        families.setdefault(data.metric, []).append(data)
    samples = 0
    with path.open("w", encoding="utf-8") as out:
        for family, members in families.items():
            out.write(f"# HELP {family} Synthetic requests.\n# TYPE {family} counter\n")
            for data in members:
                stamps = [str(data.start + MINUTE * i) for i in range(data.minutes + 1)]
                for one in data.series:
                    prefix = f"{family}_total{{{_label_text(one.labels)}}} "
                    out.write("\n".join(f"{prefix}{v} {t}"
                                        for v, t in zip(one.values.tolist(), stamps,
                                                        strict=True)))
                    out.write("\n")
                    samples += len(stamps)
        out.write("# EOF\n")
    return samples
