"""The state store on PostgreSQL, for replicas that share one state (`state.url` in the engine
config). Same tables, same semantics and the same ids as the SQLite store (`storage.sqlite`);
every SQL statement for PostgreSQL lives here.

Writes serialise like SQLite's BEGIN IMMEDIATE: every write transaction first takes one
transaction-scoped advisory lock, so the read-modify-write of callers (incident
de-duplication, claim_next, the lease) never interleaves between replicas. Reads run in
autocommit and never wait for a writer. The schema is versioned: the SQL files of
`storage/migrations` are applied at open under an advisory lock of their own (two replicas
starting at once apply each once) and recorded in `schema_migrations`.

Connections come from a psycopg pool with short timeouts: with PostgreSQL down, every
operation fails within seconds with a StateError (the service reports it and retries), and
once it is back the pool reconnects and the same store object works again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from types import TracebackType
from typing import Any, Literal, cast

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from slo_engine.changes.events import Change
from slo_engine.errors import StateError
from slo_engine.redaction import redact
from slo_engine.storage import lease as lease_rules
from slo_engine.storage.interface import (
    Incident,
    Lease,
    NewIncident,
    NoticeThreshold,
    Outage,
    OutboxItem,
    OutboxKind,
)

# Advisory lock keys (64-bit, any constant no other application is likely to take).
WRITE_LOCK = 0x736C6F5F77726974  # "slo_writ": one writing transaction at a time
MIGRATION_LOCK = 0x736C6F5F6D696772  # "slo_migr": one replica migrates at a time
CONNECT_TIMEOUT = 3  # seconds for one connection attempt (libpq's connect_timeout)
POOL_TIMEOUT = 5.0  # seconds an operation waits for a connection before StateError
WRITE_WAIT = "10s"  # for the write lock, as SQLite's busy timeout
PROBE_WAIT = "2s"  # /readyz waits this long for another writer, not the 10 s of a job
RECONNECT_TIMEOUT = 4.0  # a lost connection is retried this long, then the next use retries
# The pool warns of every failed reconnection, over several lines; a command's StateError says
# it in one. A service that configures logging still receives them (its level decides).
logging.getLogger("psycopg.pool").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class Migration:
    """One versioned SQL file of `storage/migrations`: `0001_state.sql` is version 1."""

    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The migrations shipped with this slo-engine, oldest first."""
    found = []
    for entry in resources.files("slo_engine.storage").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            number, _, _ = entry.name.partition("_")
            found.append(Migration(int(number), entry.name.removesuffix(".sql"),
                                   entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda migration: migration.version)


def schema_version(url: str) -> int:
    """The newest migration applied to the database at `url` (0: none yet), changing nothing:
    what `config check --connect` reports. StateError when it cannot be asked."""
    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT, autocommit=True) as connection:
            known = connection.execute(
                "SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
            row = connection.execute(
                "SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone() \
                if known is not None and known[0] else None
    except psycopg.Error as error:
        raise StateError(f"cannot read the state database {redact(url)}: {_reason(error)}; "
                         "check that PostgreSQL is running and accepts state.url's user") \
            from None
    return int(row[0]) if row is not None else 0


def _configure(connection: psycopg.Connection[Any]) -> None:
    """Times come back in UTC, as the SQLite store writes them."""
    connection.execute("SET TIME ZONE 'UTC'")


def _reason(error: psycopg.Error) -> str:
    """psycopg's message on one line (libpq's spreads a refused connection over several)."""
    return " ".join(str(error).split()) or type(error).__name__


class PostgresStore:
    """The PostgreSQL state store (implements storage.StateStore); safe to share between
    threads: each unit of work takes a connection of its own from the pool."""

    def __init__(self, url: str, *, timeout: float = POOL_TIMEOUT, max_size: int = 8) -> None:
        self._location = redact(url)
        try:
            self._pool = ConnectionPool(
                url, min_size=1, max_size=max_size, open=False, timeout=timeout,
                name="slo-engine-state", configure=_configure,
                check=ConnectionPool.check_connection, reconnect_timeout=RECONNECT_TIMEOUT,
                kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT,
                        "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
                        "keepalives_count": 3, "tcp_user_timeout": 10_000,
                        "application_name": "slo-engine"})
        except psycopg.Error as error:
            raise StateError(f"cannot use state.url {self._location}: {_reason(error)}; write "
                             "it as postgresql://USER:PASSWORD@HOST:PORT/DATABASE") from None
        try:
            self._pool.open(wait=True, timeout=timeout)
            self.applied = self._migrate()
        except psycopg.Error as error:
            self._pool.close()
            raise StateError(self._unreachable("open", error)) from None
        except BaseException:
            self._pool.close()
            raise

    def _unreachable(self, doing: str, error: psycopg.Error) -> str:
        return (f"cannot {doing} the state database {self._location}: {_reason(error)}; check "
                "that PostgreSQL is running and accepts state.url's user")

    def _migrate(self) -> list[Migration]:
        """Apply the migrations this database lacks, in one transaction under the migration
        lock; the ones applied now. A database migrated by a newer slo-engine is refused."""
        shipped = migrations()
        with self._pool.connection() as connection, connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
            done = {int(row[0]) for row in
                    connection.execute("SELECT version FROM schema_migrations").fetchall()}
            newest = max(done, default=0)
            known = max((migration.version for migration in shipped), default=0)
            if newest > known:
                raise StateError(
                    f"the state database {self._location} has schema version {newest}, newer "
                    f"than this slo-engine's {known}: upgrade slo-engine (every replica "
                    "sharing the database runs the same version or newer)")
            applied = [migration for migration in shipped if migration.version not in done]
            for migration in applied:
                connection.execute(cast(Any, migration.sql))
                connection.execute("INSERT INTO schema_migrations (version, name) "
                                   "VALUES (%s, %s)", (migration.version, migration.name))
        return applied

    @property
    def location(self) -> str:
        return self._location

    def schema_version(self) -> int:
        with self.read() as reader:
            row = reader.row("SELECT max(version) AS v FROM schema_migrations", ())
        return int(row["v"]) if row is not None and row["v"] is not None else 0

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    @contextmanager
    def transaction(self, wait: str = WRITE_WAIT) -> Iterator[PostgresTransaction]:
        """All statements inside commit together or not at all, after the write lock: one
        writer at a time across every replica, waiting at most `wait` for it."""
        try:
            with self._pool.connection() as connection, connection.transaction():
                connection.execute("SELECT set_config('lock_timeout', %s, true)", (wait,))
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                yield PostgresTransaction(connection)
        except psycopg.Error as error:
            raise StateError(self._unreachable("write", error)) from None

    @contextmanager
    def read(self) -> Iterator[PostgresReader]:
        """Reads in autocommit: each statement sees the last commit, no writer waits."""
        try:
            with self._pool.connection() as connection:
                yield PostgresReader(connection)
        except psycopg.Error as error:
            raise StateError(self._unreachable("read", error)) from None

    def query(self, sql: str, parameters: Iterable[object] = ()) -> list[dict[str, Any]]:
        """Raw SQL, for inspecting the database (tests, debugging); the engine never needs it."""
        with self.read() as reader:
            return reader.rows(sql, tuple(parameters))

    def probe_write(self) -> None:
        """Upsert the heartbeat and commit: a probe that only reads says "ok" while every
        write fails (a read-only replica, a full disk, a writer holding the lock)."""
        with self.transaction(wait=PROBE_WAIT) as unit:
            unit.connection.execute("UPDATE state_meta SET heartbeat_at = now() WHERE id = 1")

    def add_changes(self, changes: Iterable[Change]) -> list[Change]:
        with self.transaction() as unit:
            return unit.add_changes(changes, datetime.now(UTC))

    def changes(self, services: Iterable[str] | None = None, since: datetime | None = None,
                until: datetime | None = None, limit: int | None = None,
                kinds: Iterable[str] | None = None) -> list[Change]:
        with self.read() as reader:
            return reader.changes(services, since, until, limit, kinds)


class PostgresReader:
    """The reads of one unit of work on one connection (storage.StateReader)."""

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self.connection = connection

    def rows(self, sql: str, parameters: tuple[object, ...] = ()) -> list[dict[str, Any]]:
        with self.connection.cursor(row_factory=dict_row) as cursor:
            cursor.execute(cast(Any, sql), parameters)
            return cursor.fetchall()

    def row(self, sql: str, parameters: tuple[object, ...]) -> dict[str, Any] | None:
        with self.connection.cursor(row_factory=dict_row) as cursor:
            cursor.execute(cast(Any, sql), parameters)
            return cursor.fetchone()

    def changes(self, services: Iterable[str] | None = None, since: datetime | None = None,
                until: datetime | None = None, limit: int | None = None,
                kinds: Iterable[str] | None = None) -> list[Change]:
        sql = "SELECT body FROM changes WHERE true"
        parameters: list[object] = []
        for column, values in (("service", services), ("kind", kinds)):
            if values is not None:
                sql += f" AND {column} = ANY(%s)"
                parameters.append(sorted(set(values)))
        if since is not None:
            sql += " AND time_ns >= %s"
            parameters.append(_ns(since))
        if until is not None:
            sql += " AND time_ns <= %s"
            parameters.append(_ns(until))
        sql += " ORDER BY time_ns DESC, service, kind, version"
        if limit is not None:
            sql += " LIMIT %s"
            parameters.append(limit)
        return [Change.model_validate_json(row["body"])
                for row in self.rows(sql, tuple(parameters))]

    def firing(self) -> dict[str, str]:
        return {row["tier"]: row["body"]
                for row in self.rows("SELECT tier, body FROM engine_firing")}

    def budget_notices_sent(self) -> dict[NoticeThreshold, datetime]:
        rows = self.rows("SELECT service, slo, grp, threshold, sent_at "
                         "FROM engine_budget_notices")
        return {(r["service"], r["slo"], r["grp"], float(r["threshold"])): r["sent_at"]
                for r in rows}

    def outage(self) -> Outage | None:
        row = self.row("SELECT since, noticed, reason FROM engine_outage WHERE id = 1", ())
        return None if row is None else Outage(row["since"], bool(row["noticed"]),
                                               row["reason"])

    def open_incident(self, incident_key: str) -> Incident | None:
        row = self.row("SELECT * FROM notify_incidents WHERE incident_key = %s AND "
                       "resolved_at IS NULL", (incident_key,))
        return None if row is None else _incident(row)

    def outbox_item(self, item_id: int) -> OutboxItem | None:
        row = self.row("SELECT * FROM notify_outbox WHERE id = %s", (item_id,))
        return None if row is None else _outbox_item(row)

    def queued_update(self, post_id: int) -> int | None:
        row = self.row("SELECT id FROM notify_outbox WHERE parent_id = %s AND kind = 'update' "
                       "AND state = 'queued' ORDER BY id DESC LIMIT 1", (post_id,))
        return None if row is None else int(row["id"])

    def notice_queued(self, notice_key: str) -> bool:
        return self.row("SELECT 1 FROM notify_outbox WHERE notice_key = %s",
                        (notice_key,)) is not None

    def outbox_depth(self) -> int:
        rows = self.rows("SELECT count(*) AS n FROM notify_outbox "
                         "WHERE state IN ('queued', 'sending')")
        return int(rows[0]["n"])

    def outbox_not_before(self) -> datetime | None:
        row = self.row("SELECT not_before FROM notify_outbox WHERE state = 'queued' "
                       "ORDER BY id LIMIT 1", ())
        return None if row is None else cast(datetime | None, row["not_before"])

    def lease(self) -> Lease | None:
        row = self.row("SELECT holder, token, expires_at FROM engine_lease WHERE id = 1", ())
        return None if row is None else Lease(row["holder"], int(row["token"]),
                                              row["expires_at"])


class PostgresTransaction(PostgresReader):
    """The writes of one transaction, holding the write lock (storage.StateWriter)."""

    def _next_id(self, table: str) -> int:
        """The next id of `table`, handed out inside this transaction: like SQLite's
        AUTOINCREMENT, never reused, and a rolled-back write leaves no gap."""
        row = self.row("UPDATE state_ids SET last = last + 1 WHERE name = %s RETURNING last",
                       (table,))
        assert row is not None
        return int(row["last"])

    def acquire_lease(self, holder: str, ttl: timedelta, now: datetime) -> Lease:
        current = self.lease()
        taken = lease_rules.acquired(current, holder, ttl, now)
        if taken is not current:
            self.connection.execute(
                "INSERT INTO engine_lease (id, holder, token, expires_at) "
                "VALUES (1, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                "holder = excluded.holder, token = excluded.token, "
                "expires_at = excluded.expires_at",
                (taken.holder, taken.token, taken.expires_at))
        return taken

    def release_lease(self, holder: str, now: datetime) -> None:
        if lease_rules.releasable(self.lease(), holder, now):
            self.connection.execute("UPDATE engine_lease SET expires_at = %s WHERE id = 1",
                                    (now,))

    def check_fence(self, token: int, now: datetime) -> None:
        lease_rules.check_fence(self.lease(), token, now)

    def add_changes(self, changes: Iterable[Change], recorded_at: datetime) -> list[Change]:
        added: list[Change] = []
        for change in changes:
            service, kind, version, time = change.identity
            cursor = self.connection.execute(
                "INSERT INTO changes VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                (service, kind, version, time, _ns(change.time),
                 change.model_dump_json(exclude_none=True), recorded_at))
            if cursor.rowcount:
                added.append(change)
        return added

    def save_firing(self, firing: Mapping[str, str]) -> None:
        self.connection.execute("DELETE FROM engine_firing")
        with self.connection.cursor() as cursor:
            cursor.executemany("INSERT INTO engine_firing VALUES (%s, %s)",
                               list(firing.items()))

    def record_budget_notice(self, service: str, slo: str, group: str,
                             thresholds: Iterable[float], sent_at: datetime) -> None:
        with self.connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO engine_budget_notices VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (service, slo, grp, threshold) DO UPDATE SET "
                "sent_at = excluded.sent_at",
                [(service, slo, group, threshold, sent_at) for threshold in thresholds])

    def start_outage(self, since: datetime, reason: str) -> Outage:
        self.connection.execute(
            "INSERT INTO engine_outage (id, since, reason) VALUES (1, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET reason = excluded.reason", (since, reason))
        outage = self.outage()
        assert outage is not None
        return outage

    def mark_outage_noticed(self) -> None:
        self.connection.execute("UPDATE engine_outage SET noticed = true WHERE id = 1")

    def end_outage(self) -> None:
        self.connection.execute("DELETE FROM engine_outage WHERE id = 1")

    def enqueue(self, kind: OutboxKind, channel: str, body: str, created_at: datetime, *,
                parent_id: int | None = None, notice_key: str | None = None,
                filename: str | None = None, content: bytes | None = None) -> int:
        item_id = self._next_id("notify_outbox")
        self.connection.execute(
            "INSERT INTO notify_outbox (id, kind, channel, parent_id, notice_key, body, "
            "filename, content, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (item_id, kind, channel, parent_id, notice_key, body, filename, content,
             created_at))
        return item_id

    def replace_queued_body(self, item_id: int, body: str) -> bool:
        return bool(self.connection.execute(
            "UPDATE notify_outbox SET body = %s WHERE id = %s AND state = 'queued'",
            (body, item_id)).rowcount)

    def claim_next(self, now: datetime | None = None) -> OutboxItem | None:
        row = self.row("SELECT * FROM notify_outbox WHERE state = 'queued' "
                       "ORDER BY id LIMIT 1", ())
        if row is None:
            return None
        not_before = row["not_before"]
        if not_before is not None and not_before > (now or datetime.now(UTC)):
            return None
        self.connection.execute("UPDATE notify_outbox SET state = 'sending', "
                                "attempts = attempts + 1 WHERE id = %s", (row["id"],))
        return _outbox_item(row)

    def finish(self, item_id: int, state: Literal["sent", "failed"], *,
               posted: tuple[str, str] | None = None, error: str | None = None,
               sent_at: datetime | None = None, drop_content: bool = False) -> None:
        channel, ts = posted if posted is not None else (None, None)
        self.connection.execute(
            "UPDATE notify_outbox SET state = %s, channel = COALESCE(%s, channel), "
            "ts = COALESCE(%s, ts), last_error = %s, sent_at = %s"
            + (", content = NULL" if drop_content else "") + " WHERE id = %s",
            (state, channel, ts, error, sent_at, item_id))

    def requeue(self, item_id: int, not_before: datetime | None = None) -> None:
        self.connection.execute(
            "UPDATE notify_outbox SET state = 'queued', not_before = %s WHERE id = %s",
            (not_before, item_id))

    def requeue_interrupted(self) -> int:
        return self.connection.execute("UPDATE notify_outbox SET state = 'queued' "
                                       "WHERE state = 'sending'").rowcount

    def add_incident(self, incident: NewIncident) -> int:
        incident_id = self._next_id("notify_incidents")
        self.connection.execute(
            "INSERT INTO notify_incidents (id, incident_key, service, slo, group_key, "
            "severity, channel, post_id, tiers, opened_at, consumed_at_open, fingerprint, "
            "message) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (incident_id, incident.incident_key, incident.service, incident.slo,
             incident.group_key, incident.severity, incident.channel, incident.post_id,
             json.dumps(list(incident.tiers)), incident.opened_at, incident.consumed_at_open,
             incident.fingerprint, incident.message))
        return incident_id

    def repost_incident(self, incident_id: int, channel: str, post_id: int,
                        tiers: tuple[str, ...], fingerprint: str, message: str) -> None:
        self.connection.execute(
            "UPDATE notify_incidents SET channel = %s, post_id = %s, fingerprint = %s, "
            "message = %s, tiers = %s WHERE id = %s",
            (channel, post_id, fingerprint, message, json.dumps(list(tiers)), incident_id))

    def update_incident_page(self, incident_id: int, fingerprint: str, message: str) -> None:
        self.connection.execute("UPDATE notify_incidents SET fingerprint = %s, message = %s "
                                "WHERE id = %s", (fingerprint, message, incident_id))

    def update_incident_tiers(self, incident_id: int, tiers: tuple[str, ...]) -> None:
        self.connection.execute("UPDATE notify_incidents SET tiers = %s WHERE id = %s",
                                (json.dumps(list(tiers)), incident_id))

    def resolve_incident(self, incident_id: int, resolved_at: datetime,
                         budget_spent: float | None, message: str) -> None:
        self.connection.execute(
            "UPDATE notify_incidents SET resolved_at = %s, budget_spent = %s, tiers = '[]', "
            "message = %s WHERE id = %s", (resolved_at, budget_spent, message, incident_id))

    def prune(self, before: datetime) -> None:
        self.connection.execute(
            "DELETE FROM notify_outbox WHERE state IN ('sent', 'failed') "
            "AND created_at < %s "
            "AND id NOT IN (SELECT post_id FROM notify_incidents WHERE resolved_at IS NULL) "
            "AND id NOT IN (SELECT parent_id FROM notify_outbox "
            "               WHERE parent_id IS NOT NULL AND state IN ('queued', 'sending'))",
            (before,))
        self.connection.execute("DELETE FROM notify_incidents WHERE resolved_at IS NOT NULL "
                                "AND opened_at < %s", (before,))


def _incident(row: Mapping[str, Any]) -> Incident:
    return Incident(
        id=int(row["id"]), incident_key=row["incident_key"], service=row["service"],
        slo=row["slo"], group_key=row["group_key"], severity=row["severity"],
        channel=row["channel"], post_id=int(row["post_id"]),
        tiers=tuple(json.loads(row["tiers"])), opened_at=row["opened_at"],
        resolved_at=row["resolved_at"], consumed_at_open=row["consumed_at_open"],
        budget_spent=row["budget_spent"], fingerprint=row["fingerprint"],
        message=row["message"])


def _outbox_item(row: Mapping[str, Any]) -> OutboxItem:
    return OutboxItem(
        id=int(row["id"]), kind=cast(OutboxKind, row["kind"]), channel=row["channel"],
        parent_id=None if row["parent_id"] is None else int(row["parent_id"]),
        notice_key=row["notice_key"], body=row["body"], filename=row["filename"],
        content=None if row["content"] is None else bytes(row["content"]),
        state=row["state"], ts=row["ts"], attempts=int(row["attempts"]),
        last_error=row["last_error"], not_before=row["not_before"])


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000) * 1000
