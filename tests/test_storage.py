"""The state store's contract, run against every implementation (SQLite, and PostgreSQL on a
real server with a fresh database per test): units of work commit together or not at all,
writes keyed by natural keys are idempotent, the outbox goes out in order, and the firing
set, outages and budget notices survive a reopen."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from slo_engine.changes.events import Change
from slo_engine.errors import LeaseLost, StateError
from slo_engine.storage import NewIncident, StateStore
from slo_engine.storage.postgres import PostgresStore
from slo_engine.storage.sqlite import StateDB
from tests.support.postgres import PostgresServer, new_database, running_postgres

T = datetime(2026, 5, 12, 14, 0, tzinfo=UTC)

Opener = Callable[[], StateStore]


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens the same store again each call: what a restart sees."""
    if request.param == "postgres":
        url = new_database(request.getfixturevalue("postgres_server"))
        return lambda: PostgresStore(url)
    path = tmp_path / "state.db"
    return lambda: StateDB(path)


@pytest.fixture
def store(opener: Opener) -> Iterator[StateStore]:
    opened = opener()
    yield opened
    opened.close()


def change(minutes: int, version: str | None = None) -> Change:
    return Change(time=T + timedelta(minutes=minutes), service="checkout", kind="deploy",
                  version=version or f"v{minutes}")


def incident(key: str, post_id: int) -> NewIncident:
    return NewIncident(incident_key=key, service="checkout", slo="availability", group_key="",
                       severity="page", channel="C0PAGE", post_id=post_id, tiers=("1h/5m",),
                       opened_at=T, consumed_at_open=0.25, fingerprint="f1", message="{}")


def test_a_failed_unit_of_work_writes_nothing(store: StateStore) -> None:
    with pytest.raises(RuntimeError), store.transaction() as unit:
        unit.save_firing({"checkout/availability//page/1h/5m": "{}"})
        unit.enqueue("post", "C0PAGE", "{}", T)
        unit.add_changes([change(0)], T)
        raise RuntimeError("the process dies between the two writes")
    with store.read() as reader:
        assert reader.firing() == {}
        assert reader.outbox_depth() == 0
        assert reader.changes() == []


def test_the_firing_set_and_its_outbox_rows_commit_together(opener: Opener) -> None:
    with opener() as first, first.transaction() as unit:
        unit.save_firing({"a/1h/5m": '{"a": 1}', "b/6h/30m": '{"b": 2}'})
        unit.enqueue("post", "C0PAGE", "{}", T)
    with opener() as second, second.read() as reader:
        assert reader.firing() == {"a/1h/5m": '{"a": 1}', "b/6h/30m": '{"b": 2}'}
        assert reader.outbox_depth() == 1
    with opener() as third:
        with third.transaction() as unit:
            unit.save_firing({"b/6h/30m": '{"b": 3}'})  # replaces the whole set
        with third.read() as reader:
            assert reader.firing() == {"b/6h/30m": '{"b": 3}'}


def test_changes_are_inserted_once_by_their_identity(store: StateStore) -> None:
    assert store.add_changes([change(0), change(5)]) == [change(0), change(5)]
    assert store.add_changes([change(5), change(10)]) == [change(10)]
    with store.transaction() as unit:  # the same inside a larger unit of work
        assert unit.add_changes([change(0), change(15)], T) == [change(15)]
    assert [c.version for c in store.changes()] == ["v15", "v10", "v5", "v0"]
    assert [c.version for c in store.changes(since=T + timedelta(minutes=5),
                                             until=T + timedelta(minutes=10))] == ["v10", "v5"]


def test_the_outbox_is_claimed_oldest_first_and_a_claim_counts_an_attempt(
        store: StateStore) -> None:
    with store.transaction() as unit:
        first = unit.enqueue("post", "#a", "1", T)
        second = unit.enqueue("reply", "#a", "2", T, parent_id=first)
        third = unit.enqueue("upload", "#b", "chart", T, filename="c.png", content=b"png")
    with store.transaction() as unit:
        claimed = unit.claim_next()
        assert claimed is not None and (claimed.id, claimed.attempts) == (first, 0)
        unit.finish(first, "sent", posted=("C0A", "1.0"), sent_at=T)
    with store.transaction() as unit:
        claimed = unit.claim_next()
        assert claimed is not None and (claimed.id, claimed.parent_id) == (second, first)
        unit.requeue(second)  # its delivery did not finish: it goes first again
    with store.transaction() as unit:
        assert [getattr(unit.claim_next(), "id", None) for _ in range(2)] == [second, third]
        assert unit.claim_next() is None
        assert unit.requeue_interrupted() == 2  # a crash left both being sent
    with store.read() as reader:
        post = reader.outbox_item(first)
        assert post is not None and (post.state, post.channel, post.ts) == ("sent", "C0A", "1.0")
        item = reader.outbox_item(second)
        assert item is not None and (item.state, item.attempts) == ("queued", 2)
        assert reader.outbox_depth() == 2


