"""Where an alert is de-duplicated: one page per incident, never two.

The rule, in four steps, whichever paging mode reports the alerts:
1. A tier is identified by `tier_id`: its incident key (service, SLO, group, severity) and
   its window pair. The firing set maps tier ids to the firing alert and is kept in the state
   database (`encode_firing` / `decode_firing`), so a restart sees no new transition.
2. Pages follow transitions, not states: `transitions` (the engine's evaluations) and
   `apply_alerts` (Alertmanager's webhook, which re-sends firing alerts) hand a tier to the
   notifier once when it starts and once when it stops; a repeat is no transition.
3. A firing tier whose windows have no sample (Prometheus was down, its rules have not run
   again yet) stays firing for UNSEEN_HOLD (`UnseenHold`): resolving it would be a guess,
   and a page again a minute later.
4. The notifier folds the tiers of one incident key into one Slack message
   (`Notifier.handle`): the first posts, later ones update it in place, the last to stop
   resolves it; notices are sent once per notice key (the outbox's idempotency key).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from slo_engine.paging.burn_alert import BurnAlert

# A firing tier without samples stays firing this long: after an outage Prometheus records
# the fast windows again within a rule interval, the slow ones within SLOW_GROUP_INTERVAL.
UNSEEN_HOLD = timedelta(minutes=10)


def tier_id(alert: BurnAlert) -> str:
    """One tier of one incident: what the firing set (and the state database) is keyed by."""
    return f"{alert.incident_key}/{alert.tier}"


def transitions(previous: Mapping[str, BurnAlert], current: Mapping[str, BurnAlert],
                at: datetime) -> list[BurnAlert]:
    """What to tell the notifier when the firing tiers go from `previous` to `current`: each
    tier that started (with its burn rates now), then each that stopped (resolved at `at`).
    Starts go first, so an incident whose tiers hand over (one stops as another starts in
    the same evaluation) stays one incident: the notifier resolves it with its last tier."""
    started = [current[key] for key in sorted(current.keys() - previous.keys())]
    stopped = [replace(previous[key], firing=False, at=at)
               for key in sorted(previous.keys() - current.keys())]
    return started + stopped


def apply_alerts(previous: Mapping[str, BurnAlert], alerts: Iterable[BurnAlert]) -> tuple[
        dict[str, BurnAlert], list[BurnAlert]]:
    """Reports of single tiers (Alertmanager's webhook) applied to the firing tiers: the new
    firing set, and the transitions — tiers that started, then tiers that were firing and
    resolved (at the time Alertmanager gives). A repeated report of a known tier is no
    transition: Alertmanager re-sends firing alerts every repeat_interval."""
    current = dict(previous)
    started: list[BurnAlert] = []
    stopped: list[BurnAlert] = []
    for alert in alerts:
        key = tier_id(alert)
        if alert.firing and key not in current:
            current[key] = alert
            started.append(alert)
        elif not alert.firing and key in current:
            del current[key]
            stopped.append(alert)
    return current, started + stopped


class Held(NamedTuple):
    """The unseen tiers that stay firing, and those let go with how long they went unseen."""

    kept: dict[str, BurnAlert]
    released: dict[str, timedelta]


class UnseenHold:
    """Step 3: remembers since when each firing tier has had no samples (in memory: a
    restart starts the hold again, which only delays a resolution)."""

    def __init__(self, hold: timedelta = UNSEEN_HOLD) -> None:
        self.hold = hold
        self._since: dict[str, datetime] = {}  # tier_id -> first evaluation without data

    def apply(self, previous: Mapping[str, BurnAlert], unseen: set[str],
              at: datetime) -> Held:
        """Which of the `unseen` tiers of `previous` stay firing at `at`."""
        self._since = {key: self._since.get(key, at) for key in unseen}
        kept = {key: previous[key] for key, since in self._since.items()
                if at - since < self.hold}
        released = {key: at - self._since[key] for key in sorted(unseen - kept.keys())}
        return Held(kept, released)


def encode_firing(firing: Mapping[str, BurnAlert]) -> dict[str, str]:
    """The firing set as the state store keeps it: tier id → the alert as JSON."""
    return {tier_id(alert): _alert_json(alert) for alert in firing.values()}


def decode_firing(stored: Mapping[str, str]) -> dict[str, BurnAlert]:
    return {key: _alert_from_json(body) for key, body in stored.items()}


def _alert_json(alert: BurnAlert) -> str:
    data: dict[str, Any] = {**alert.__dict__, "at": alert.at.isoformat(),
                            "group": [list(pair) for pair in alert.group]}
    return json.dumps(data, sort_keys=True)


def _alert_from_json(body: str) -> BurnAlert:
    data = json.loads(body)
    data["at"] = datetime.fromisoformat(data["at"])
    data["group"] = tuple((str(k), str(v)) for k, v in data["group"])
    return BurnAlert(**data)
