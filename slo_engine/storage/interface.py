"""What the engine keeps across restarts, in domain words: the state store's interface.

Callers never write SQL: they open a unit of work (`transaction()` to write, `read()` to
look) and call typed methods on it; what one transaction writes commits together or not at
all, so the firing set and the outbox rows of the pages it implies can never disagree.
Writes are keyed by natural keys (a change's identity, an incident key, a notice key, a
tier id) and are idempotent where a retry may repeat them. SQLite (`storage.sqlite`) is the
embedded implementation; PostgreSQL (`storage.postgres`), for replicas, implements the same
protocols with the same answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Literal, NamedTuple, Protocol, Self

from slo_engine.changes.events import Change

OutboxKind = Literal["post", "update", "reply", "upload"]
OutboxState = Literal["queued", "sending", "sent", "failed"]
NoticeThreshold = tuple[str, str, str, float]  # service, SLO, group, budget threshold


@dataclass(frozen=True)
class OutboxItem:
    """One Slack call waiting in (or delivered from) the outbox, in the order it was queued."""

    id: int
    kind: OutboxKind
    channel: str  # as routed; a sent post keeps the channel ID Slack answered
    parent_id: int | None  # the post whose channel and ts an update or reply needs
    notice_key: str | None
    body: str  # the message JSON; an upload's title
    filename: str | None
    content: bytes | None
    state: OutboxState
    ts: str | None
    attempts: int
    last_error: str | None
    not_before: datetime | None = None  # Slack asked to wait (Retry-After) until then


@dataclass(frozen=True)
class NewIncident:
    """An incident as its first page opens it."""

    incident_key: str
    service: str
    slo: str
    group_key: str
    severity: str
    channel: str
    post_id: int
    tiers: tuple[str, ...]
    opened_at: datetime
    consumed_at_open: float | None
    fingerprint: str  # of the rendered page: an identical repeat is skipped
    message: str


@dataclass(frozen=True)
class Incident(NewIncident):
    """An incident as stored: open until `resolved_at`."""

    id: int
    resolved_at: datetime | None
    budget_spent: float | None


class Outage(NamedTuple):
    """Prometheus has not answered since `since`; `noticed` once the outage was announced."""

    since: datetime
    noticed: bool
    reason: str


@dataclass(frozen=True)
class Lease:
    """Leadership of the replicas sharing one state store. `token` (the fencing token) grows
    by one each time the lease changes hands or is taken after it lapsed, so a write checked
    against the token a leader was given fails once another replica has led since."""

    holder: str
    token: int
    expires_at: datetime


class StateReader(Protocol):
    """What one unit of work can read."""

    def lease(self) -> Lease | None:
        """The leadership lease as last written (it may have lapsed), if any replica ever
        held it."""
        ...

    def changes(self, services: Iterable[str] | None = None, since: datetime | None = None,
                until: datetime | None = None, limit: int | None = None,
                kinds: Iterable[str] | None = None) -> list[Change]:
        """Changes newest first, optionally of some services (and kinds) within
        [since, until]."""
        ...

    def firing(self) -> dict[str, str]:
        """The firing set: each firing tier's id and its alert as JSON."""
        ...

    def budget_notices_sent(self) -> dict[NoticeThreshold, datetime]:
        """When each budget threshold of each SLO group was last announced."""
        ...

    def outage(self) -> Outage | None:
        ...

    def open_incident(self, incident_key: str) -> Incident | None:
        """The incident under `incident_key` that is not resolved yet, if any."""
        ...

    def outbox_item(self, item_id: int) -> OutboxItem | None:
        ...

    def queued_update(self, post_id: int) -> int | None:
        """The newest update of `post_id` still queued, if any."""
        ...

    def notice_queued(self, notice_key: str) -> bool:
        """Whether a notice under `notice_key` was ever queued (sent or not)."""
        ...

    def outbox_depth(self) -> int:
        """How many calls are queued or being sent."""
        ...

    def outbox_not_before(self) -> datetime | None:
        """When the oldest queued call may be tried again, if Slack asked it to wait."""
        ...