def test_a_notice_key_is_queued_once(store: StateStore) -> None:
    with store.transaction() as unit:
        unit.enqueue("post", "#a", "digest", T, notice_key="digest/#a/2026-05-12")
    with store.read() as reader:
        assert reader.notice_queued("digest/#a/2026-05-12")
        assert not reader.notice_queued("digest/#a/2026-05-13")
    with pytest.raises(StateError), store.transaction() as unit:
        unit.enqueue("post", "#a", "again", T, notice_key="digest/#a/2026-05-12")
    with store.read() as reader:
        assert reader.outbox_depth() == 1


def test_an_incident_key_has_one_open_incident_and_pruning_keeps_what_it_needs(
        store: StateStore) -> None:
    with store.transaction() as unit:
        post = unit.enqueue("post", "#a", "{}", T)
        opened = unit.add_incident(incident("checkout/availability//page", post))
        assert unit.replace_queued_body(post, '{"v": 2}')
        unit.enqueue("update", "#a", "{}", T, parent_id=post)
        update = unit.queued_update(post)
    assert update is not None
    with pytest.raises(StateError), store.transaction() as unit:
        unit.add_incident(incident("checkout/availability//page", post))
    with store.transaction() as unit:
        for item in (post, update):
            unit.claim_next()
            unit.finish(item, "sent", posted=("C0A", "1.0"), sent_at=T)
        assert not unit.replace_queued_body(post, "{}")  # it has left
        unit.update_incident_tiers(opened, ("1h/5m", "6h/30m"))
        unit.prune(T + timedelta(days=1))  # the open incident's post stays
    with store.read() as reader:
        found = reader.open_incident("checkout/availability//page")
        assert found is not None and found.id == opened and found.opened_at == T
        assert found.tiers == ("1h/5m", "6h/30m")
        assert reader.outbox_item(post) is not None and reader.outbox_item(update) is None
    with store.transaction() as unit:
        unit.resolve_incident(opened, T + timedelta(hours=1), 0.01, "{}")
        unit.prune(T + timedelta(days=1))
    with store.read() as reader:
        assert reader.open_incident("checkout/availability//page") is None
        assert reader.outbox_item(post) is None


def test_an_outage_keeps_its_start_and_is_noticed_once(opener: Opener) -> None:
    with opener() as store:
        with store.transaction() as unit:
            assert unit.start_outage(T, "refused") == (T, False, "refused")
        with store.transaction() as unit:
            assert unit.start_outage(T + timedelta(minutes=1), "timeout") == (T, False, "timeout")
            unit.mark_outage_noticed()
    with opener() as store, store.transaction() as unit:
        assert unit.outage() == (T, True, "timeout")
        unit.end_outage()
        assert unit.outage() is None


def test_budget_notices_are_upserted_by_slo_group_and_threshold(store: StateStore) -> None:
    with store.transaction() as unit:
        unit.record_budget_notice("checkout", "availability", "", [0.5, 0.75], T)
        unit.record_budget_notice("checkout", "availability", "", [0.75], T + timedelta(days=1))
    with store.read() as reader:
        assert reader.budget_notices_sent() == {
            ("checkout", "availability", "", 0.5): T,
            ("checkout", "availability", "", 0.75): T + timedelta(days=1)}


def test_an_existing_sqlite_file_keeps_its_tables_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    StateDB(path).close()
    connection = sqlite3.connect(path)
    tables = {name: [column[1] for column in connection.execute(f"PRAGMA table_info({name})")]
              for (name,) in connection.execute(
                  "SELECT name FROM sqlite_master WHERE type = 'table' "
                  "AND name != 'sqlite_sequence'")}
    connection.close()
    assert tables == {
        "changes": ["service", "kind", "version", "time", "time_ns", "body", "recorded_at"],
        "notify_outbox": ["id", "kind", "channel", "parent_id", "notice_key", "body",
                          "filename", "content", "state", "ts", "attempts", "last_error",
                          "created_at", "sent_at", "not_before"],
        "notify_incidents": ["id", "incident_key", "service", "slo", "group_key", "severity",
                             "channel", "post_id", "tiers", "opened_at", "resolved_at",
                             "consumed_at_open", "budget_spent", "fingerprint", "message"],
        "engine_firing": ["tier", "body"],
        "engine_budget_notices": ["service", "slo", "grp", "threshold", "sent_at"],
        "engine_outage": ["id", "since", "noticed", "reason"],
        "engine_lease": ["id", "holder", "token", "expires_at"],
        "state_meta": ["id", "identity", "created_at", "heartbeat_at"]}


