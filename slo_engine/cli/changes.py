"""Subcommands over change events and incidents: changes add/import/list/sync-build-info,
and incidents (budget attributed to burns and the changes before them)."""

from __future__ import annotations

import argparse
import io
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slo_engine.cli.arguments import (
    DEFAULT_STATE,
    Commands,
    duration,
    engine_config,
    moment,
    open_state,
    slo_paths,
    state_arguments,
)
from slo_engine.cli.budget import event_source_arguments, events
from slo_engine.errors import ChangeError, LedgerError

if TYPE_CHECKING:
    import pandas as pd

    from slo_engine.changes.events import Change
    from slo_engine.config import BuildInfoSource, EngineConfig
    from slo_engine.paging.page import PageContext
    from slo_engine.storage.interface import StateStore

_FIELDS = ("service", "kind", "version", "previous_version", "rollback_command", "url",
           "commit", "author", "description", "time")


def register(commands: Commands) -> None:
    changes = commands.add_parser("changes", help="change events (deploys, config, flags, "
                                  "migrations): record, import, list, read from build info")
    actions = changes.add_subparsers(dest="action", required=True, metavar="ACTION")

    add = actions.add_parser("add", help="record one change, e.g. from a CD pipeline; a retry "
                             "of the same change is recognised and exits 0")
    add.add_argument("--service", required=True)
    add.add_argument("--kind", required=True, metavar="KIND",
                     help="deploy, config, feature_flag, migration or infrastructure")
    add.add_argument("--version", help="what is live now, e.g. web-api:2026.05.12-8f3a91c")
    add.add_argument("--previous-version", help="what it replaced (the rollback target)")
    add.add_argument("--rollback-command", help="how to undo it; default: derived from "
                     "--previous-version with changes.rollback_template")
    add.add_argument("--url", help="link to the CI run or change request")
    add.add_argument("--commit")
    add.add_argument("--author")
    add.add_argument("--description")
    add.add_argument("--time", metavar="TIME", help="when it landed, ISO 8601 with a timezone "
                     "(default now; without it, a version equal to the service's latest of "
                     "that kind is a retry and is not recorded again)")
    state_arguments(add)
    add.set_defaults(handler=_add)

    import_ = actions.add_parser("import", help="record every change of a JSON-lines file; one "
                                 "bad line imports nothing and is named file:line")
    import_.add_argument("file", type=Path, metavar="FILE.jsonl")
    state_arguments(import_)
    import_.set_defaults(handler=_import)

    list_ = actions.add_parser("list", help="recent changes, newest first")
    list_.add_argument("--service", action="append", default=None, metavar="S",
                       help="only this service (repeatable)")
    list_.add_argument("--since", type=duration, default=timedelta(hours=24), metavar="DUR",
                       help="how far back, e.g. 24h (default), 7d")
    list_.add_argument("--limit", type=int, default=500)
    list_.add_argument("--format", choices=("table", "json", "jsonl"), default="table",
                       help="jsonl is what `changes import` reads")
    state_arguments(list_)
    list_.set_defaults(handler=_list)

    sync = actions.add_parser("sync-build-info", help="record the deploys a build-info metric "
                              "shows: a new version label value on a service's series")
    sync.add_argument("--prometheus-url", metavar="URL",
                      help="default: prometheus.url of --config")
    sync.add_argument("--metric", default=None, help="default: changes.build_info of --config, "
                      "else app_build_info")
    sync.add_argument("--service-label", default="service")
    sync.add_argument("--version-label", default="version")
    sync.add_argument("--since", type=duration, default=timedelta(days=1), metavar="DUR")
    sync.add_argument("--step", type=duration, default=timedelta(seconds=60), metavar="DUR",
                      help="resolution of the scan (default 60s; at most 5m)")
    state_arguments(sync)
    sync.set_defaults(handler=_sync_build_info)

    incidents = commands.add_parser("incidents", help="every burn over history (a backtest of "
                                    "the SLOs' tiers): budget spent and the change before it")
    slo_paths(incidents)
    event_source_arguments(incidents)
    incidents.add_argument("--since", type=duration, default=timedelta(days=30), metavar="DUR")
    incidents.add_argument("--until", type=moment, default=None, metavar="TIME",
                           help="end of the replay (ISO 8601, UTC); default now")
    incidents.add_argument("--changes", type=Path, action="append", default=None,
                           metavar="FILE.jsonl", help="change events (repeatable); the state "
                           "database's are used too when it exists or is named")
    state_arguments(incidents)
    incidents.add_argument("--format", choices=("table", "json", "csv"), default="table")
    incidents.add_argument("--page", default=None, metavar="worst|N",
                           help="also show, in the terminal, the Slack page the engine would "
                           "have sent when incident N (as numbered in the table) or the one "
                           "that spent the most budget first fired")
    incidents.set_defaults(handler=_incidents)


