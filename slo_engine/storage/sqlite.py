"""The state store in one SQLite file, WAL mode, shared by the CLI, the scheduler and the API.

Every SQL statement of the state database lives here, so SQLite's dialect stays in this
module. The schema is the one earlier versions wrote (same tables and columns) plus
`state_meta` and the columns of `_ADDED_COLUMNS` (added in place at open), so an existing
state.db keeps working: opening it adopts it.

A state database forgets nothing on purpose. Recreating one that existed would page every
open incident a second time and leave its first message unresolved, so the file carries an
identity, a marker file beside it (`<file>.id`) remembers that identity, and an open that
finds the file missing, empty, replaced or corrupt while the marker says it existed is
refused with a StateError naming `slo-engine state check` and `state reset`. No file and no
marker is a true first start: both are created.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Literal, cast

from slo_engine.changes.events import Change
from slo_engine.errors import StateError
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

_SCHEMA = """
CREATE TABLE IF NOT EXISTS changes (
    service TEXT NOT NULL,
    kind TEXT NOT NULL,
    version TEXT NOT NULL,
    time TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    body TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (service, kind, version, time)
);
CREATE INDEX IF NOT EXISTS changes_by_time ON changes (service, time_ns);
CREATE TABLE IF NOT EXISTS notify_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,              -- post, update, reply, upload
    channel TEXT NOT NULL,           -- as routed; a sent post keeps the ID Slack answered
    parent_id INTEGER,               -- the post whose channel and ts an update/reply needs
    notice_key TEXT UNIQUE,          -- send_notice's idempotency key
    body TEXT NOT NULL,              -- message JSON; an upload's title
    filename TEXT,
    content BLOB,
    state TEXT NOT NULL DEFAULT 'queued',  -- queued, sending, sent, failed
    ts TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at TEXT NOT NULL,
    sent_at TEXT
);
CREATE INDEX IF NOT EXISTS notify_outbox_by_state ON notify_outbox (state, id);
CREATE TABLE IF NOT EXISTS notify_incidents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_key TEXT NOT NULL,
    service TEXT NOT NULL,
    slo TEXT NOT NULL,
    group_key TEXT NOT NULL,
    severity TEXT NOT NULL,
    channel TEXT NOT NULL,
    post_id INTEGER NOT NULL,
    tiers TEXT NOT NULL,             -- JSON list of the tiers firing now
    opened_at TEXT NOT NULL,
    resolved_at TEXT,
    consumed_at_open REAL,
    budget_spent REAL,
    fingerprint TEXT NOT NULL,       -- of the last rendered page: an identical repeat is skipped
    message TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS notify_open_incident
    ON notify_incidents (incident_key) WHERE resolved_at IS NULL;
