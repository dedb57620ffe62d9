"""The leadership lease as two replicas see it: two StateDB connections on one SQLite file
(as two processes on one host open it), a clock the test moves, and the fenced writes of
the outbox and the engine's transitions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from slo_engine.errors import LeaseLost
from slo_engine.paging.blocks import SlackMessage
from slo_engine.paging.notifier import Notifier
from slo_engine.paging.slack import Posted
from slo_engine.service.leadership import Leadership
from slo_engine.service.telemetry import Telemetry
from slo_engine.storage.sqlite import StateDB

TTL = timedelta(seconds=30)
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class Recording:
    """A Slack delivery that records what it was asked to send."""

    def __init__(self) -> None:
        self.posted: list[str] = []

    def post(self, channel: str, message: SlackMessage) -> Posted:
        self.posted.append(message.text)
        return Posted(channel, f"{len(self.posted)}.0")

    def update(self, channel: str, ts: str, message: SlackMessage) -> None:
        raise AssertionError("no update expected")

    def reply(self, channel: str, thread_ts: str, message: SlackMessage) -> Posted:
        raise AssertionError("no reply expected")

    def upload(self, channel: str, filename: str, content: bytes, title: str) -> None:
        raise AssertionError("no upload expected")


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[StateDB, StateDB]]:
    with StateDB(tmp_path / "state.db") as first, StateDB(tmp_path / "state.db") as second:
        yield first, second


def _replicas(stores: tuple[StateDB, StateDB], clock: Clock) -> tuple[Leadership, Leadership]:
    a, b = (Leadership(store, name, TTL, Telemetry(), clock=clock)
            for store, name in zip(stores, ("a", "b"), strict=True))
    return a, b


def test_one_replica_leads_and_the_other_takes_over_when_its_lease_lapses(
        stores: tuple[StateDB, StateDB]) -> None:
    clock = Clock()
    a, b = _replicas(stores, clock)
    assert a.renew() and not b.renew()
    assert a.role().as_json() == {"role": "leader", "replica": "a", "holder": "a", "token": 1}
    assert b.role().as_json() == {"role": "standby", "replica": "b", "holder": "a", "token": 1}
    clock.now += TTL - timedelta(seconds=1)
    assert a.renew() and not b.renew()  # renewed in time: a keeps its token
    assert a.token == 1
    clock.now += TTL  # a stopped renewing (killed): its lease lapses
    assert b.renew() and b.token == 2
    assert not a.renew() and a.token is None  # a learns it at its next renewal
    assert a.role().role == "standby" and a.role().holder == "b"


def test_a_release_hands_the_lease_over_at_once(stores: tuple[StateDB, StateDB]) -> None:
    clock = Clock()
    a, b = _replicas(stores, clock)
    assert a.renew() and not b.renew()
    a.stop()
    assert a.token is None
    assert b.renew() and b.token == 2


def test_a_deposed_leaders_outbox_writes_roll_back(stores: tuple[StateDB, StateDB]) -> None:
    clock = Clock()
    a, b = _replicas(stores, clock)
    assert a.renew()
    message = json.dumps(SlackMessage("PAGE checkout", []).as_json())
    with stores[0].transaction() as unit:
        unit.enqueue("post", "C0PAGE", message, clock.now)
    clock.now += TTL * 2  # a's lease lapsed, and b took it: a has not learnt it yet
    assert b.renew()
    assert a.token == 1
    slack = Recording()
    notifier = Notifier(stores[0], slack, lambda owner, severity: "C0PAGE", fence=a.fence)
    with pytest.raises(LeaseLost, match="token 1"):
        notifier.flush()
    assert slack.posted == []
    with stores[1].read() as reader:
        assert reader.outbox_depth() == 1  # still queued: the claim rolled back
    # The new leader delivers it.
    Notifier(stores[1], slack, lambda owner, severity: "C0PAGE", fence=b.fence).flush()
    assert slack.posted == ["PAGE checkout"]


def test_taking_the_lease_requeues_what_the_last_leader_left_being_sent(
        stores: tuple[StateDB, StateDB]) -> None:
    clock = Clock()
    a, b = _replicas(stores, clock)
    assert a.renew()
    with stores[0].transaction() as unit:
        unit.enqueue("post", "C0PAGE", "{}", clock.now)
        assert unit.claim_next(clock.now) is not None  # a dies mid-call
    # A replica starting meanwhile leaves it alone: the leader may still be sending it.
    Notifier(stores[1], Recording(), lambda owner, severity: "C0PAGE", fence=b.fence)
    with stores[1].read() as reader:
        assert reader.outbox_depth() == 1 and reader.outbox_item(1).state == "sending"  # type: ignore[union-attr]
    clock.now += TTL * 2
    assert b.renew()
    with stores[1].read() as reader:
        assert reader.outbox_item(1).state == "queued"  # type: ignore[union-attr]


def test_a_store_refusing_the_renewal_changes_no_role(tmp_path: Path) -> None:
    clock = Clock()
    store = StateDB(tmp_path / "state.db")
    leader = Leadership(store, "a", TTL, Telemetry(), clock=clock)
    assert leader.renew()
    store.close()  # every transaction now fails with StateError
    assert leader.renew() and leader.token == 1  # the fence, not this belief, protects
