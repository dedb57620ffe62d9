"""The demo's month: event counts and change events for the example SLOs, no server needed.

Deterministic (seeded), so the demo's output and the README's chart are the same on every
run. Over `days` of 5m buckets: diurnal and weekly traffic with Poisson noise, a quiet hour
(a maintenance window with no traffic at all), two incidents that a deploy started and a
rollback ended, one slow burn with no change behind it, and the everyday changes (routine
deploys, config, feature flags, migrations, infrastructure) that a page has to tell the
suspect apart from.

Which SLO gets which story depends only on its position among all SLOs (the first the
recent incident, the fourth the older one, the fifth the slow burn, all modulo the number of
SLOs), so any set of SLO files gets a complete demo. Noise is drawn per UTC day, seeded by
the day, so the same `end` gives the same buckets whatever the number of days.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from slo_engine.budget.ledger import group_key, normalise
from slo_engine.changes.events import Change, ChangeKind
from slo_engine.spec.model import SLO, Service

STEP = timedelta(minutes=5)
STEP_SECONDS = 300
DAY_SECONDS = 86_400
GROUP_VALUES = ("eu", "us")
BASELINE_BURN = 0.3  # a healthy SLO spends 30 % of its budget a period, in noise
PEAK_HOUR_UTC = 15
TROUGH = 0.15  # traffic at the trough, as a share of the peak
WEEKEND = 0.7  # traffic on Saturdays and Sundays, as a share of weekdays
SUSPECT_MARGIN = timedelta(hours=3)  # no routine change this close before a scripted burn

BurnKind = Literal["incident", "slow_burn"]


@dataclass(frozen=True)
class Burn:
    """A burn scripted into the demo: what the backtest, the charts and a page should find.

    Buckets ending in (start, end] burn at `burn_rate` in the SLO's first group (a third of
    it in the others). `cause` is the deploy just before `start`, `fix` the rollback that
    ended it; a slow burn has neither and runs to the end of the data."""

    service: str
    slo: str
    kind: BurnKind
    start: datetime
    end: datetime
    burn_rate: float
    description: str = ""  # what the causing deploy changed
    cause: Change | None = None
    fix: Change | None = None


@dataclass(frozen=True)
class DemoData:
    """The demo's ledger (ledger.py columns), its changes (oldest first) and the script."""

    ledger: pd.DataFrame
    changes: list[Change]
    burns: tuple[Burn, ...]
    start: datetime
    end: datetime


@dataclass(frozen=True)
class _Script:
    role: int  # position of the SLO among all SLOs, modulo their number
    kind: BurnKind
    ago: timedelta  # start of the burn before the end of the data
    duration: timedelta | None  # None: until the end of the data
    burn_rate: float
    description: str = ""


SCRIPT = (
    _Script(0, "incident", timedelta(days=2), timedelta(minutes=45), 50.0,
            "new HTTP client with connection pooling"),
    _Script(4, "slow_burn", timedelta(hours=36), None, 2.5),
    _Script(3, "incident", timedelta(days=10, hours=22), timedelta(minutes=80), 25.0,
            "request validation rewrite"),
)
QUIET_AGO = timedelta(days=5) - timedelta(hours=3)
QUIET_FOR = timedelta(hours=1)

AUTHORS = ("a.kowalski", "j.okafor", "s.tanaka", "r.silva", "m.haddad")
NOISE: dict[ChangeKind, tuple[str, ...]] = {
    "config": ("raise the connection pool to 64", "lower the upstream timeout to 2s",
               "sample 10% of access logs", "rotate the TLS certificate",
               "tune the GC pause target"),
    "feature_flag": ("one-click-reorder=25%", "dark-mode=on", "new-ranking=10%",
                     "saved-carts=50%", "passkeys=5%"),
    "migration": ("add index on orders(created_at)", "backfill users.locale",
                  "drop table legacy_sessions"),
    "infrastructure": ("node pool upgrade to Kubernetes 1.29", "move to the new load balancer"),
}
# Chance of one change of each kind on a day, per service (deploys on weekdays only).
DAILY_CHANCE: dict[ChangeKind, float] = {"deploy": 0.4, "config": 0.1, "feature_flag": 0.1,
                                         "migration": 0.03, "infrastructure": 0.02}


def demo_data(services: Sequence[Service], end: datetime, days: int = 30,
              seed: int = 7) -> DemoData:
    """The demo's `days` of 5m buckets ending at `end` (floored to 5m) for every SLO in
    `services`, with its change events."""
    stop = pd.Timestamp(end).tz_convert(UTC).floor("5min").to_pydatetime()
    buckets = int(timedelta(days=days) / STEP)
    times = pd.date_range(end=stop, periods=buckets, freq="5min")
    first = times[0].to_pydatetime() - STEP
    slos = [slo for service in services for slo in service.slos]
    burns = _burns(slos, stop, first)
    quiet = (stop - QUIET_AGO, stop - QUIET_AGO + QUIET_FOR)
    changes, burns = _changes(services, burns, first, stop, quiet, seed)
    frames = [_events(slo, index, times, burns, quiet, seed) for index, slo in enumerate(slos)]
    ledger = normalise(pd.concat(frames, ignore_index=True), source="demo")
    return DemoData(ledger, changes, burns, first, stop)