def test_a_rate_limited_call_holds_the_outbox_until_its_not_before_time(
        store: StateStore) -> None:
    with store.transaction() as unit:
        first = unit.enqueue("post", "#a", "1", T)
        unit.enqueue("post", "#b", "2", T)
        claimed = unit.claim_next(T)
        assert claimed is not None and claimed.id == first
        unit.requeue(first, T + timedelta(seconds=30))
    with store.transaction() as unit:
        assert unit.claim_next(T + timedelta(seconds=29)) is None  # and nothing overtakes it
        assert unit.outbox_not_before() == T + timedelta(seconds=30)
        assert unit.outbox_depth() == 2
        again = unit.claim_next(T + timedelta(seconds=30))
        assert again is not None and (again.id, again.attempts) == (first, 1)
        unit.requeue(first)  # an outage without Retry-After: no wait
        assert unit.outbox_not_before() is None


def test_an_outbox_from_before_not_before_times_gains_the_column_and_keeps_its_rows(
        tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    connection = sqlite3.connect(path)
    connection.execute(
        "CREATE TABLE notify_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, "
        "channel TEXT NOT NULL, parent_id INTEGER, notice_key TEXT UNIQUE, body TEXT NOT NULL, "
        "filename TEXT, content BLOB, state TEXT NOT NULL DEFAULT 'queued', ts TEXT, "
        "attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, created_at TEXT NOT NULL, "
        "sent_at TEXT)")
    connection.execute("INSERT INTO notify_outbox (kind, channel, body, created_at) "
                       "VALUES ('post', '#a', '{}', ?)", (T.isoformat(),))
    connection.commit()
    connection.close()
    for _ in range(2):  # opening again adds nothing twice
        with StateDB(path) as store, store.transaction() as unit:
            claimed = unit.claim_next(T)
            assert claimed is not None and claimed.not_before is None
            unit.requeue(claimed.id)


def test_one_replica_holds_the_lease_and_a_new_holder_gets_a_new_token(
        opener: Opener) -> None:
    ttl = timedelta(seconds=30)
    with opener() as store, store.transaction() as unit:
        assert unit.lease() is None
        first = unit.acquire_lease("a", ttl, T)
        assert (first.holder, first.token, first.expires_at) == ("a", 1, T + ttl)
        # b must wait while a's lease is live; a's renewal keeps the token
        assert unit.acquire_lease("b", ttl, T + timedelta(seconds=29)) == first
        renewed = unit.acquire_lease("a", ttl, T + timedelta(seconds=10))
        assert (renewed.token, renewed.expires_at) == (1, T + timedelta(seconds=40))
        unit.check_fence(1, T + timedelta(seconds=39))
    with opener() as store, store.transaction() as unit:  # the lease outlives a restart
        lapsed = T + timedelta(seconds=40)
        with pytest.raises(LeaseLost, match="lapsed by a with token 1"):
            unit.check_fence(1, lapsed)
        taken = unit.acquire_lease("b", ttl, lapsed)
        assert (taken.holder, taken.token) == ("b", 2)
        with pytest.raises(LeaseLost, match="held by b with token 2"):
            unit.check_fence(1, lapsed)  # a, deposed, is fenced off
        unit.release_lease("a", lapsed)  # not a's to release
        assert unit.lease() == taken
        unit.release_lease("b", lapsed + timedelta(seconds=1))
        back = unit.acquire_lease("a", ttl, lapsed + timedelta(seconds=1))
        assert (back.holder, back.token) == ("a", 3)


def test_a_fenced_write_rolls_back_with_its_unit_of_work(store: StateStore) -> None:
    with store.transaction() as unit:
        unit.acquire_lease("b", timedelta(seconds=30), T)
    with pytest.raises(LeaseLost), store.transaction() as unit:
        unit.enqueue("post", "#a", "1", T)
        unit.check_fence(7, T)
    with store.read() as reader:
        assert reader.outbox_depth() == 0


def test_sqlite_implements_the_interface() -> None:
    def typed(store: StateStore) -> StateStore:  # mypy checks the structural match
        return store

    with StateDB(":memory:") as store:
        assert typed(store).location == ":memory:"
