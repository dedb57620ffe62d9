"""`slo-engine state check` and `state reset`: the two ways past a refused state database;
`state migrate`: bring a PostgreSQL state up to this version's schema before replicas start.

The engine refuses a state database that existed and is now missing, empty, replaced or
corrupt, because starting empty would page open incidents twice. `check` says what is there;
`reset --yes` starts fresh on purpose, keeping the old file aside for inspection.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from slo_engine.cli.arguments import Commands, state_arguments, state_path
from slo_engine.errors import StateError


def register(commands: Commands) -> None:
    state = commands.add_parser("state", help="the state database: check its identity and "
                                "integrity, or reset it on purpose")
    actions = state.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="print the database's identity, schema version, "
                               "quick_check result and row counts; exit 1 on a problem")
    state_arguments(check)
    check.set_defaults(handler=_check)
    reset = actions.add_parser("reset", help="move the database aside as "
                               "<file>.broken-<time> and create an empty one (open incidents "
                               "are forgotten)")
    state_arguments(reset)
    reset.add_argument("--yes", action="store_true", help="really start fresh")
    reset.set_defaults(handler=_reset)
    migrate = actions.add_parser("migrate", help="apply the schema migrations the state "
                                 "database lacks and print them (every start does it too)")
    migrate.add_argument("--config", type=Path, required=True, metavar="FILE",
                         help="engine config (slo-engine.yaml): its state.url or state.path")
    migrate.set_defaults(handler=_migrate)


def _migrate(args: argparse.Namespace) -> int:
    from slo_engine.config import load_config
    from slo_engine.storage.sqlite import StateDB

    state = load_config(args.config).state
    if state.url is None:
        with StateDB(state.path) as sqlite:
            print(f"{sqlite.location}: SQLite, upgraded in place when opened; nothing to "
                  "migrate")
        return 0
    from slo_engine.storage.postgres import PostgresStore

    with PostgresStore(state.url.get_secret_value()) as store:
        for migration in store.applied:
            print(f"applied {migration.name} (schema version {migration.version})")
        print(f"{store.location}: schema version {store.schema_version()}"
              + ("" if store.applied else ", up to date"))
    return 0


def _check(args: argparse.Namespace) -> int:
    from slo_engine.storage.sqlite import check_state, marker_path

    path = state_path(args)
    report = check_state(path)
    print(f"database: {path}{'' if report.exists else ' (missing)'}")
    if report.identity is not None:
        print(f"identity: {report.identity.id} (created {report.identity.created_at})")
    elif report.quick_check == "ok":
        print("identity: none (an earlier version's database; the next open adopts it)")
    marker = marker_path(path)
    print(f"marker: {marker}: " + (report.marker.id if report.marker is not None
                                   else "missing"))
    if report.schema_version is not None:
        print(f"schema version: {report.schema_version}")
    if report.quick_check is not None:
        print(f"quick_check: {report.quick_check}")
    for table, count in report.counts.items():
        print(f"rows: {table}: {count}")
    if not report.exists and report.marker is None:
        print("no state yet: the first start creates it")
    for problem in report.problems:
        print(f"problem: {problem}")
    if report.problems:
        print(f"to start fresh on purpose: slo-engine state reset --state {path} --yes")
    return 1 if report.problems else 0


def _reset(args: argparse.Namespace) -> int:
    from slo_engine.storage.sqlite import StateDB, marker_path

    path = state_path(args)
    if not args.yes:
        raise StateError(f"state reset moves {path} aside and starts with an empty state "
                         "database: open incidents are forgotten, so their pages are never "
                         "resolved; add --yes to do it")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = Path(f"{path}.broken-{stamp}")
    moved: list[str] = []
    try:
        for suffix in ("", "-wal", "-shm"):  # the WAL holds commits the file may not yet
            source = Path(f"{path}{suffix}")
            if source.exists():
                source.rename(Path(f"{aside}{suffix}"))
                moved.append(str(source))
        marker_path(path).unlink(missing_ok=True)
    except OSError as error:
        raise StateError(f"cannot move {path} aside: {error}") from None
    with StateDB(path) as state:
        identity = state.identity
    if moved:
        print(f"moved {', '.join(moved)} aside as {aside}")
    print(f"created {path} (identity {identity.id}) and {marker_path(path)}")
    return 0