def demo_events(services: list[Service], end: datetime, days: int = 30,
                seed: int = 7) -> pd.DataFrame:
    """The demo's ledger alone."""
    return demo_data(services, end, days, seed).ledger


def _burns(slos: Sequence[SLO], stop: datetime, first: datetime) -> tuple[Burn, ...]:
    burns = []
    for script in SCRIPT if slos else ():
        slo = slos[script.role % len(slos)]
        start = stop - script.ago
        if start - SUSPECT_MARGIN < first:
            continue  # too little history for this part of the story
        end = stop if script.duration is None else start + script.duration
        burns.append(Burn(slo.service, slo.name, script.kind, start, end, script.burn_rate,
                          script.description))
    return tuple(burns)


def _events(slo: SLO, index: int, times: pd.DatetimeIndex, burns: Sequence[Burn],
            quiet: tuple[datetime, datetime], seed: int) -> pd.DataFrame:
    """The SLO's buckets at `times`. Noise is drawn for whole UTC days, seeded by the day,
    so a longer span holds the same buckets as a shorter one where they overlap."""
    groups = ([{label: value for label in slo.group_by} for value in GROUP_VALUES]
              if slo.group_by else [{}])
    stamps = np.asarray(times.as_unit("s").asi8)
    days = stamps // DAY_SECONDS
    frames = []
    for number, labels in enumerate(groups):
        peak = 2000.0 * (1 + index % 3) / len(groups)
        total = np.zeros(len(times))
        bad = np.zeros(len(times))
        for day in np.unique(days).tolist():
            grid = pd.date_range(pd.Timestamp(day * DAY_SECONDS, unit="s", tz=UTC),
                                 periods=DAY_SECONDS // STEP_SECONDS, freq=STEP)
            rng = np.random.default_rng([seed, index, number, day])
            counts = rng.poisson(peak * _traffic(grid)).astype(float)
            counts[_between(grid, *quiet)] = 0
            burn = BASELINE_BURN * rng.lognormal(-0.06, 0.35, size=len(grid))
            for scripted in burns:
                if (scripted.service, scripted.slo) == (slo.service, slo.name):
                    burn[_between(grid, scripted.start, scripted.end)] = \
                        scripted.burn_rate if number == 0 else scripted.burn_rate / 3
            spent = rng.binomial(counts.astype(np.int64), np.clip(burn * slo.error_budget, 0, 1))
            mine = days == day
            where = (stamps[mine] - day * DAY_SECONDS) // STEP_SECONDS
            total[mine] = counts[where]
            bad[mine] = spent[where]
        frames.append(pd.DataFrame({"timestamp": times, "service": slo.service,
                                    "slo": slo.name, "group": group_key(labels),
                                    "total": total, "bad": bad}))
    return pd.concat(frames, ignore_index=True)


def _traffic(times: pd.DatetimeIndex) -> npt.NDArray[np.float64]:
    """Share of the peak rate: a daily wave peaking at PEAK_HOUR_UTC, quieter weekends."""
    hours = (times.hour + times.minute / 60).to_numpy()
    wave = (1 + np.cos(2 * np.pi * (hours - PEAK_HOUR_UTC) / 24)) / 2
    weekend = np.where(times.day_of_week >= 5, WEEKEND, 1.0)
    return np.asarray((TROUGH + (1 - TROUGH) * wave) * weekend, dtype=np.float64)


def _between(times: pd.DatetimeIndex, start: datetime, end: datetime) -> npt.NDArray[np.bool_]:
    """Buckets ending in (start, end]."""
    return np.asarray((times > pd.Timestamp(start)) & (times <= pd.Timestamp(end)))


# --- change events --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Deploy:
    time: datetime
    role: Literal["routine", "cause", "fix"]  # "cause" and "fix" are fields of Burn
    burn: Burn | None = None


def _changes(services: Sequence[Service], burns: tuple[Burn, ...], first: datetime,
             stop: datetime, quiet: tuple[datetime, datetime], seed: int) -> tuple[
                 list[Change], tuple[Burn, ...]]:
    """Every change of the month, and the burns with the deploys that caused and ended them."""
    blocked = [(b.service, b.start - SUSPECT_MARGIN, b.end + timedelta(hours=1))
               for b in burns]
    blocked.append(("", quiet[0] - timedelta(hours=1), quiet[1] + timedelta(hours=1)))

    def free(service: str, moment: datetime) -> bool:
        """No routine change on a burning service near its burn, nor near the quiet hour."""
        return first < moment < stop and not any(
            lo <= moment <= hi for where, lo, hi in blocked if where in ("", service))

    changes: list[Change] = []
    scripted: dict[tuple[str, datetime], Burn] = {}
    names = sorted({service.name for service in services})
    for number, service in enumerate(names):
        deploys: list[_Deploy] = []
        day = first.replace(hour=0, minute=0, second=0, microsecond=0)
        while day < stop:
            rng = np.random.default_rng([seed, 1000 + number, day.toordinal()])
            for kind, chance in DAILY_CHANCE.items():
                hour = rng.uniform(2, 4) if kind == "migration" else rng.uniform(9, 18)
                moment = (day + timedelta(hours=float(hour))).replace(second=0, microsecond=0)
                happens = rng.random() < chance and (kind != "deploy" or day.weekday() < 5)
                pick = int(rng.integers(0, 1 << 30))
                if not happens or not free(service, moment):
                    continue
                if kind == "deploy":
                    deploys.append(_Deploy(moment, "routine"))
                else:
                    changes.append(_noise(service, kind, moment, pick))
            day += timedelta(days=1)
        for burn in burns:
            if burn.service == service and burn.kind == "incident":
                deploys.append(_Deploy(burn.start - timedelta(minutes=2), "cause", burn))
                deploys.append(_Deploy(burn.end - timedelta(minutes=3), "fix", burn))
        for change, deploy in _versions(service, sorted(deploys, key=lambda d: d.time),
                                        seed):
            changes.append(change)
            if deploy.burn is not None:
                key = (deploy.burn.slo, deploy.burn.start)
                found = scripted.get(key, deploy.burn)
                scripted[key] = (replace(found, cause=change) if deploy.role == "cause"
                                 else replace(found, fix=change))
    if len(names) > 1:
        changes.extend(_bystanders(names, burns))
    burns = tuple(scripted.get((b.slo, b.start), b) for b in burns)
    return sorted(changes, key=lambda c: (c.time, c.service, c.kind)), burns


def _versions(service: str, deploys: Sequence[_Deploy], seed: int) -> list[
        tuple[Change, _Deploy]]:
    """The deploys as one version history: each names the version it replaced, and a
    rollback returns to the version before the deploy it undoes."""
    current = f"{service}:{_commit(seed, service, 'first')}"
    before_cause = current
    out: list[tuple[Change, _Deploy]] = []
    for deploy in deploys:
        run = f"https://ci.example.com/{service}/runs/{deploy.time:%Y%m%d%H%M}"
        if deploy.role == "fix" and deploy.burn is not None:
            bad = current
            current = before_cause
            change = Change(
                time=deploy.time, service=service, kind="deploy", version=current,
                previous_version=bad, commit=current.rsplit("-", 1)[-1], author="oncall",
                url=run, rollback_command=f"deploy {bad}", source="demo",
                description=f"rollback of {bad}: {deploy.burn.slo} burning "
                            f"{deploy.burn.burn_rate:g}x")
            out.append((change, deploy))
            continue
        commit = _commit(seed, service, deploy.time.isoformat())
        version = f"{service}:{deploy.time:%Y.%m.%d}-{commit}"
        before_cause, previous, current = current, current, version
        description = deploy.burn.description if deploy.burn is not None else \
            f"release {deploy.time:%Y.%m.%d}-{commit}"
        change = Change(
            time=deploy.time, service=service, kind="deploy", version=version,
            previous_version=previous, commit=commit, author="ci", url=run,
            rollback_command=f"deploy {previous}", description=description, source="demo")
        out.append((change, deploy))
    return out


def _commit(seed: int, service: str, what: str) -> str:
    """A commit hash that depends only on what it names, not on the span generated."""
    return hashlib.sha1(f"{seed}:{service}:{what}".encode(), usedforsecurity=False).hexdigest()[:7]


def _noise(service: str, kind: ChangeKind, moment: datetime, pick: int) -> Change:
    what = NOISE[kind][pick % len(NOISE[kind])]
    author = AUTHORS[pick % len(AUTHORS)]
    if kind == "feature_flag":
        return Change(time=moment, service=service, kind=kind, version=what, author=author,
                      description=f"flag {what}", source="demo")
    return Change(time=moment, service=service, kind=kind, author=author, description=what,
                  url=f"https://changes.example.com/{service}/{pick % 100000}", source="demo")


def _bystanders(names: Sequence[str], burns: Iterable[Burn]) -> list[Change]:
    """A flag flipped on another service shortly before each incident: a page must name
    the suspect of its own service, not whatever changed last."""
    out = []
    for burn in burns:
        if burn.kind != "incident":
            continue
        other = names[(names.index(burn.service) + 1) % len(names)]
        out.append(Change(time=burn.start - timedelta(minutes=40), service=other,
                          kind="feature_flag", version="holiday-banner=on", author="m.haddad",
                          description="flag holiday-banner=on", source="demo"))
    return out


# --- files ----------------------------------------------------------------------------------


def write_events(frame: pd.DataFrame, path: Path) -> int:
    """A ledger as CSV (ISO 8601 UTC times) or Parquet, as `--data` reads it back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
    return len(frame)


def write_changes(changes: Iterable[Change], path: Path) -> int:
    """Changes as JSON lines (`changes.read_change_lines` reads them back)."""
    lines = [json.dumps(change.as_json()) + "\n" for change in changes]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines), encoding="utf-8")
    return len(lines)