# --- changes add / import / list ------------------------------------------------------------


def _add(args: argparse.Namespace) -> int:
    from slo_engine.changes.events import parse_change

    data: dict[str, Any] = {name: getattr(args, name) for name in _FIELDS
                            if getattr(args, name) is not None}
    data.setdefault("time", datetime.now(UTC))
    try:
        change = parse_change({**data, "source": "cli"}, "changes add")
    except ChangeError as error:
        raise ChangeError(_as_flags(str(error))) from None
    with open_state(args) as state:
        retry = _latest_same(state, change) if args.time is None and change.version else None
        added = [] if retry is not None else state.add_changes([change])
    if added:
        print(f"recorded: {_describe(change)}")
    else:
        known = retry or change
        print(f"already known: {_describe(known)}; nothing recorded")
    return 0


def _latest_same(state: StateStore, change: Change) -> Change | None:
    """The service's latest change of this kind, when it has the same version: a CD step
    retried without --time reports the deploy it already reported."""
    latest = state.changes(services=[change.service], kinds=[change.kind], limit=1)
    return latest[0] if latest and latest[0].version == change.version else None


def _as_flags(message: str) -> str:
    """Pydantic's field names as the flags a pipeline author typed."""
    for name in _FIELDS:
        message = message.replace(f" {name}: ", f" --{name.replace('_', '-')}: ")
    return message


def _describe(change: Change) -> str:
    what = f"{change.kind} of {change.service}"
    if change.version:
        what += f" {change.version}"
    if change.previous_version:
        what += f" (was {change.previous_version})"
    return f"{what} at {_iso(change.time)}"


def _import(args: argparse.Namespace) -> int:
    from slo_engine.changes.events import read_change_lines

    changes = read_change_lines(args.file)
    with open_state(args) as state:
        added = state.add_changes(changes)
    print(f"{args.file}: {len(added)} new change{'s' if len(added) != 1 else ''}, "
          f"{len(changes) - len(added)} already known")
    return 0


def _list(args: argparse.Namespace) -> int:
    from slo_engine.changes.events import EARLIEST

    # No change is older than EARLIEST, so a longer look back lists them all.
    now = datetime.now(UTC)
    since = now - args.since if args.since < now - EARLIEST else EARLIEST
    with open_state(args) as state:
        changes = state.changes(services=args.service, since=since, limit=args.limit)
    if args.format == "json":
        sys.stdout.write(json.dumps([c.as_json() for c in changes], indent=2) + "\n")
    elif args.format == "jsonl":
        sys.stdout.write("".join(json.dumps(c.as_json()) + "\n" for c in changes))
    elif not changes:
        print(f"no changes since {_iso(since)}")
    else:
        sys.stdout.write(_change_table(changes))
    return 0


def _change_table(changes: list[Change]) -> str:
    from rich.table import Table

    view = Table(title="Changes, newest first")
    for name in ("time", "service", "kind", "version", "previous", "author", "source",
                 "description"):
        view.add_column(name)
    for c in changes:
        view.add_row(_iso(c.time), c.service, c.kind, c.version or "-",
                     c.previous_version or "-", c.author or "-", c.source,
                     c.description or "")
    return _printed(view)


# --- changes sync-build-info ----------------------------------------------------------------


def _sync_build_info(args: argparse.Namespace) -> int:
    from slo_engine.prometheus.build_info import build_info_changes
    from slo_engine.prometheus.source import PrometheusSource

    config = engine_config(args)
    url = args.prometheus_url or (config.prometheus.url if config is not None else None)
    if not url:
        raise ChangeError("changes sync-build-info: no Prometheus to read; give "
                          "--prometheus-url URL, or --config with prometheus.url")
    step = int(args.step.total_seconds())
    if not 0 < step <= 300:
        raise ChangeError(f"changes sync-build-info: --step must be between 1s and 5m (a new "
                          f"version is then placed to the second), got {step}s")
    headers = config.prometheus.header_values() if config is not None else None
    end = datetime.now(UTC)
    with PrometheusSource(url, headers) as source, open_state(args) as state:
        for spec in _build_info_specs(args, config):
            found = build_info_changes(source, spec, end - args.since, end, step)
            added = state.add_changes(found)
            print(f"{spec.metric}: {len(found)} deploy{'s' if len(found) != 1 else ''} since "
                  f"{_iso(end - args.since)}, {len(added)} new")
            for change in added:
                print(f"  recorded: {_describe(change)}")
    return 0