CREATE TABLE IF NOT EXISTS engine_firing (
    tier TEXT PRIMARY KEY,          -- dedup.tier_id
    body TEXT NOT NULL              -- the BurnAlert as JSON
);
CREATE TABLE IF NOT EXISTS engine_budget_notices (
    service TEXT NOT NULL,
    slo TEXT NOT NULL,
    grp TEXT NOT NULL,
    threshold REAL NOT NULL,
    sent_at TEXT NOT NULL,
    PRIMARY KEY (service, slo, grp, threshold)
);
CREATE TABLE IF NOT EXISTS engine_outage (
    id INTEGER PRIMARY KEY CHECK (id = 1),  -- at most one outage at a time
    since TEXT NOT NULL,
    noticed INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS engine_lease (
    id INTEGER PRIMARY KEY CHECK (id = 1),  -- one leader among the replicas
    holder TEXT NOT NULL,
    token INTEGER NOT NULL,          -- fencing token: +1 each time the lease changes hands
    expires_at TEXT NOT NULL         -- ISO, UTC
);
CREATE TABLE IF NOT EXISTS state_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),  -- one row: which database this is
    identity TEXT NOT NULL,          -- random; the marker file beside the database repeats it
    created_at TEXT NOT NULL,
    heartbeat_at TEXT                -- /readyz's write probe
);
"""
# Added after the first schema: (table, column, declaration), each added when missing.
_ADDED_COLUMNS = (
    # not before this time (ISO, UTC) may a rate-limited call be tried again: Retry-After
    ("notify_outbox", "not_before", "TEXT"),
)

SCHEMA_VERSION = 1  # PRAGMA user_version; 0 is a database from before identities
PROBE_BUSY_MS = 2000  # /readyz waits this long for another writer, not the 10 s of a job
COUNTED = ("changes", "notify_incidents", "notify_outbox", "engine_firing",
           "engine_budget_notices")


@dataclass(frozen=True)
class Identity:
    """Which state database this is: random, fixed when the database is created."""

    id: str
    created_at: str

    def line(self) -> str:
        return f"{self.id} {self.created_at}"


@dataclass
class StateCheck:
    """What `slo-engine state check` reports about one state database, opened read-only."""

    path: str
    exists: bool = False
    identity: Identity | None = None
    marker: Identity | None = None
    schema_version: int | None = None
    quick_check: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def marker_path(path: str | Path) -> Path:
    """The file beside the database that says a database with this identity existed."""
    return Path(f"{path}.id")


def fresh_start_hint(path: str | Path) -> str:
    return (f"inspect it with `slo-engine state check --state {path}`, or start fresh on "
            f"purpose with `slo-engine state reset --state {path} --yes` (open incidents "
            "are then forgotten)")


def check_state(path: str | Path) -> StateCheck:
    """Identity, schema version, quick_check and row counts, without creating or changing
    anything; `problems` lists what would make the engine refuse the file."""
    report = StateCheck(str(path))
    try:
        report.marker = _read_marker(path)
    except StateError as error:
        report.problems.append(str(error))
        return report
    report.exists = Path(path).exists()
    missing = _missing_or_empty(path)
    if missing is not None:
        if report.marker is not None:
            report.problems.append(f"the state database {path} {missing} but "
                                   f"{marker_path(path)} says it existed "
                                   f"(identity {report.marker.id})")
        return report
    try:
        with closing(sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro",
                                     uri=True, timeout=10)) as connection:
            report.quick_check = _quick_check(connection)
            if report.quick_check != "ok":
                report.problems.append(_corrupt(path, f"quick_check: {report.quick_check}"))
                return report
            report.schema_version = int(connection.execute("PRAGMA user_version")
                                        .fetchone()[0])
            tables = {name for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            report.identity = _read_identity(connection) if "state_meta" in tables else None
            report.counts = {name: int(connection.execute(
                f"SELECT COUNT(*) FROM {name}").fetchone()[0])
                for name in COUNTED if name in tables}
    except sqlite3.Error as error:
        report.problems.append(_corrupt(path, str(error)) if _is_corruption(error) else
                               f"cannot read the state database {path}: {error}")
        return report
    mismatch = _identity_mismatch(path, report.identity, report.marker)
    if mismatch is not None:
        report.problems.append(mismatch)
    if report.schema_version is not None and report.schema_version > SCHEMA_VERSION:
        report.problems.append(_newer(path, report.schema_version))
    return report


def _missing_or_empty(path: str | Path) -> str | None:
    """Why the file holds no database, or None when it has content."""
    try:
        size = Path(path).stat().st_size
    except (FileNotFoundError, NotADirectoryError):
        return "is missing"
    return "is empty" if size == 0 else None


def _read_marker(path: str | Path) -> Identity | None:
    try:
        words = marker_path(path).read_text(encoding="utf-8").split()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        raise StateError(f"cannot read {marker_path(path)}: {error}") from None
    return Identity(words[0], words[1] if len(words) > 1 else "") if words else Identity("", "")


def _write_marker(path: str | Path, identity: Identity) -> None:
    """Atomically: a half-written marker would refuse a healthy database."""
    target = marker_path(path)
    temporary = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    try:
        temporary.write_text(identity.line() + "\n", encoding="utf-8")
        os.replace(temporary, target)
    except OSError as error:
        raise StateError(f"cannot write {target} (the state database's marker): {error}; "
                         "check the directory is writable (state.path in the engine "
                         "config)") from None


def _read_identity(connection: sqlite3.Connection) -> Identity | None:
    row = connection.execute("SELECT identity, created_at FROM state_meta WHERE id = 1") \
        .fetchone()
    return None if row is None else Identity(str(row[0]), str(row[1]))


def _identity_mismatch(path: str | Path, identity: Identity | None,
                       marker: Identity | None) -> str | None:
    if marker is None or (identity is not None and identity.id == marker.id):
        return None
    held = f"identity {identity.id}" if identity is not None else "no identity"
    return (f"the state database {path} holds {held} but {marker_path(path)} says "
            f"{marker.id}: the file was replaced")


def _quick_check(connection: sqlite3.Connection) -> str:
    rows = [str(row[0]) for row in connection.execute("PRAGMA quick_check(5)")]
    return "ok" if rows == ["ok"] else "; ".join(rows)


def _is_corruption(error: sqlite3.Error) -> bool:
    name = str(getattr(error, "sqlite_errorname", ""))
    return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))


def _corrupt(path: str | Path, detail: str) -> str:
    return f"the state database {path} is corrupt ({detail})"


def _newer(path: str | Path, version: int) -> str:
    return (f"the state database {path} has schema version {version}, newer than this "
            f"slo-engine's {SCHEMA_VERSION}: upgrade slo-engine")


class StateDB:
    """The SQLite state store (implements storage.StateStore). One connection behind a lock,
    so it is safe to share between threads; WAL, so readers in other processes —
    `slo-engine changes list` — never wait for the service."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        in_memory = self.path == ":memory:"
        marker = None if in_memory else _read_marker(self.path)
        missing = None if in_memory else _missing_or_empty(self.path)
        if marker is not None and missing is not None:
            raise StateError(f"the state database {self.path} {missing} but "
                             f"{marker_path(self.path)} says it existed (identity "
                             f"{marker.id}); it is not recreated, so no incident is paged "
                             f"twice: {fresh_start_hint(self.path)}")
        try:
            if not in_memory:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._connection = sqlite3.connect(self.path, timeout=10, isolation_level=None,
                                               check_same_thread=False)
        except (sqlite3.Error, OSError) as error:
            raise StateError(f"cannot open the state database {self.path}: {error}; check the "
                             "path's directory exists and is writable (state.path in the "
                             "engine config)") from None
        self._lock = threading.RLock()
        try:
            self._verify()
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute("PRAGMA synchronous=NORMAL")
            self.ensure_schema(_SCHEMA)
            self._add_missing_columns()
            self.identity = self._identify(marker)
        except BaseException:
            self._connection.close()
            raise

    def _refuse(self, problem: str) -> StateError:
        return StateError(f"{problem}: {fresh_start_hint(self.path)}")

    def _verify(self) -> None:
        """PRAGMA quick_check before anything is read: a page overwritten inside the file
        would otherwise surface later as a dropped resolution."""
        try:
            result = _quick_check(self._connection)
            version = int(self._connection.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as error:
            if _is_corruption(error):
                raise self._refuse(_corrupt(self.path, str(error))) from None
            raise StateError(f"cannot open the state database {self.path}: {error}") from None
        if result != "ok":
            raise self._refuse(_corrupt(self.path, f"quick_check: {result}"))
        if version > SCHEMA_VERSION:
            raise StateError(_newer(self.path, version))

    def _identify(self, marker: Identity | None) -> Identity:
        """The database's identity, created on a first start and adopted by a database of
        an earlier version; it must match the marker, which is (re)written to repeat it."""
        with self.transaction() as unit:
            identity = _read_identity(unit.connection)
            if identity is None and marker is None:
                identity = Identity(secrets.token_hex(8), datetime.now(UTC).isoformat(
                    timespec="seconds"))
                unit.connection.execute(
                    "INSERT INTO state_meta (id, identity, created_at) VALUES (1, ?, ?)",
                    (identity.id, identity.created_at))
                unit.connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        mismatch = _identity_mismatch(self.path, identity, marker)
        if mismatch is not None:
            raise self._refuse(mismatch)
        assert identity is not None
        if self.path != ":memory:" and marker is None:
            _write_marker(self.path, identity)
        return identity

    @property
    def location(self) -> str:
        return self.path

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def __enter__(self) -> StateDB:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def ensure_schema(self, script: str) -> None:
        """Create tables if missing (idempotent DDL)."""
        try:
            with self._lock:
                self._connection.executescript(script)
        except sqlite3.Error as error:
            raise StateError(f"cannot create tables in {self.path}: {error}") from None

    def _add_missing_columns(self) -> None:
        """Columns newer than a state.db: added in place, so an existing file keeps working
        (ALTER TABLE ADD COLUMN is not idempotent, hence the check)."""
        try:
            with self._lock:
                for table, column, declaration in _ADDED_COLUMNS:
                    known = {row[1] for row in
                             self._connection.execute(f"PRAGMA table_info({table})")}
                    if column not in known:
                        self._connection.execute(
                            f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
        except sqlite3.Error as error:
            raise StateError(f"cannot add columns to {self.path}: {error}") from None

    @contextmanager
    def transaction(self) -> Iterator[SqliteTransaction]:
        """All statements inside commit together or not at all (IMMEDIATE: writers queue).
        A failed COMMIT leaves SQLite's transaction open, so it is rolled back here: else
        every later transaction of this connection would fail. SQLite's own errors (disk
        full, I/O) are StateErrors, which the service reports instead of crashing a job."""
        with self._lock:
            try:
                self._connection.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                raise StateError(f"cannot write the state database {self.path}: {error}") \
                    from None
            try:
                yield SqliteTransaction(self._connection)
                self._connection.execute("COMMIT")
            except sqlite3.Error as error:
                self._rollback()
                raise StateError(f"cannot write the state database {self.path}: {error}") \
                    from None
            except BaseException:
                self._rollback()
                raise

    @contextmanager
    def read(self) -> Iterator[SqliteReader]:
        """Reads in autocommit: each statement sees the last commit, no writer waits."""
        try:
            with self._lock:
                yield SqliteReader(self._connection)
        except sqlite3.Error as error:
            raise StateError(f"cannot read the state database {self.path}: {error}") from None

    def _rollback(self) -> None:
        """Roll back unless SQLite already did (it does on some errors, e.g. a full disk)."""
        if self._connection.in_transaction:
            self._connection.execute("ROLLBACK")

    def query(self, sql: str, parameters: Iterable[object] = ()) -> list[sqlite3.Row]:
        """Raw SQL, for inspecting this file (tests, debugging); the engine never needs it."""
        with self.read() as reader:
            return reader.rows(sql, tuple(parameters))

    def probe_write(self) -> None:
        """Upsert the heartbeat and commit: a probe that only reads says "ok" while every
        write fails (an immutable file, a full disk, a writer holding the lock)."""
        with self._lock:
            self._connection.execute(f"PRAGMA busy_timeout = {PROBE_BUSY_MS}")
            try:
                with self.transaction() as unit:
                    unit.connection.execute("UPDATE state_meta SET heartbeat_at = ? "
                                            "WHERE id = 1", (datetime.now(UTC).isoformat(),))
            finally:
                self._connection.execute("PRAGMA busy_timeout = 10000")

    def add_changes(self, changes: Iterable[Change]) -> list[Change]:
        with self.transaction() as unit:
            return unit.add_changes(changes, datetime.now(UTC))

    def changes(self, services: Iterable[str] | None = None, since: datetime | None = None,
                until: datetime | None = None, limit: int | None = None,
                kinds: Iterable[str] | None = None) -> list[Change]:
        with self.read() as reader:
            return reader.changes(services, since, until, limit, kinds)


class SqliteReader:
    """The reads of one unit of work on one SQLite connection (storage.StateReader)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def rows(self, sql: str, parameters: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        cursor = self.connection.execute(sql, parameters)
        cursor.row_factory = sqlite3.Row
        return list(cursor.fetchall())

    def row(self, sql: str, parameters: tuple[object, ...]) -> sqlite3.Row | None:
        cursor = self.connection.execute(sql, parameters)
        cursor.row_factory = sqlite3.Row
        found: sqlite3.Row | None = cursor.fetchone()
        return found

    def changes(self, services: Iterable[str] | None = None, since: datetime | None = None,
                until: datetime | None = None, limit: int | None = None,
                kinds: Iterable[str] | None = None) -> list[Change]:
        sql = "SELECT body FROM changes WHERE 1=1"
        parameters: list[object] = []
        for column, values in (("service", services), ("kind", kinds)):
            if values is not None:
                names = sorted(set(values))
                sql += f" AND {column} IN ({', '.join('?' for _ in names)})"
                parameters.extend(names)
        if since is not None:
            sql += " AND time_ns >= ?"
            parameters.append(_ns(since))
        if until is not None:
            sql += " AND time_ns <= ?"
            parameters.append(_ns(until))
        sql += " ORDER BY time_ns DESC, service, kind, version"
        if limit is not None:
            sql += " LIMIT ?"
            parameters.append(limit)
        return [Change.model_validate_json(row["body"])
                for row in self.rows(sql, tuple(parameters))]

    def firing(self) -> dict[str, str]:
        return {row["tier"]: row["body"]
                for row in self.rows("SELECT tier, body FROM engine_firing")}

    def budget_notices_sent(self) -> dict[NoticeThreshold, datetime]:
        rows = self.rows("SELECT service, slo, grp, threshold, sent_at "
                         "FROM engine_budget_notices")
        return {(r["service"], r["slo"], r["grp"], float(r["threshold"])):
                datetime.fromisoformat(r["sent_at"]) for r in rows}

    def outage(self) -> Outage | None:
        row = self.row("SELECT since, noticed, reason FROM engine_outage WHERE id = 1", ())
        if row is None:
            return None
        return Outage(datetime.fromisoformat(row["since"]), bool(row["noticed"]), row["reason"])

    def open_incident(self, incident_key: str) -> Incident | None:
        row = self.row("SELECT * FROM notify_incidents WHERE incident_key = ? AND "
                       "resolved_at IS NULL", (incident_key,))
        return None if row is None else _incident(row)

    def outbox_item(self, item_id: int) -> OutboxItem | None:
        row = self.row("SELECT * FROM notify_outbox WHERE id = ?", (item_id,))
        return None if row is None else _outbox_item(row)

    def queued_update(self, post_id: int) -> int | None:
        row = self.row("SELECT id FROM notify_outbox WHERE parent_id = ? AND kind = 'update' "
                       "AND state = 'queued' ORDER BY id DESC LIMIT 1", (post_id,))
        return None if row is None else int(row["id"])

    def notice_queued(self, notice_key: str) -> bool:
        return self.row("SELECT 1 FROM notify_outbox WHERE notice_key = ?",
                        (notice_key,)) is not None

    def outbox_depth(self) -> int:
        rows = self.rows("SELECT COUNT(*) AS n FROM notify_outbox "
                         "WHERE state IN ('queued', 'sending')")
        return int(rows[0]["n"])

    def outbox_not_before(self) -> datetime | None:
        row = self.row("SELECT not_before FROM notify_outbox WHERE state = 'queued' "
                       "ORDER BY id LIMIT 1", ())
        return None if row is None or row["not_before"] is None else \
            datetime.fromisoformat(row["not_before"])

    def lease(self) -> Lease | None:
        row = self.row("SELECT holder, token, expires_at FROM engine_lease WHERE id = 1", ())
        return None if row is None else Lease(row["holder"], int(row["token"]),
                                              datetime.fromisoformat(row["expires_at"]))


class SqliteTransaction(SqliteReader):
    """The writes of one transaction on one SQLite connection (storage.StateWriter)."""

    def acquire_lease(self, holder: str, ttl: timedelta, now: datetime) -> Lease:
        current = self.lease()
        taken = lease_rules.acquired(current, holder, ttl, now)
        if taken is not current:
            self.connection.execute(
                "INSERT INTO engine_lease (id, holder, token, expires_at) VALUES (1, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, "
                "token = excluded.token, expires_at = excluded.expires_at",
                (taken.holder, taken.token, taken.expires_at.isoformat()))
        return taken

    def release_lease(self, holder: str, now: datetime) -> None:
        if lease_rules.releasable(self.lease(), holder, now):
            self.connection.execute("UPDATE engine_lease SET expires_at = ? WHERE id = 1",
                                    (now.isoformat(),))

    def check_fence(self, token: int, now: datetime) -> None:
        lease_rules.check_fence(self.lease(), token, now)

    def add_changes(self, changes: Iterable[Change], recorded_at: datetime) -> list[Change]:
        added: list[Change] = []
        for change in changes:
            service, kind, version, time = change.identity
            cursor = self.connection.execute(
                "INSERT INTO changes VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (service, kind, version, time, _ns(change.time),
                 change.model_dump_json(exclude_none=True), recorded_at.isoformat()))
            if cursor.rowcount:
                added.append(change)
        return added

    def save_firing(self, firing: Mapping[str, str]) -> None:
        self.connection.execute("DELETE FROM engine_firing")
        self.connection.executemany("INSERT INTO engine_firing VALUES (?, ?)",
                                    list(firing.items()))

    def record_budget_notice(self, service: str, slo: str, group: str,
                             thresholds: Iterable[float], sent_at: datetime) -> None:
        self.connection.executemany(
            "INSERT INTO engine_budget_notices VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (service, slo, grp, threshold) DO UPDATE SET sent_at = excluded.sent_at",
            [(service, slo, group, threshold, sent_at.isoformat()) for threshold in thresholds])

    def start_outage(self, since: datetime, reason: str) -> Outage:
        self.connection.execute(
            "INSERT INTO engine_outage (id, since, reason) VALUES (1, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET reason = excluded.reason", (since.isoformat(), reason))
        outage = self.outage()
        assert outage is not None
        return outage

    def mark_outage_noticed(self) -> None:
        self.connection.execute("UPDATE engine_outage SET noticed = 1 WHERE id = 1")

    def end_outage(self) -> None:
        self.connection.execute("DELETE FROM engine_outage WHERE id = 1")

    def enqueue(self, kind: OutboxKind, channel: str, body: str, created_at: datetime, *,
                parent_id: int | None = None, notice_key: str | None = None,
                filename: str | None = None, content: bytes | None = None) -> int:
        cursor = self.connection.execute(
            "INSERT INTO notify_outbox (kind, channel, parent_id, notice_key, body, filename, "
            "content, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (kind, channel, parent_id, notice_key, body, filename, content,
             created_at.isoformat()))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def replace_queued_body(self, item_id: int, body: str) -> bool:
        return bool(self.connection.execute(
            "UPDATE notify_outbox SET body = ? WHERE id = ? AND state = 'queued'",
            (body, item_id)).rowcount)

    def claim_next(self, now: datetime | None = None) -> OutboxItem | None:
        row = self.row("SELECT * FROM notify_outbox WHERE state = 'queued' ORDER BY id LIMIT 1",
                       ())
        if row is None:
            return None
        not_before = row["not_before"]
        if not_before is not None and \
                datetime.fromisoformat(not_before) > (now or datetime.now(UTC)):
            return None
        self.connection.execute("UPDATE notify_outbox SET state = 'sending', "
                                "attempts = attempts + 1 WHERE id = ?", (row["id"],))
        return _outbox_item(row)

    def finish(self, item_id: int, state: Literal["sent", "failed"], *,
               posted: tuple[str, str] | None = None, error: str | None = None,
               sent_at: datetime | None = None, drop_content: bool = False) -> None:
        channel, ts = posted if posted is not None else (None, None)
        self.connection.execute(
            "UPDATE notify_outbox SET state = ?, channel = COALESCE(?, channel), "
            "ts = COALESCE(?, ts), last_error = ?, sent_at = ? WHERE id = ?",
            (state, channel, ts, error, sent_at.isoformat() if sent_at else None, item_id))
        if drop_content:
            self.connection.execute("UPDATE notify_outbox SET content = NULL WHERE id = ?",
                                    (item_id,))

    def requeue(self, item_id: int, not_before: datetime | None = None) -> None:
        self.connection.execute(
            "UPDATE notify_outbox SET state = 'queued', not_before = ? WHERE id = ?",
            (not_before.isoformat() if not_before is not None else None, item_id))

    def requeue_interrupted(self) -> int:
        return self.connection.execute("UPDATE notify_outbox SET state = 'queued' "
                                       "WHERE state = 'sending'").rowcount

    def add_incident(self, incident: NewIncident) -> int:
        cursor = self.connection.execute(
            "INSERT INTO notify_incidents (incident_key, service, slo, group_key, severity, "
            "channel, post_id, tiers, opened_at, consumed_at_open, fingerprint, message) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (incident.incident_key, incident.service, incident.slo, incident.group_key,
             incident.severity, incident.channel, incident.post_id,
             json.dumps(list(incident.tiers)), incident.opened_at.isoformat(),
             incident.consumed_at_open, incident.fingerprint, incident.message))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def repost_incident(self, incident_id: int, channel: str, post_id: int,
                        tiers: tuple[str, ...], fingerprint: str, message: str) -> None:
        self.connection.execute(
            "UPDATE notify_incidents SET channel = ?, post_id = ?, fingerprint = ?, "
            "message = ?, tiers = ? WHERE id = ?",
            (channel, post_id, fingerprint, message, json.dumps(list(tiers)), incident_id))

    def update_incident_page(self, incident_id: int, fingerprint: str, message: str) -> None:
        self.connection.execute("UPDATE notify_incidents SET fingerprint = ?, message = ? "
                                "WHERE id = ?", (fingerprint, message, incident_id))

    def update_incident_tiers(self, incident_id: int, tiers: tuple[str, ...]) -> None:
        self.connection.execute("UPDATE notify_incidents SET tiers = ? WHERE id = ?",
                                (json.dumps(list(tiers)), incident_id))

    def resolve_incident(self, incident_id: int, resolved_at: datetime,
                         budget_spent: float | None, message: str) -> None:
        self.connection.execute(
            "UPDATE notify_incidents SET resolved_at = ?, budget_spent = ?, tiers = '[]', "
            "message = ? WHERE id = ?",
            (resolved_at.isoformat(), budget_spent, message, incident_id))

    def prune(self, before: datetime) -> None:
        cutoff = before.isoformat()
        self.connection.execute(
            "DELETE FROM notify_outbox WHERE state IN ('sent', 'failed') "
            "AND created_at < ? "
            "AND id NOT IN (SELECT post_id FROM notify_incidents WHERE resolved_at IS NULL) "
            "AND id NOT IN (SELECT parent_id FROM notify_outbox "
            "               WHERE parent_id IS NOT NULL AND state IN ('queued', 'sending'))",
            (cutoff,))
        self.connection.execute("DELETE FROM notify_incidents WHERE resolved_at IS NOT NULL "
                                "AND opened_at < ?", (cutoff,))


def _incident(row: sqlite3.Row) -> Incident:
    resolved = row["resolved_at"]
    return Incident(
        id=int(row["id"]), incident_key=row["incident_key"], service=row["service"],
        slo=row["slo"], group_key=row["group_key"], severity=row["severity"],
        channel=row["channel"], post_id=int(row["post_id"]),
        tiers=tuple(json.loads(row["tiers"])), opened_at=datetime.fromisoformat(row["opened_at"]),
        resolved_at=datetime.fromisoformat(resolved) if resolved is not None else None,
        consumed_at_open=row["consumed_at_open"], budget_spent=row["budget_spent"],
        fingerprint=row["fingerprint"], message=row["message"])


def _outbox_item(row: sqlite3.Row) -> OutboxItem:
    return OutboxItem(
        id=int(row["id"]), kind=cast(OutboxKind, row["kind"]), channel=row["channel"],
        parent_id=row["parent_id"], notice_key=row["notice_key"], body=row["body"],
        filename=row["filename"], content=row["content"], state=row["state"], ts=row["ts"],
        attempts=int(row["attempts"]), last_error=row["last_error"],
        not_before=datetime.fromisoformat(row["not_before"]) if row["not_before"] else None)


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000) * 1000
