"""The PostgreSQL store behaves as the SQLite one: hypothesis drives both with the same random
sequence of storage calls (outbox, incidents, firing set, outages, budget notices, changes,
the lease; explicit `now`s) and every answer, error and id, and everything readable after
each call, must be the same."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from slo_engine.changes.events import Change
from slo_engine.errors import LeaseLost, StateError
from slo_engine.storage import NewIncident, StateStore, StateWriter
from slo_engine.storage.postgres import PostgresStore
from slo_engine.storage.sqlite import StateDB
from tests.support.postgres import PostgresServer, new_database, running_postgres

T = datetime(2026, 5, 12, 14, 0, tzinfo=UTC)

# few distinct moments, so the boundaries (a lease expiring at `now`, a not-before time
# reached exactly) come up
moments = st.integers(0, 20).map(lambda minutes: T + timedelta(minutes=minutes))
ids = st.integers(1, 12)
KEYS = ["checkout/availability//page", "checkout/latency//page", "search/availability//ticket"]
keys = st.sampled_from(KEYS)
texts = st.sampled_from(["", "a", "b", '{"é": 1}'])


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


def _outcome(action: Callable[[StateWriter], Any], store: StateStore) -> tuple[str, Any]:
    """What one call in a transaction of its own gave: its value, or which error (a
    LeaseLost's message is the same on both; other StateErrors name their backend)."""
    try:
        with store.transaction() as unit:
            return "ok", action(unit)
    except LeaseLost as error:
        return "LeaseLost", str(error)
    except StateError:
        return "StateError", None


TABLES = ("changes, notify_outbox, notify_incidents, engine_firing, engine_budget_notices, "
          "engine_outage, engine_lease")


class SameAnswers(RuleBasedStateMachine):
    postgres: PostgresStore  # one database, emptied for each example: CREATE DATABASE is slow

    def __init__(self) -> None:
        super().__init__()
        self.sqlite = StateDB(":memory:")
        with self.postgres.transaction() as unit:
            unit.connection.execute(f"TRUNCATE {TABLES}")
            unit.connection.execute("UPDATE state_ids SET last = 0")
        self.outbox_ids: list[int] = []
        self.tokens: list[int] = [0]
        self.not_befores: list[datetime] = []

    def teardown(self) -> None:
        self.sqlite.close()

    def both(self, action: Callable[[StateWriter], Any]) -> Any:
        expected = _outcome(action, self.sqlite)
        assert _outcome(action, self.postgres) == expected
        return expected[1] if expected[0] == "ok" else None

    def known(self, data: st.DataObject) -> int:
        return data.draw(st.sampled_from(self.outbox_ids) if self.outbox_ids else ids)

    @rule(kind=st.sampled_from(["post", "update", "reply", "upload"]), channel=texts,
          body=texts, at=moments, parent=st.none() | ids,
          notice=st.none() | st.sampled_from(["digest/a", "digest/b"]),
          content=st.none() | st.binary(max_size=8))
    def enqueue(self, kind: Any, channel: str, body: str, at: datetime, parent: int | None,
                notice: str | None, content: bytes | None) -> None:
        item = self.both(lambda unit: unit.enqueue(kind, channel, body, at, parent_id=parent,
                                                   notice_key=notice, content=content,
                                                   filename="c.png" if content else None))
        if item is not None:
            self.outbox_ids.append(item)

    @rule(data=st.data())
    def claim_next(self, data: st.DataObject) -> None:
        at = data.draw(st.sampled_from(self.not_befores) | moments if self.not_befores
                       else moments)  # exactly at a not-before time, often
        self.both(lambda unit: unit.claim_next(at))

    @rule(data=st.data(), state=st.sampled_from(["sent", "failed"]),
          posted=st.none() | st.tuples(texts, texts), error=st.none() | texts,
          at=st.none() | moments, drop=st.booleans())
    def finish(self, data: st.DataObject, state: Any, posted: tuple[str, str] | None,
               error: str | None, at: datetime | None, drop: bool) -> None:
        item = self.known(data)
        self.both(lambda unit: unit.finish(item, state, posted=posted, error=error, sent_at=at,
                                           drop_content=drop))

    @rule(data=st.data(), not_before=st.none() | moments)
    def requeue(self, data: st.DataObject, not_before: datetime | None) -> None:
        item = self.known(data)
        self.both(lambda unit: unit.requeue(item, not_before))
        if not_before is not None:
            self.not_befores.append(not_before)

    @rule()
    def requeue_interrupted(self) -> None:
        self.both(lambda unit: unit.requeue_interrupted())

    @rule(data=st.data(), body=texts)
    def replace_queued_body(self, data: st.DataObject, body: str) -> None:
        item = self.known(data)
        self.both(lambda unit: unit.replace_queued_body(item, body))

    @rule(data=st.data(), key=keys, at=moments, consumed=st.none() | st.floats(0, 1))
    def add_incident(self, data: st.DataObject, key: str, at: datetime,
                     consumed: float | None) -> None:
        post = self.known(data)
        incident = NewIncident(incident_key=key, service=key.split("/")[0], slo="availability",
                               group_key="", severity="page", channel="C0PAGE", post_id=post,
                               tiers=("1h/5m",), opened_at=at, consumed_at_open=consumed,
                               fingerprint="f", message="{}")
        self.both(lambda unit: unit.add_incident(incident))

    @rule(key=keys, at=moments, spent=st.none() | st.floats(0, 2), tiers=st.lists(texts))
    def change_incident(self, key: str, at: datetime, spent: float | None,
                        tiers: list[str]) -> None:
        def change(unit: StateWriter) -> None:
            found = unit.open_incident(key)
            if found is None:
                return
            unit.update_incident_tiers(found.id, tuple(tiers))
            unit.update_incident_page(found.id, "f2", '{"v": 2}')
            if spent is not None:
                unit.resolve_incident(found.id, at, spent, "{}")
        self.both(change)

    @rule(firing=st.dictionaries(texts, texts, max_size=3))
    def save_firing(self, firing: dict[str, str]) -> None:
        self.both(lambda unit: unit.save_firing(firing))

    @rule(at=moments, reason=texts, noticed=st.booleans(), end=st.booleans())
    def outage(self, at: datetime, reason: str, noticed: bool, end: bool) -> None:
        def change(unit: StateWriter) -> object:
            started = unit.start_outage(at, reason)
            if noticed:
                unit.mark_outage_noticed()
            if end:
                unit.end_outage()
            return started
        self.both(change)

    @rule(group=st.sampled_from(["", "region=eu"]),
          thresholds=st.lists(st.sampled_from([0.5, 0.75, 0.9, 1.0 / 3]), max_size=3),
          at=moments)
    def budget_notice(self, group: str, thresholds: list[float], at: datetime) -> None:
        self.both(lambda unit: unit.record_budget_notice("checkout", "availability", group,
                                                         thresholds, at))

    @rule(minutes=st.lists(st.integers(0, 30), max_size=3),
          service=st.sampled_from(["checkout", "search"]), at=moments)
    def add_changes(self, minutes: list[int], service: str, at: datetime) -> None:
        changes = [Change(time=T + timedelta(minutes=m), service=service, kind="deploy",
                          version=f"v{m % 7}") for m in minutes]
        self.both(lambda unit: unit.add_changes(changes, at))

    @rule(holder=st.sampled_from(["a", "b"]), ttl=st.integers(1, 5), at=moments)
    def acquire_lease(self, holder: str, ttl: int, at: datetime) -> None:
        lease = self.both(lambda unit: unit.acquire_lease(holder, timedelta(minutes=ttl), at))
        self.tokens.append(lease.token)

    @rule(holder=st.sampled_from(["a", "b"]), at=moments)
    def release_lease(self, holder: str, at: datetime) -> None:
        self.both(lambda unit: unit.release_lease(holder, at))

    @precondition(lambda self: bool(self.tokens))
    @rule(data=st.data(), at=moments)
    def fenced_enqueue(self, data: st.DataObject, at: datetime) -> None:
        token = data.draw(st.sampled_from(self.tokens))

        def write(unit: StateWriter) -> int:
            item = unit.enqueue("post", "#fenced", "{}", at)
            unit.check_fence(token, at)
            return item
        item = self.both(write)
        if item is not None:
            self.outbox_ids.append(item)

    @rule(at=moments)
    def prune(self, at: datetime) -> None:
        self.both(lambda unit: unit.prune(at))

    @invariant()
    def reads_agree(self) -> None:
        def snapshot(store: StateStore) -> tuple[object, ...]:
            with store.read() as reader:
                return (reader.firing(), reader.budget_notices_sent(), reader.outage(),
                        reader.lease(), reader.outbox_depth(), reader.outbox_not_before(),
                        [reader.outbox_item(item) for item in range(1, 14)],
                        [reader.queued_update(item) for item in range(1, 14)],
                        [reader.open_incident(key) for key in KEYS],
                        reader.notice_queued("digest/a"),
                        reader.changes(), reader.changes(["search"], since=T, limit=2,
                                                         kinds=["deploy"]))
        assert snapshot(self.postgres) == snapshot(self.sqlite)


def test_postgresql_answers_as_sqlite_does(postgres_server: PostgresServer) -> None:
    with PostgresStore(new_database(postgres_server)) as store:
        SameAnswers.postgres = store
        run = SameAnswers.TestCase
        run.settings = settings(max_examples=50, stateful_step_count=40, deadline=None,
                                suppress_health_check=[HealthCheck.too_slow])
        run().runTest()
