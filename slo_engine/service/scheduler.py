"""When the engine's jobs run: APScheduler 3 in UTC, and the signals of a service.

- evaluate every `schedule.evaluate`, refresh budgets every `schedule.budget_refresh`, the
  digest on `schedule.digest_cron` (UTC), and a look at the SLO files every few seconds;
- a job never overlaps itself (max_instances 1) and runs once after a stall, not once per
  missed run (coalesce); a run later than its grace time is skipped, the next one comes;
- the Slack outbox is delivered on the engine's own thread, started with the schedule, so
  no job waits for Slack (a 429's Retry-After, an outage);
- SIGTERM and SIGINT stop the schedule, let running jobs finish and flush the outbox;
  SIGHUP reloads the SLO files (so does saving one of them).

A job that raises is logged and runs again at its next time: nothing stops the loop.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import Protocol

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from slo_engine.config import ScheduleConfig
from slo_engine.errors import ConfigError
from slo_engine.spec.durations import parse_duration

log = logging.getLogger(__name__)

WATCH_SECONDS = 10.0  # how often the SLO files are checked for changes
DIGEST_GRACE_SECONDS = 3600  # a digest an hour late is still worth sending


class Jobs(Protocol):
    """What the scheduler runs (slo_engine.service.engine.Engine provides it)."""

    def evaluate(self) -> object: ...

    def refresh_budgets(self) -> object: ...

    def send_digest(self) -> object: ...

    def reload_if_changed(self) -> object: ...

    def reload(self) -> bool: ...

    def start_delivery(self) -> None: ...


def digest_trigger(cron: str) -> CronTrigger:
    """The digest's crontab fields in UTC; ConfigError naming the setting when invalid."""
    try:
        return CronTrigger.from_crontab(cron, timezone=UTC)
    except ValueError as error:
        raise ConfigError(f"schedule.digest_cron {cron!r} is not a crontab expression "
                          f"({error}); write five fields, e.g. '0 9 * * *' for 09:00 UTC "
                          "daily") from None


class EngineScheduler:
    """The engine's jobs on a background scheduler."""

    def __init__(self, jobs: Jobs, schedule: ScheduleConfig, *,
                 watch_seconds: float = WATCH_SECONDS) -> None:
        self.jobs = jobs
        evaluate = parse_duration(schedule.evaluate)
        refresh = parse_duration(schedule.budget_refresh)
        digest = digest_trigger(schedule.digest_cron)
        self._scheduler = BackgroundScheduler(
            timezone=UTC, executors={"default": ThreadPoolExecutor(4)},
            job_defaults={"max_instances": 1, "coalesce": True})
        now = datetime.now(UTC)
        # The first evaluation and refresh run at once: a restarted engine resumes at once.
        self._add("evaluate", jobs.evaluate, IntervalTrigger(seconds=evaluate, timezone=UTC),
                  grace=evaluate, first=now)
        self._add("refresh_budgets", jobs.refresh_budgets,
                  IntervalTrigger(seconds=refresh, timezone=UTC), grace=refresh, first=now)
        self._add("digest", jobs.send_digest, digest, grace=DIGEST_GRACE_SECONDS)
        self._add("watch_slo_files", jobs.reload_if_changed,
                  IntervalTrigger(seconds=watch_seconds, timezone=UTC), grace=watch_seconds)

    def _add(self, name: str, job: Callable[[], object], trigger: CronTrigger | IntervalTrigger,
             *, grace: float, first: datetime | None = None) -> None:
        def run() -> None:
            try:
                job()
            except Exception:  # the next run may well succeed: log it, never stop the loop
                log.exception("job %s failed; it runs again at its next time", name)

        extra = {"next_run_time": first} if first is not None else {}
        self._scheduler.add_job(run, trigger, id=name, name=name,
                                misfire_grace_time=max(1, int(grace)), **extra)

    def start(self) -> None:
        self.jobs.start_delivery()
        self._scheduler.start()

    def next_run(self, name: str) -> datetime | None:
        job = self._scheduler.get_job(name)
        next_time: datetime | None = None if job is None else job.next_run_time
        return next_time

    def shutdown(self, wait: bool = True) -> None:
        """No new runs; with `wait`, the running ones finish first."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=wait)


def serve(scheduler: EngineScheduler, on_stop: Callable[[], None],
          stop: threading.Event | None = None) -> None:
    """Run until SIGTERM or SIGINT (or `stop` is set): reload on SIGHUP, then stop the
    schedule, wait for running jobs and call `on_stop` (flush the outbox, close). Call from
    the main thread: only it may install signal handlers."""
    stop = stop or threading.Event()
    reload_requested = threading.Event()

    def terminate(number: int, frame: FrameType | None) -> None:
        log.info("%s received: stopping after the running jobs", signal.Signals(number).name)
        stop.set()

    def hangup(number: int, frame: FrameType | None) -> None:
        reload_requested.set()

    previous = {s: signal.signal(s, handler) for s, handler in (
        (signal.SIGTERM, terminate), (signal.SIGINT, terminate), (signal.SIGHUP, hangup))}
    scheduler.start()
    try:
        while not stop.wait(0.2):
            if reload_requested.is_set():
                reload_requested.clear()
                log.info("SIGHUP received: reloading the SLO files")
                try:
                    scheduler.jobs.reload()
                except Exception:  # as in a job: a failed reload must not stop the service
                    log.exception("reload on SIGHUP failed; the last good set keeps running")
    finally:
        scheduler.shutdown(wait=True)
        try:
            on_stop()
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
        log.info("stopped")
