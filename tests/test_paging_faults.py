"""Faults between detection and Slack, against the real things: Prometheus (1 s scrape and
evaluation) loading the compiled rules, the engine as `slo-engine run` wires it, a second
process holding the state database's write lock, and the Slack stand-in answering 429.

- The state database locked by another process just as a burn starts: the transition is
  not lost (it used to be: the notify error was swallowed and the firing set committed
  anyway), and it pages exactly once when the lock is gone.
- Slack answering 429 with Retry-After: evaluation keeps its cadence while the messages
  wait (slack-sdk used to sleep inside the evaluate job), each retry waits out the
  Retry-After, and they go out once Slack takes them, in order, none lost or doubled.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from slo_engine.app import generated_files, validate
from tests.support.binaries import require
from tests.support.exporter import Exporter
from tests.support.in_process import InProcessEngine
from tests.support.processes import free_port
from tests.support.prometheus import PrometheusServer
from tests.support.slack_standin import TOKEN, SlackStandIn
from tests.test_service_e2e import BASELINE_RPS, DETECT, OUTAGE_RPS, _spec, _until

pytestmark = pytest.mark.prometheus

SERVICES = {"locked": "C0PAGE", "paced-a": "C0OTHER", "paced-b": "C0OTHER"}
LOCK_WAIT_SECONDS = DETECT + 10  # the burn is found and its write refused (10 s busy timeout)
RETRY_AFTER = 3  # seconds: Slack's answer to every post until the test lifts the 429s


@dataclass
class Stack:
    workdir: Path
    exporters: dict[str, Exporter]
    prometheus: PrometheusServer
    slack: SlackStandIn
    slo_files: dict[str, Path]

    def config(self, name: str, services: list[str], evaluate: str) -> Path:
        path = self.workdir / name / "slo-engine.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump({
            "apiVersion": "slo-engine/v1", "kind": "EngineConfig",
            "slo_files": [str(self.slo_files[s]) for s in services], "paging": "engine",
            "prometheus": {"url": self.prometheus.url, "timeout": "5s", "step": "1m"},
            "slack": {"token": TOKEN, "base_url": self.slack.url, "retries": 2,
                      "owners": {s: {"page": SERVICES[s], "ticket": "C0NOTICE"}
                                 for s in services}},
            "state": {"path": "state/state.db"},
            "schedule": {"evaluate": evaluate, "budget_refresh": "1h", "no_data_after": "30s",
                         "digest_cron": "0 0 1 1 *"},
            "http": {"listen": f"127.0.0.1:{free_port()}", "tokens": []},
        }), encoding="utf-8")
        return path

    def posts(self, channel: str) -> list[Any]:
        return [r for r in self.slack.posts() if r.answer["channel"] == channel]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    binary = require("prometheus")
    workdir = tmp_path_factory.mktemp("paging-faults")
    specs = workdir / "slos"
    specs.mkdir()
    slo_files = {}
    for service in SERVICES:
        slo_files[service] = specs / f"{service}.yaml"
        slo_files[service].write_text(yaml.safe_dump(_spec(service, service)),
                                      encoding="utf-8")
    rules = []
    for relative, text in generated_files(validate([specs]), with_tests=False).items():
        rules.append(workdir / "rules" / relative)
        rules[-1].parent.mkdir(parents=True, exist_ok=True)
        rules[-1].write_text(text, encoding="utf-8")
    exporters = {s: Exporter(rps=BASELINE_RPS, service=s, version="web:1").start()
                 for s in SERVICES}
    slack = SlackStandIn().start()
    prometheus = PrometheusServer(binary, workdir / "prometheus", tuple(rules),
                                  evaluation_interval="1s", scrape_interval="1s",
                                  scrape_targets={s: [e.target] for s, e in exporters.items()})
    try:
        prometheus.start()
        yield Stack(workdir, exporters, prometheus, slack, slo_files)
    finally:
        prometheus.stop()
        slack.stop()
        for exporter in exporters.values():
            exporter.stop()


# Holds the write lock until the test closes its stdin, so a slow machine cannot let the
# burn arrive after the lock is gone.
_HOLD_LOCK = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
connection.execute("COMMIT")
"""


