"""Two `slo-engine run` processes sharing one state store, one leading, against the real
things: an exporter whose errors the test controls, Prometheus (1 s scrape and evaluation)
loading the compiled rules, and the Slack stand-in. The lease is 6 s here (30 s by default).

- The leader SIGKILLed mid-incident: the standby takes the lease within the lease time and
  sends the resolution, once.
- The same Alertmanager webhook posted to both replicas at the same moment, again and
  again (Alertmanager sends each notification to every URL of the receiver): one page, one
  resolution.
- Slack answering 429 beyond slack-sdk's retries, and the leader shut down meanwhile: the
  standby that takes over waits out the Retry-After too (it is kept in the shared outbox).
- The state store gone for a minute and back: no page twice, one leader afterwards, the
  lease retaken with a new token, and the resolution still sent once.

Every test runs against each store of `shared_state`: PostgreSQL (Debian's, started by the
tests; stopping the server is how the store goes away) and SQLite shared by the two
processes on one host (another process holding its write lock takes it away).
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
import yaml

from slo_engine.app import generated_files, validate
from tests.support.binaries import require
from tests.support.exporter import Exporter
from tests.support.postgres import PostgresServer, new_database, running_postgres
from tests.support.processes import free_port
from tests.support.prometheus import PrometheusServer
from tests.support.slack_standin import TOKEN, SlackStandIn
from tests.test_service_e2e import BASELINE_RPS, DETECT, OUTAGE_RPS, RECOVERY_RPS, _spec, _until

pytestmark = pytest.mark.prometheus

LEASE = 6.0  # seconds: service.lease in these tests
API_TOKEN = "replicas-api-token"
SERVICES = {"killed": "C0PAGE", "twice": "C0OTHER", "split-a": "C0OTHER",
            "split-b": "C0OTHER", "paced": "C0TICKET", "stored": "C0NOTICE"}
RETRY_AFTER = 5  # seconds: longer than a takeover after a clean shutdown
STORE_DOWN = 60.0  # seconds the state store is gone
_RUNS = itertools.count(1)  # each test's replicas get a directory of their own


@dataclass
class Stack:
    workdir: Path
    exporters: dict[str, Exporter]
    prometheus: PrometheusServer
    slack: SlackStandIn
    slo_files: dict[str, Path]

    def posts(self, channel: str) -> list[Any]:
        return [r for r in self.slack.posts() if r.answer["channel"] == channel]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    binary = require("prometheus")
    workdir = tmp_path_factory.mktemp("replicas")
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


# --- the shared state store ------------------------------------------------------------

# Holds SQLite's write lock until the test closes its stdin: no replica can write (the lease
# included) while it is held, as none can while a database server is stopped.
_HOLD_LOCK = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
connection.execute("COMMIT")
"""


class SharedState(Protocol):
    """A state store the replicas share, and how a test takes it away."""

    def section(self) -> dict[str, Any]:
        """The engine config's `state:` section."""
        ...

    def stop(self) -> None:
        """Take the store away: every write fails until start()."""
        ...

    def start(self) -> None:
        ...

    def close(self) -> None:
        ...


class SharedSqlite:
    """One SQLite file both replicas open: two processes on one host."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "state.db"
        self._locker: subprocess.Popen[str] | None = None

    def section(self) -> dict[str, Any]:
        return {"path": str(self.path)}

    def stop(self) -> None:
        self._locker = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(self.path)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)
        assert self._locker.stdout is not None
        assert self._locker.stdout.readline().strip() == "locked"

    def start(self) -> None:
        locker, self._locker = self._locker, None
        if locker is not None:
            assert locker.stdin is not None
            locker.stdin.close()
            assert locker.wait(timeout=30) == 0

    def close(self) -> None:
        if self._locker is not None and self._locker.poll() is None:
            self._locker.kill()
            self._locker.wait()


class SharedPostgres:
    """A database of its own on the module's PostgreSQL server, as replicas on several hosts
    share one; taking it away stops the server (by PID) and starting brings it back on the
    same port."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.url = new_database(server)

    def section(self) -> dict[str, Any]:
        return {"url": self.url}

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        if self.server.process is None:
            self.server.start()

    def close(self) -> None:
        self.start()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture(params=["postgres", "sqlite"])
def shared_state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SharedState]:
    store: SharedState = SharedPostgres(request.getfixturevalue("postgres")) \
        if request.param == "postgres" else SharedSqlite(tmp_path)
    try:
        yield store
    finally:
        store.close()


# --- the replicas ---------------------------------------------------------------------

