"""The scheduler and the service's signals: jobs at their times, never overlapping, never
stopping the loop; SIGHUP and file changes reload the SLO files (an invalid set is refused
and the last good one keeps running); SIGTERM lets running jobs finish before the flush."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from slo_engine.config import ScheduleConfig, load_config
from slo_engine.errors import ConfigError
from slo_engine.service.engine import Engine
from slo_engine.service.scheduler import EngineScheduler, digest_trigger, serve

WAIT = 10.0  # seconds: the bound of every wait below


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT:.0f} s: {what}")
        time.sleep(0.02)


class RecordingJobs:
    """Stands in for the engine (not under test here): records what runs, and when."""

    def __init__(self, evaluate_seconds: float = 0.0, fail: bool = False) -> None:
        self.evaluate_seconds = evaluate_seconds
        self.fail = fail
        self.calls: list[str] = []
        self.running = 0
        self.most_at_once = 0
        self.evaluating = threading.Event()
        self._lock = threading.Lock()

    def _record(self, name: str) -> None:
        with self._lock:
            self.calls.append(name)

    def evaluate(self) -> None:
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        self._record("evaluate")
        self.evaluating.set()
        try:
            time.sleep(self.evaluate_seconds)
            if self.fail:
                raise RuntimeError("Prometheus exploded")
        finally:
            with self._lock:
                self.running -= 1
            self._record("evaluated")

    def refresh_budgets(self) -> None:
        self._record("refresh_budgets")

    def send_digest(self) -> None:
        self._record("send_digest")

    def reload_if_changed(self) -> None:
        self._record("reload_if_changed")

    def start_delivery(self) -> None:
        self._record("start_delivery")

    def reload(self) -> bool:
        self._record("reload")
        return True

    def count(self, name: str) -> int:
        with self._lock:
            return self.calls.count(name)


@pytest.fixture()
def started() -> Iterator[Callable[[RecordingJobs, ScheduleConfig], EngineScheduler]]:
    schedulers: list[EngineScheduler] = []

    def start(jobs: RecordingJobs, schedule: ScheduleConfig) -> EngineScheduler:
        scheduler = EngineScheduler(jobs, schedule, watch_seconds=0.1)
        schedulers.append(scheduler)
        scheduler.start()
        return scheduler

    yield start
    for scheduler in schedulers:
        scheduler.shutdown(wait=True)


FAST = ScheduleConfig(evaluate="100ms", budget_refresh="1h", digest_cron="0 9 * * *")


def test_evaluation_and_refresh_start_at_once_then_follow_their_intervals(
        started: Callable[[RecordingJobs, ScheduleConfig], EngineScheduler]) -> None:
    jobs = RecordingJobs()
    scheduler = started(jobs, FAST)
    _until(lambda: jobs.count("evaluate") >= 3, "three evaluations")
    _until(lambda: jobs.count("reload_if_changed") >= 2, "the SLO files watched")
    assert jobs.count("refresh_budgets") == 1  # at start; the next one is an hour away
    next_refresh = scheduler.next_run("refresh_budgets")
    assert next_refresh is not None and next_refresh > datetime.now(UTC) + timedelta(minutes=59)


def test_a_slow_evaluation_never_overlaps_itself(
        started: Callable[[RecordingJobs, ScheduleConfig], EngineScheduler]) -> None:
    jobs = RecordingJobs(evaluate_seconds=0.35)  # longer than three intervals
    started(jobs, FAST)
    _until(lambda: jobs.count("evaluated") >= 3, "three slow evaluations")
    assert jobs.most_at_once == 1


def test_a_failing_job_runs_again_at_its_next_time(
        started: Callable[[RecordingJobs, ScheduleConfig], EngineScheduler]) -> None:
    jobs = RecordingJobs(fail=True)
    started(jobs, FAST)
    _until(lambda: jobs.count("evaluated") >= 3, "evaluations after failures")


def test_the_digest_runs_on_its_cron_in_utc(
        started: Callable[[RecordingJobs, ScheduleConfig], EngineScheduler]) -> None:
    scheduler = started(RecordingJobs(), ScheduleConfig(digest_cron="30 6 * * 1-5"))
    when = scheduler.next_run("digest")
    assert when is not None
    assert (when.hour, when.minute, when.utcoffset()) == (6, 30, timedelta(0))
    assert when.weekday() < 5
    assert when - datetime.now(UTC) <= timedelta(days=3, hours=1)


def test_an_invalid_cron_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"schedule.digest_cron '0 25 \* \* \*' is not a "
                                          r"crontab expression.*'0 9 \* \* \*'"):
        digest_trigger("0 25 * * *")


def test_sighup_reloads_and_sigterm_lets_the_running_evaluation_finish() -> None:
    jobs = RecordingJobs(evaluate_seconds=0.5)
    scheduler = EngineScheduler(jobs, ScheduleConfig(evaluate="1h"), watch_seconds=3600)
    stopped: list[str] = []

    def signals() -> None:
        jobs.evaluating.wait(WAIT)
        os.kill(os.getpid(), signal.SIGHUP)
        _until(lambda: jobs.count("reload") == 1, "a reload on SIGHUP")
        os.kill(os.getpid(), signal.SIGTERM)  # while the first evaluation still runs

    sender = threading.Thread(target=signals)
    sender.start()
    before = signal.getsignal(signal.SIGTERM)
    serve(scheduler, on_stop=lambda: stopped.append(f"flushed after {jobs.calls[-1]}"))
    sender.join()
    assert jobs.calls.index("reload") < jobs.calls.index("evaluated")  # SIGTERM came mid-run
    assert stopped == ["flushed after evaluated"]
    assert signal.getsignal(signal.SIGTERM) is before


class FailingReload(RecordingJobs):
    def reload(self) -> bool:
        super().reload()
        raise OSError("the SLO directory vanished")


def test_a_reload_that_raises_on_sighup_keeps_the_service_running(
        caplog: pytest.LogCaptureFixture) -> None:
    jobs = FailingReload()
    scheduler = EngineScheduler(jobs, ScheduleConfig(evaluate="1h"), watch_seconds=3600)
    stopped: list[bool] = []

    def signals() -> None:
        jobs.evaluating.wait(WAIT)  # the schedule started: the handlers are installed
        for count in (1, 2):  # the second SIGHUP is heard: the loop survived the first
            os.kill(os.getpid(), signal.SIGHUP)
            _until(lambda n=count: jobs.count("reload") == n, f"reload {count} on SIGHUP")
        os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=signals)
    previous = signal.signal(signal.SIGHUP, lambda number, frame: None)  # if serve stops early
    try:
        sender.start()
        serve(scheduler, on_stop=lambda: stopped.append(True))
    finally:
        sender.join()
        signal.signal(signal.SIGHUP, previous)
    assert stopped == [True]
    assert caplog.text.count("reload on SIGHUP failed") == 2


# --- reloading SLO files in a real engine (no Prometheus needed) ---------------------------


def _slo_file(directory: Path, service: str, names: list[str]) -> Path:
    document = {"apiVersion": "slo-engine/v1", "service": service, "owner": "shop",
                "slos": [{"name": n, "objective": 99.9, "sli": {"ratio": {
                    "bad": 'http_requests_total{code=~"5.."}',
                    "total": "http_requests_total"}}} for n in names]}
    path = directory / f"{service}.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


@pytest.fixture()
def engine(tmp_path: Path) -> Iterator[Engine]:
    slos = tmp_path / "slos"
    slos.mkdir()
    _slo_file(slos, "checkout", ["success"])
    config_file = tmp_path / "slo-engine.yaml"
    config_file.write_text(yaml.safe_dump({
        "apiVersion": "slo-engine/v1", "kind": "EngineConfig", "slo_files": ["slos"],
        "prometheus": {"url": "http://127.0.0.1:9"}, "slack": {"dry_run": True},
        "state": {"path": "state/state.db"}}), encoding="utf-8")
    engine = Engine.from_config(load_config(config_file, {}))
    yield engine
    engine.close()


def _names(engine: Engine) -> list[str]:
    return [f"{slo.service}/{slo.name}" for s in engine.services for slo in s.slos]


def test_an_invalid_slo_set_is_refused_and_the_last_good_one_keeps_running(
        engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert engine.reload_if_changed() is None  # nothing changed
    _slo_file(tmp_path / "slos", "checkout", ["success", "latency"])
    assert engine.reload_if_changed() is True
    assert _names(engine) == ["checkout/success", "checkout/latency"]
    (tmp_path / "slos" / "cart.yaml").write_text(
        "apiVersion: slo-engine/v1\nservice: cart\nowner: shop\nslos:\n"
        "  - name: success\n    objective: 120\n    sli: {ratio: {total: x_total}}\n",
        encoding="utf-8")
    assert engine.reload() is False
    assert _names(engine) == ["checkout/success", "checkout/latency"]
    assert engine.reload_error is not None and "cart.yaml:6" in engine.reload_error
    assert "SLO files rejected, still running the last good set (2 SLOs)" in caplog.text
    assert "cart.yaml:6" in caplog.text
    assert engine.reload_if_changed() is None  # refused once; not again until a change
    (tmp_path / "slos" / "cart.yaml").unlink()
    assert engine.reload_if_changed() is True
    assert engine.reload_error is None


def test_saving_an_slo_file_reloads_it_while_the_scheduler_runs(engine: Engine,
                                                               tmp_path: Path) -> None:
    scheduler = EngineScheduler(engine, ScheduleConfig(evaluate="1h", budget_refresh="1h"),
                                watch_seconds=0.1)
    scheduler.start()
    try:
        _slo_file(tmp_path / "slos", "search", ["results"])
        _until(lambda: "search/results" in _names(engine), "the new file loaded")
    finally:
        scheduler.shutdown()
