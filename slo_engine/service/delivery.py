"""The outbox's own thread: Slack's pacing (a 429's Retry-After, an outage) never holds an
evaluation, a budget refresh or a webhook, which only queue calls and wake it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

log = logging.getLogger(__name__)

IDLE_SECONDS = 5.0  # a look at the outbox this often even unwoken: other processes queue too
MIN_WAIT_SECONDS = 0.05


class DeliveryLoop:
    """Calls `deliver` when woken, or when the outbox's head may be tried again (the time
    `deliver` returns, from Retry-After), or every `idle` seconds."""

    def __init__(self, deliver: Callable[[], datetime | None], *,
                 idle: float = IDLE_SECONDS) -> None:
        self._deliver = deliver
        self._idle = idle
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slo-engine-outbox",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Something was queued: deliver now, unless the head waits for its Retry-After."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """No more deliveries after the one in flight (bounded by Slack's timeout)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # before delivering: a wake during it means go again
            try:
                next_attempt = self._deliver()
            except Exception:  # the next round may well succeed: never stop delivering
                log.exception("outbox delivery failed; retried in %.0f s", self._idle)
                next_attempt = None
            wait = self._idle
            if next_attempt is not None:
                until = (next_attempt - datetime.now(UTC)).total_seconds()
                wait = min(self._idle, max(MIN_WAIT_SECONDS, until))
            self._wake.wait(wait)