@dataclass
class Replica:
    """One `slo-engine run` process."""

    name: str
    config: Path
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Replica:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "slo_engine", "run", "--config", str(self.config)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _until(lambda: self.ready() is not None, f"{self.name} answering /readyz")
        return self

    def ready(self) -> dict[str, Any] | None:
        try:
            body: dict[str, Any] = httpx.get(f"{self.url}/readyz", timeout=10).json()
        except httpx.TransportError:
            return None
        return body

    def leads(self) -> bool:
        body = self.ready()
        return body is not None and body["role"]["role"] == "leader"

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name))

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self) -> int:
        """SIGTERM and the exit code (KILL after 30 s, which fails the test)."""
        assert self.process is not None
        if self.process.poll() is not None:
            return self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise

    def log_tail(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-3000:]


def _replicas(stack: Stack, state: SharedState, service: str, paging: str,
              *, retries: int = 0, also: tuple[str, ...] = ()) -> list[Replica]:
    """Two replicas of one engine config (their names and ports aside) for `service`'s SLO
    (and `also`'s), started in turn: the first leads."""
    services = (service, *also)
    run = next(_RUNS)
    stack.slack.forget()
    replicas: list[Replica] = []
    for name in ("a", "b"):
        port = free_port()
        path = stack.workdir / f"{service}-{run}" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump({
            "apiVersion": "slo-engine/v1", "kind": "EngineConfig",
            "slo_files": [str(stack.slo_files[s]) for s in services], "paging": paging,
            "prometheus": {"url": stack.prometheus.url, "timeout": "5s", "step": "1m"},
            "slack": {"token": TOKEN, "base_url": stack.slack.url, "retries": retries,
                      "owners": {s: {"page": SERVICES[s], "ticket": "C0NOTICE"}
                                 for s in services}},
            "state": state.section(),
            "schedule": {"evaluate": "2s", "budget_refresh": "1h", "no_data_after": "10m",
                         "digest_chart": False, "digest_cron": "0 0 1 1 *"},
            "http": {"listen": f"127.0.0.1:{port}", "tokens": [API_TOKEN]},
            "service": {"replica_id": f"{service}-{name}", "lease": f"{LEASE:.0f}s"},
        }), encoding="utf-8")
        replica = Replica(f"{service}-{name}", path, port, path.with_suffix(".log")).start()
        replicas.append(replica)
        if name == "a":
            _until(replica.leads, "the first replica leading", timeout=LEASE * 2)
    return replicas


def _stop_all(replicas: list[Replica]) -> None:
    for replica in replicas:
        if replica.process is not None and replica.process.poll() is None:
            replica.terminate()


def _the_leader(replicas: list[Replica]) -> Replica | None:
    """The one replica that says it leads; None while none does. Two is a failure."""
    leading = [r for r in replicas if r.process is not None and r.process.poll() is None
               and r.leads()]
    assert len(leading) <= 1, f"{[r.name for r in leading]} both lead"
    return leading[0] if leading else None


def _resolved(stack: Stack, post: Any) -> bool:
    message = stack.slack.messages[post.answer["ts"]]
    return message.text.startswith("RESOLVED") and bool(stack.slack.replies(message.ts))


def _thread_replies(stack: Stack, post: Any) -> list[Any]:
    return [r for r in stack.slack.calls("chat.postMessage", ok_only=True)
            if r.params.get("thread_ts") == post.answer["ts"]]


# --- (1) the leader killed ------------------------------------------------------------

# Engine mode: the burn is Prometheus' to see, so a second run on the same service would
# find the first run's recovery traffic in its 1h window; PostgreSQL is the store replicas
# on several hosts share.
@pytest.mark.parametrize("shared_state", ["postgres"], indirect=True)
def test_the_standby_takes_over_a_killed_leader_and_resolves_once(
        stack: Stack, shared_state: SharedState) -> None:
    replicas = _replicas(stack, shared_state, "killed", "engine")
    leader, standby = replicas
    try:
        assert not standby.leads()
        assert standby.ready()["role"]["holder"] == leader.name  # type: ignore[index]
        assert leader.metric('slo_engine_leader{replica="killed-a"}') == 1
        assert standby.metric('slo_engine_leader{replica="killed-b"}') == 0
        stack.exporters["killed"].set(error_ratio=1.0, rps=OUTAGE_RPS)
        [page] = _until(lambda: stack.posts("C0PAGE"), "the page", timeout=DETECT)
        assert page.params["text"].startswith("PAGE killed / availability")
        _until(lambda: leader.metric("slo_engine_outbox_depth") == 0,
               "the page recorded as sent")  # killed mid-incident, not mid-call
        token = leader.metric("slo_engine_lease_token")

        leader.kill()
        killed = time.monotonic()
        _until(standby.leads, "the standby leading", timeout=LEASE * 3)
        # Within the lease time, plus the standby's renewal interval and this poll.
        assert time.monotonic() - killed <= LEASE + LEASE / 3 + 2
        assert standby.metric("slo_engine_lease_token") == token + 1
        assert standby.metric('slo_engine_leader{replica="killed-b"}') == 1

        stack.exporters["killed"].set(error_ratio=0.0, rps=RECOVERY_RPS)
        _until(lambda: _resolved(stack, page), "the resolution from the new leader",
               timeout=DETECT)
        time.sleep(LEASE)  # a few more evaluations: nothing sent again
        assert len(stack.posts("C0PAGE")) == 1
        assert len(_thread_replies(stack, page)) == 1
    finally:
        _stop_all(replicas)
        stack.exporters["killed"].set(error_ratio=0.0, rps=BASELINE_RPS)