def _build_info_specs(args: argparse.Namespace,
                      config: EngineConfig | None) -> list[BuildInfoSource]:
    from slo_engine.config import BuildInfoSource

    if args.metric is None and config is not None and config.changes.build_info:
        return list(config.changes.build_info)
    return [BuildInfoSource(metric=args.metric or "app_build_info",
                            service_label=args.service_label,
                            version_label=args.version_label)]


# --- incidents ------------------------------------------------------------------------------


def _incidents(args: argparse.Namespace) -> int:
    from slo_engine import app
    from slo_engine.config import ChangesConfig

    config = engine_config(args)
    settings = config.changes if config is not None else ChangesConfig()
    until = args.until or datetime.now(UTC)

    def find_changes(services: set[str], since: datetime, until: datetime) -> list[Change]:
        from slo_engine.changes.events import read_change_lines

        found: dict[tuple[str, str, str, str], Change] = {}
        for path in args.changes or ():
            found.update((c.identity, c) for c in read_change_lines(path))
        if args.config is not None or args.state is not None or DEFAULT_STATE.exists():
            with open_state(args) as state:
                found.update((c.identity, c) for c in state.changes(
                    services=services, since=since, until=until))
        return list(found.values())

    history = app.incident_history(args.paths, events(args, step_seconds=60), args.since,
                                   until, find_changes, settings)
    for warning in history.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    incidents = history.incidents
    if args.page is not None:
        page = app.incident_page(history.slos, history.ledger, _chosen(incidents, args.page),
                                 history.changes, settings)
        _show_page(page)
        return 0
    if args.format == "json":
        sys.stdout.write(json.dumps(_records(incidents), indent=2) + "\n")
    elif args.format == "csv":
        sys.stdout.write(incidents.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%SZ"))
    else:
        sys.stdout.write(_incident_table(incidents))
    return 0


def _chosen(incidents: pd.DataFrame, which: str) -> dict[str, Any]:
    if incidents.empty:
        raise LedgerError("incidents --page: no incident in the replayed history; widen "
                          "--since or check the events")
    if which == "worst":
        index = int(incidents["budget_spent"].fillna(-1.0).to_numpy().argmax())
    elif which.isdigit() and 1 <= int(which) <= len(incidents):
        index = int(which) - 1
    else:
        raise LedgerError(f"incidents --page: got {which!r}; give 'worst' or a number from 1 "
                          f"to {len(incidents)} (the table's # column)")
    return {str(name): value for name, value in incidents.iloc[index].items()}


def _show_page(context: PageContext) -> None:
    from slo_engine.paging.page import render_page
    from slo_engine.paging.slack import DryRunDelivery

    channel = f"#{context.slo.owner} (dry run: nothing is sent)"
    DryRunDelivery().post(channel, render_page(context))


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows: times in ISO 8601 UTC, the duration in seconds, NaN as null."""
    import pandas as pd

    records = []
    for row in frame.to_dict(orient="records"):
        record: dict[str, Any] = {}
        for key, value in row.items():
            name = str(key)
            if name == "duration":
                record["duration_s"] = None if pd.isna(value) else value.total_seconds()
            elif isinstance(value, pd.Timestamp):
                record[name] = _iso(value.to_pydatetime())
            elif value is None or (not isinstance(value, str) and pd.isna(value)):
                record[name] = None
            else:
                record[name] = value.item() if hasattr(value, "item") else value
        records.append(record)
    return records


def _incident_table(incidents: pd.DataFrame) -> str:
    from rich.table import Table

    from slo_engine.spec.durations import describe_seconds

    view = Table(title="Incidents: budget spent and the change before each")
    for name in ("#", "SLO", "severity", "onset", "fired", "lasted", "budget spent",
                 "change before", "rollback"):
        view.add_column(name)
    for number, row in enumerate(_records(incidents), start=1):
        name = f"{row['service']}/{row['slo']}" + (f" {{{row['group']}}}" if row["group"] else "")
        lasted = "firing" if row["duration_s"] is None else describe_seconds(row["duration_s"])
        change = "-"
        if row["change_kind"]:
            change = " ".join(str(row[c]) for c in ("change_kind", "change_service",
                                                   "change_version", "change_time") if row[c])
            if row["change_author"]:
                change += f" by {row['change_author']}"
            if row["suspect"]:
                change = f"SUSPECT {change}"
        spent = row["budget_spent"]
        view.add_row(str(number), name, row["severity"] or "-", row["onset"], row["start"],
                     lasted,
                     "-" if spent is None else f"{spent:.1%}", change,
                     row["rollback_command"] or "-")
    return _printed(view)


def _printed(view: Any) -> str:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=200, force_terminal=False, color_system=None)
    console.print(view)
    return str(console.file.getvalue()).rstrip() + "\n"  # type: ignore[attr-defined]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