class StateWriter(StateReader, Protocol):
    """What one transaction can write; everything it wrote commits at its end or not at all."""

    def acquire_lease(self, holder: str, ttl: timedelta, now: datetime) -> Lease:
        """Take the lease for `holder` until `now + ttl` when it is free, lapsed (expired at
        or before `now`) or already `holder`'s; renewing a live lease keeps its token, taking
        one increments it. Returns the lease as it now stands: another holder's when theirs
        is still live."""
        ...

    def release_lease(self, holder: str, now: datetime) -> None:
        """Let the lease lapse at `now` if `holder` holds it (a clean shutdown hands over at
        once instead of after the lease time); its token stays."""
        ...

    def check_fence(self, token: int, now: datetime) -> None:
        """Raise LeaseLost unless the lease still carries `token` and is live at `now`: called
        in the transaction of a leader-only write, so a deposed leader's write rolls back."""
        ...

    def add_changes(self, changes: Iterable[Change], recorded_at: datetime) -> list[Change]:
        """Record changes; those already known (same identity) are skipped. Returns the new."""
        ...

    def save_firing(self, firing: Mapping[str, str]) -> None:
        """Replace the firing set (tier id → alert JSON)."""
        ...

    def record_budget_notice(self, service: str, slo: str, group: str,
                             thresholds: Iterable[float], sent_at: datetime) -> None:
        """Remember that these thresholds of one SLO group were announced at `sent_at`."""
        ...

    def start_outage(self, since: datetime, reason: str) -> Outage:
        """Begin an outage at `since` unless one is on (whose start stays); either way its
        reason becomes `reason`. Returns the outage now recorded."""
        ...

    def mark_outage_noticed(self) -> None:
        ...

    def end_outage(self) -> None:
        ...

    def enqueue(self, kind: OutboxKind, channel: str, body: str, created_at: datetime, *,
                parent_id: int | None = None, notice_key: str | None = None,
                filename: str | None = None, content: bytes | None = None) -> int:
        """Queue one Slack call behind every call queued before it; returns its id."""
        ...

    def replace_queued_body(self, item_id: int, body: str) -> bool:
        """Give a call that has not left yet a newer body; False when it has left."""
        ...

    def claim_next(self, now: datetime | None = None) -> OutboxItem | None:
        """The oldest queued call, marked as being sent and its attempt counted; None when
        it must wait (its not-before time is after `now`): nothing overtakes it."""
        ...

    def finish(self, item_id: int, state: Literal["sent", "failed"], *,
               posted: tuple[str, str] | None = None, error: str | None = None,
               sent_at: datetime | None = None, drop_content: bool = False) -> None:
        """Record a call's outcome: where it was posted (channel ID, ts), or why it failed.
        `drop_content` forgets an upload's bytes once Slack has them."""
        ...

    def requeue(self, item_id: int, not_before: datetime | None = None) -> None:
        """Put a claimed call back in the queue (its delivery did not finish), not to be
        tried again before `not_before` (Slack's Retry-After)."""
        ...

    def requeue_interrupted(self) -> int:
        """Put every call left being sent (by a crash) back in the queue; returns how many."""
        ...

    def add_incident(self, incident: NewIncident) -> int:
        """Open an incident; returns its id."""
        ...

    def repost_incident(self, incident_id: int, channel: str, post_id: int,
                        tiers: tuple[str, ...], fingerprint: str, message: str) -> None:
        """Point an incident whose page was refused at a new post."""
        ...

    def update_incident_page(self, incident_id: int, fingerprint: str, message: str) -> None:
        ...

    def update_incident_tiers(self, incident_id: int, tiers: tuple[str, ...]) -> None:
        ...

    def resolve_incident(self, incident_id: int, resolved_at: datetime,
                         budget_spent: float | None, message: str) -> None:
        """Close an incident: no tier fires any more; `message` is the page as resolved."""
        ...

    def prune(self, before: datetime) -> None:
        """Forget delivered calls and resolved incidents older than `before`, keeping any
        call an open incident or a waiting call still needs."""
        ...


class StateStore(Protocol):
    """The state database: units of work, plus the few one-statement uses callers share."""

    @property
    def location(self) -> str:
        """Where the state lives, for messages (a path or a redacted URL)."""
        ...

    def transaction(self) -> AbstractContextManager[StateWriter]:
        """A unit of work that writes: commits on exit, rolls back on any error. Errors of
        the database itself are StateErrors."""
        ...

    def read(self) -> AbstractContextManager[StateReader]:
        """A unit of work that only reads, never waiting for writers."""
        ...

    def add_changes(self, changes: Iterable[Change]) -> list[Change]:
        """`add_changes` in a transaction of its own, recorded now."""
        ...

    def changes(self, services: Iterable[str] | None = None, since: datetime | None = None,
                until: datetime | None = None, limit: int | None = None,
                kinds: Iterable[str] | None = None) -> list[Change]:
        ...

    def probe_write(self) -> None:
        """Write and commit a heartbeat now, raising StateError with the reason when that
        fails: what /readyz reports (a read-only probe would miss an unwritable store)."""
        ...

    def close(self) -> None:
        ...

    def __enter__(self) -> Self:
        ...

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        """Closes the store."""
        ...