# --- (2) one webhook, two replicas ------------------------------------------------------

def _webhook(service: str, status: str, started: datetime) -> dict[str, Any]:
    """Alertmanager's notification of a service's page tier."""
    alert = {"status": status,
             "labels": {"alertname": "SLOErrorBudgetBurn", "service": service,
                        "slo": "availability", "severity": "page", "long_window": "1h",
                        "short_window": "5m"},
             "annotations": {}, "startsAt": started.isoformat(),
             "endsAt": ("0001-01-01T00:00:00Z" if status == "firing"
                        else datetime.now(UTC).isoformat()),
             "generatorURL": "", "fingerprint": "0f0f"}
    return {"version": "4", "status": status, "receiver": "slo-engine", "groupKey": "{}",
            "truncatedAlerts": 0, "groupLabels": {}, "commonLabels": {},
            "commonAnnotations": {}, "externalURL": "http://127.0.0.1:9093",
            "alerts": [alert]}


def _post_to_all(replicas: list[Replica], payload: dict[str, Any],
                 *others: dict[str, Any]) -> list[int]:
    """The payload to every replica at the same moment, as Alertmanager's receiver with one
    webhook_config per replica sends it (or, with `others`, one payload each); each
    replica's status code."""
    payloads = [payload, *others] if others else [payload] * len(replicas)
    barrier = threading.Barrier(len(replicas))
    codes = [0] * len(replicas)

    def send(index: int) -> None:
        with httpx.Client(timeout=30,
                          headers={"Authorization": f"Bearer {API_TOKEN}"}) as client:
            barrier.wait()
            codes[index] = client.post(f"{replicas[index].url}/api/v1/alertmanager",
                                       json=payloads[index]).status_code

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(replicas))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return codes


def _page_of(stack: Stack, service: str) -> list[Any]:
    return [p for p in stack.posts("C0OTHER")
            if p.params["text"].startswith(f"PAGE {service} /")]


def test_a_webhook_both_replicas_receive_pages_once(
        stack: Stack, shared_state: SharedState) -> None:
    replicas = _replicas(stack, shared_state, "twice", "alertmanager")
    try:
        started = datetime.now(UTC)
        for _ in range(3):  # Alertmanager re-sends a firing group every group_interval
            assert _post_to_all(replicas, _webhook("twice", "firing", started)) == [200, 200]
        [page] = _until(lambda: _page_of(stack, "twice"), "the page")
        assert page.params["text"].startswith("PAGE twice / availability")
        for _ in range(2):
            assert _post_to_all(replicas, _webhook("twice", "resolved", started)) == [200, 200]
        _until(lambda: _resolved(stack, page), "the resolution")
        time.sleep(LEASE / 2)  # the leader's outbox looks again: nothing more to send
        assert len(_page_of(stack, "twice")) == 1
        assert len(_thread_replies(stack, page)) == 1
        assert sum(r.metric('slo_engine_webhook_alerts_total{outcome="accepted"}')
                   for r in replicas) == 10
        assert all(r.metric("slo_engine_outbox_depth") == 0 for r in replicas)
    finally:
        _stop_all(replicas)


def test_two_incidents_reaching_two_replicas_at_once_both_resolve(
        stack: Stack, shared_state: SharedState) -> None:
    """Each replica writes the whole firing set: one written from a stale read would drop
    the other replica's incident, whose resolution would then be ignored."""
    replicas = _replicas(stack, shared_state, "split-a", "alertmanager", also=("split-b",))
    try:
        started = datetime.now(UTC)
        assert _post_to_all(replicas, _webhook("split-a", "firing", started),
                            _webhook("split-b", "firing", started)) == [200, 200]
        pages = {s: _until(lambda s=s: _page_of(stack, s), f"the page of {s}")[0]
                 for s in ("split-a", "split-b")}
        assert _post_to_all(replicas, _webhook("split-b", "resolved", started),
                            _webhook("split-a", "resolved", started)) == [200, 200]
        for service, page in pages.items():
            _until(lambda page=page: _resolved(stack, page), f"the resolution of {service}")
    finally:
        _stop_all(replicas)


