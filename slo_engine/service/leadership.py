"""Which replica leads: the state store's lease, renewed on a thread of its own.

Replicas of `slo-engine run` share one state store; the one holding its lease evaluates,
refreshes budgets, sends notices and delivers the outbox, the others stand by (they serve the
HTTP API, take changes and webhooks). Every replica tries to take or renew the lease every
third of its time. A replica steps down at once when the store says another leads (a renewal
found another holder, or a fenced write raised LeaseLost); a renewal the store refuses (down,
locked) changes nothing, since the fencing token checked in every leader-only write is what
keeps a deposed leader's writes out, not this replica's belief. Taking the lease requeues the
calls a previous leader left being sent (it may have died mid-call: sending again risks a
duplicate, not sending a lost page).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from slo_engine.errors import LeaseLost, StateError
from slo_engine.service.telemetry import Telemetry
from slo_engine.storage import StateStore, StateWriter
from slo_engine.storage.interface import Lease

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def default_replica_id() -> str:
    """hostname-pid: unique among processes on one host and across hosts."""
    return f"{socket.gethostname()}-{os.getpid()}"


class Role(NamedTuple):
    """What /readyz says about leadership."""

    role: str  # leader | standby
    replica: str
    holder: str | None  # the lease's holder as last seen, this replica or another
    token: int | None

    def as_json(self) -> dict[str, str | int | None]:
        return self._asdict()


class Leadership:
    """This replica's part in the lease: the fencing token while it leads, None otherwise."""

    def __init__(self, state: StateStore, replica_id: str, ttl: timedelta,
                 telemetry: Telemetry, *, clock: Clock | None = None,
                 on_lead: Callable[[], None] | None = None) -> None:
        self.replica_id = replica_id
        self.ttl = ttl
        self._state = state
        self._telemetry = telemetry
        self._clock = clock or (lambda: datetime.now(UTC))
        self._on_lead = on_lead
        self._lock = threading.Lock()
        self._token: int | None = None
        self._seen: Lease | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:  # who leads, for /readyz, before this replica's first renewal
            with state.read() as reader:
                self._seen = reader.lease()
        except StateError as error:
            log.warning("leadership lease not read: %s", error)
        self._publish()

    @property
    def token(self) -> int | None:
        with self._lock:
            return self._token

    def leading(self) -> bool:
        """Whether leader-only work may run now. Without the renewal thread (one-shot uses,
        tests) the lease is taken or renewed here, on demand."""
        if self._thread is None:
            self.renew()
        return self.token is not None

    def role(self) -> Role:
        with self._lock:
            seen, token = self._seen, self._token
        if seen is None:
            return Role("standby", self.replica_id, None, None)
        return Role("standby" if token is None else "leader", self.replica_id, seen.holder,
                    seen.token)

    def renew(self) -> bool:
        """Take or renew the lease once; whether this replica leads afterwards."""
        now = self._clock()
        try:
            with self._state.transaction() as unit:
                lease = unit.acquire_lease(self.replica_id, self.ttl, now)
                mine = lease.holder == self.replica_id
                taken = mine and self.token != lease.token
                requeued = unit.requeue_interrupted() if taken else 0
        except StateError as error:
            log.warning("lease not renewed, the role stays %s until the store says "
                        "otherwise: %s", self.role().role, error)
            return self.token is not None
        with self._lock:
            was = self._token
            self._seen = lease
            self._token = lease.token if mine else None
        self._publish()
        if taken:
            log.info("leading with lease token %d%s", lease.token,
                     f"; {requeued} call(s) left being sent requeued" if requeued else "")
            if self._on_lead is not None:
                self._on_lead()
        elif not mine and was is not None:
            log.warning("no longer leading: %s took the lease (token %d)", lease.holder,
                        lease.token)
        return mine

    def fence(self, unit: StateWriter) -> None:
        """In a leader-only write's transaction: LeaseLost unless this replica still leads
        with its token, so the whole transaction rolls back."""
        token = self.token
        if token is None:
            raise LeaseLost(f"replica {self.replica_id} does not lead")
        unit.check_fence(token, self._clock())

    def lost(self, error: LeaseLost) -> None:
        """A fenced write was refused: stop leader work now, try again at the next renewal."""
        with self._lock:
            was = self._token
            self._token = None
        self._publish()
        if was is not None:
            log.warning("no longer leading, leader-only work stops: %s", error)

    def start(self) -> None:
        """Renew every third of the lease time on a thread of its own: a long job must not
        make the lease lapse."""
        if self._thread is not None:
            return
        self.renew()
        self._thread = threading.Thread(target=self._run, name="slo-engine-lease",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing and let the lease lapse now, so a standby takes over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.ttl.total_seconds())
        if self.token is None:
            return
        try:
            with self._state.transaction() as unit:
                unit.release_lease(self.replica_id, self._clock())
            log.info("lease released")
        except StateError as error:
            log.warning("lease not released, a standby takes over when it lapses: %s", error)
        with self._lock:
            self._token = None
        self._publish()

    def _run(self) -> None:
        interval = self.ttl.total_seconds() / 3
        while not self._stop.wait(interval):
            try:
                self.renew()
            except Exception:  # the next renewal may well succeed: never stop renewing
                log.exception("lease renewal failed")

    def _publish(self) -> None:
        token = self.token
        self._telemetry.leader.labels(self.replica_id).set(0 if token is None else 1)
        seen = self._seen
        self._telemetry.lease_token.set(
            token if token is not None else 0 if seen is None else seen.token)
