"""What happens when Prometheus is down.

Every evaluation asks Prometheus; the first that fails starts an outage, kept in the state
store so a restart mid-outage neither forgets when it began nor announces it twice. Once it
has lasted `no_data_after` (schedule.no_data_after) the notice channels are told once; when
Prometheus answers again, and only if the outage was announced, they are told it recovered.
Meanwhile nothing pages or resolves: the evaluation has no data, the firing set stays as it
was, and tiers whose series come back late are held (`paging.dedup.UnseenHold`). Budget
refreshes keep their last figures (`Engine.refresh_budgets`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from slo_engine.paging import notices
from slo_engine.paging.blocks import SlackMessage
from slo_engine.spec.durations import describe_seconds
from slo_engine.storage import StateStore

log = logging.getLogger(__name__)

# Sends one engine-wide notice to every notice channel, each under `key/<channel>`.
Announce = Callable[[SlackMessage, str], None]


class PrometheusOutage:
    """The outage state machine: no outage → outage → announced outage → no outage."""

    def __init__(self, state: StateStore, prometheus_url: str, no_data_after: timedelta,
                 announce: Announce) -> None:
        self._state = state
        self._url = prometheus_url  # without credentials: it is shown in Slack
        self._no_data_after = no_data_after
        self._announce = announce

    def failed(self, reason: str, at: datetime) -> None:
        """A query failed at `at`: start the outage (or keep its start), and announce it
        once it has lasted `no_data_after`."""
        with self._state.transaction() as unit:
            outage = unit.start_outage(at, reason)
        if outage.noticed or at - outage.since < self._no_data_after:
            return
        self._announce(notices.outage_message(self._url, outage.since, at, reason),
                       f"no-data/{outage.since.isoformat()}")
        with self._state.transaction() as unit:
            unit.mark_outage_noticed()
        log.error("no SLO data for %s: outage notice sent",
                  describe_seconds((at - outage.since).total_seconds()))

    def answered(self, at: datetime) -> None:
        """Prometheus answered at `at`: end the outage, announcing the recovery if the
        outage itself was announced."""
        with self._state.read() as reader:
            outage = reader.outage()
        if outage is None:
            return
        if outage.noticed:
            self._announce(notices.recovery_message(self._url, outage.since, at),
                           f"no-data-recovered/{outage.since.isoformat()}")
        with self._state.transaction() as unit:
            unit.end_outage()
        log.info("Prometheus answers again after %s",
                 describe_seconds((at - outage.since).total_seconds()))