# --- (3) 429 beyond the retries ---------------------------------------------------------

def test_a_retry_after_holds_whichever_replica_delivers(
        stack: Stack, shared_state: SharedState) -> None:
    replicas = _replicas(stack, shared_state, "paced", "alertmanager", retries=1)
    leader, standby = replicas
    try:
        stack.slack.answer_429(10_000, retry_after=RETRY_AFTER, method="chat.postMessage")

        def calls() -> list[Any]:
            return [c for c in stack.slack.calls("chat.postMessage")
                    if c.params.get("channel") == "C0TICKET"]

        payload = _webhook("paced", "firing", datetime.now(UTC))
        assert _post_to_all(replicas, payload) == [200, 200]
        # slack-sdk's retry, then the outbox's: the leader's last try is refused.
        _until(lambda: len(calls()) >= 2, "the leader's tries", timeout=RETRY_AFTER * 3)
        assert leader.terminate() == 0  # a clean shutdown hands the lease over at once
        handed = time.monotonic()
        _until(standby.leads, "the standby leading", timeout=LEASE)
        took_over = time.monotonic()
        assert took_over - handed < LEASE  # released, not left to lapse
        last_refused = calls()[-1].at
        assert took_over - last_refused < RETRY_AFTER  # it leads before the wait is over

        _until(lambda: any(c.at > took_over for c in calls()), "the standby's try",
               timeout=RETRY_AFTER * 3)
        stack.slack.clear_faults()
        _until(lambda: stack.posts("C0TICKET"), "the page", timeout=RETRY_AFTER * 3)
        made = calls()
        assert [c.status for c in made][-1] == 200 and len(stack.posts("C0TICKET")) == 1
        # Every try waited out the Retry-After of the one before, whoever made it.
        assert all(b.at - a.at >= RETRY_AFTER - 0.05 for a, b in itertools.pairwise(made))
    finally:
        stack.slack.clear_faults()
        _stop_all(replicas)


# --- (4) the state store gone for a minute --------------------------------------------

def test_the_state_store_gone_for_a_minute_pages_nothing_twice(
        stack: Stack, shared_state: SharedState) -> None:
    replicas = _replicas(stack, shared_state, "stored", "alertmanager")
    try:
        started = datetime.now(UTC)
        firing = _webhook("stored", "firing", started)
        assert _post_to_all(replicas, firing) == [200, 200]
        [page] = _until(lambda: stack.posts("C0NOTICE"), "the page")
        # The store goes away mid-incident, not mid-call: once the leader has recorded the
        # page as sent (a leader cut off between Slack's answer and that record sends it
        # again: at least once, as Running in production says).
        _until(lambda: replicas[0].metric("slo_engine_outbox_depth") == 0,
               "the page recorded as sent")
        token = replicas[0].metric("slo_engine_lease_token")

        shared_state.stop()
        gone = time.monotonic()
        # Alertmanager's re-sends meanwhile are refused (503: it sends them again).
        assert all(code == 503 for code in _post_to_all(replicas, firing))
        time.sleep(max(0.0, STORE_DOWN - (time.monotonic() - gone)))
        shared_state.start()

        # One leader again, holding a new token: the lease lapsed while nobody could renew,
        # and the replica that led before learns it on its next renewal or fenced write.
        _until(lambda: max(r.metric("slo_engine_lease_token") for r in replicas) > token,
               "the lease taken again", timeout=LEASE * 3)
        time.sleep(LEASE / 3 + 1)  # a renewal of each replica since
        leader = _until(lambda: _the_leader(replicas), "a leader after the store is back",
                        timeout=LEASE * 3)
        assert leader.metric("slo_engine_lease_token") > token
        assert _post_to_all(replicas, firing) == [200, 200]
        resolved = _webhook("stored", "resolved", started)
        assert _post_to_all(replicas, resolved) == [200, 200]
        _until(lambda: _resolved(stack, page), "the resolution")
        time.sleep(LEASE / 2)
        assert len(stack.posts("C0NOTICE")) == 1
        assert len(_thread_replies(stack, page)) == 1
        assert _the_leader(replicas) is leader
        assert sum(r.metric("slo_engine_leader") for r in replicas) == 1
    finally:
        _stop_all(replicas)