def test_a_burn_starting_while_another_process_holds_the_write_lock_pages_once(
        stack: Stack) -> None:
    config = stack.config("locked", ["locked"], evaluate="2s")
    running = InProcessEngine.start(config)
    locker: subprocess.Popen[str] | None = None
    try:
        _until(lambda: running.sample("slo_engine_last_evaluation_timestamp_seconds"),
               "a first evaluation")
        state = config.parent / "state" / "state.db"
        locker = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(state)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        stack.exporters["locked"].set(error_ratio=1.0, rps=OUTAGE_RPS)

        # The burn is found while the lock is held; its write is refused, and said so.
        _until(lambda: running.sample("slo_engine_pending_transitions") >= 1,
               "the transition held back", timeout=LOCK_WAIT_SECONDS)
        assert running.sample("slo_engine_state_write_failures_total") >= 1
        assert stack.posts("C0PAGE") == []

        assert locker.stdin is not None
        locker.stdin.close()  # release the lock
        assert locker.wait(timeout=30) == 0
        [page] = _until(lambda: stack.posts("C0PAGE"), "the page after the lock")
        assert page.params["text"].startswith("PAGE locked / availability")
        _until(lambda: running.sample("slo_engine_pending_transitions") == 0,
               "no transition held back")
        assert running.engine.readiness()["transitions"] == "ok"
        first = running.sample("slo_engine_last_evaluation_timestamp_seconds")
        _until(lambda: running.sample("slo_engine_last_evaluation_timestamp_seconds") > first
               + 2, "two more evaluations")
        assert len(stack.posts("C0PAGE")) == 1  # not zero, not two
    finally:
        if locker is not None and locker.poll() is None:
            locker.kill()
            locker.wait()
        running.stop()
        stack.exporters["locked"].set(error_ratio=0.0, rps=BASELINE_RPS)


def test_a_429_holds_the_messages_not_the_evaluations(stack: Stack) -> None:
    config = stack.config("paced", ["paced-a", "paced-b"], evaluate="1s")
    running = InProcessEngine.start(config)
    try:
        _until(lambda: running.sample("slo_engine_last_evaluation_timestamp_seconds"),
               "a first evaluation")
        # Slack rate-limits every post until the test lifts it: the two burns are found up
        # to a rule group's interval apart, and both must be seen waiting.
        stack.slack.answer_429(10_000, retry_after=RETRY_AFTER, method="chat.postMessage")
        for service in ("paced-a", "paced-b"):
            stack.exporters[service].set(error_ratio=1.0, rps=OUTAGE_RPS)

        def calls() -> list[Any]:
            return [c for c in stack.slack.calls("chat.postMessage")
                    if c.params.get("channel") == "C0OTHER"]

        [limited, *_] = _until(calls, "the first try", timeout=DETECT)
        assert limited.status == 429
        # While the pages wait out their Retry-After, evaluation keeps its cadence and the
        # second page queues behind the first; the outbox depth says both wait.
        evaluations = []

        def both_waiting() -> bool:
            evaluations.append(running.sample("slo_engine_last_evaluation_timestamp_seconds"))
            time.sleep(0.1)
            return running.sample("slo_engine_outbox_depth") == 2

        _until(both_waiting, "both pages waiting", timeout=DETECT)
        waited = time.monotonic() - limited.at
        assert len(set(evaluations)) >= waited / 3, "evaluation stalled"
        assert stack.posts("C0OTHER") == []
        stack.slack.clear_faults()

        posts = _until(lambda: len(stack.posts("C0OTHER")) == 2 and stack.posts("C0OTHER"),
                       "both pages", timeout=RETRY_AFTER * 3)
        made = calls()
        refused = [c for c in made if c.status == 429]
        assert [c.status for c in made] == [429] * len(refused) + [200, 200]  # none doubled
        # Each retry waited out the Retry-After it was given, and nothing overtook the head.
        assert all(b.at - a.at >= RETRY_AFTER for a, b in itertools.pairwise(refused))
        assert made[len(refused)].at - refused[-1].at >= RETRY_AFTER
        assert {c.params["text"] for c in refused} == {limited.params["text"]}
        assert made[len(refused)].params["text"] == limited.params["text"]  # in order
        assert sorted(p.params["text"].split(" ")[1] for p in posts) == ["paced-a", "paced-b"]
        _until(lambda: running.sample("slo_engine_outbox_depth") == 0, "the outbox drained")
    finally:
        stack.slack.clear_faults()
        running.stop()
        for service in ("paced-a", "paced-b"):
            stack.exporters[service].set(error_ratio=0.0, rps=BASELINE_RPS)
