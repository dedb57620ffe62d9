"""`slo-engine ui`: the read-only web view of `slo-engine run`, for a laptop, over an event
file or a Prometheus, without the service's config, Slack or state database."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from slo_engine import app
from slo_engine.cli.arguments import Commands, duration, moment, slo_paths
from slo_engine.cli.budget import event_source_arguments, events
from slo_engine.errors import SloEngineError

if TYPE_CHECKING:
    from slo_engine.changes.events import Change
    from slo_engine.web.server import ViewAuth


def register(commands: Commands) -> None:
    ui = commands.add_parser(
        "ui", help="serve the read-only web view (SLO list, SLO pages with burn-down, "
        "changes, incidents) on 127.0.0.1 until Ctrl-C",
        description="Serve the web view `slo-engine run` serves at /, from an event file or "
        "a Prometheus. Read-only; no internet needed (every asset is served by slo-engine).")
    slo_paths(ui)
    event_source_arguments(ui)
    ui.add_argument("--changes", type=Path, action="append", default=[], metavar="FILE",
                    help="change events (JSON lines) to mark and attribute; repeatable")
    ui.add_argument("--at", type=moment, default=None, metavar="TIME",
                    help="show the SLOs as of this time (ISO 8601, UTC); default now, "
                    "read again every --refresh")
    ui.add_argument("--refresh", type=duration, default=timedelta(minutes=1), metavar="DUR",
                    help="read the events again when the view is older than this (default "
                    "1m; never with --at)")
    ui.add_argument("--listen", type=_listen, default="127.0.0.1:8080", metavar="HOST:PORT",
                    help="where to serve (default 127.0.0.1:8080; port 0 picks a free one)")
    auth = ui.add_mutually_exclusive_group()
    auth.add_argument("--token-env", default=None, metavar="VAR",
                      help="require 'Authorization: Bearer <token>', the token read from "
                      "this environment variable")
    auth.add_argument("--basic-auth-env", default=None, metavar="VAR",
                      help="require basic auth, USER:PASSWORD read from this environment "
                      "variable")
    ui.set_defaults(handler=_ui)


def _ui(args: argparse.Namespace) -> int:
    from slo_engine.config import ChangesConfig
    from slo_engine.service.http_api import HttpServer
    from slo_engine.web.server import SnapshotCache, create_view

    auth = _auth(args)
    services = app.validate(args.paths)
    changes = _read_changes(args.changes)
    source = events(args)

    def find_changes(names: set[str], since: datetime, until: datetime) -> list[Change]:
        return [c for c in changes if c.service in names and since <= c.time <= until]

    def load() -> app.ViewSnapshot:
        return app.view_snapshot(services, source, args.at or datetime.now(UTC), find_changes,
                                 ChangesConfig())

    cache = SnapshotCache(load, None if args.at else args.refresh.total_seconds())
    cache.get()  # a bad file or an unreachable Prometheus fails here, not on the first page
    server = HttpServer(create_view(cache, auth), args.listen)
    try:
        server.start()
    except SloEngineError:
        raise SloEngineError(f"--listen {args.listen}: cannot listen there (is the port in "
                             "use?); give another port, or port 0 for a free one") from None
    host = args.listen.rpartition(":")[0] or "127.0.0.1"
    print(f"serving the web view on http://{host}:{server.port}/ (Ctrl-C to stop)",
          flush=True)
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()
    server.stop()
    return 0


def _listen(text: str) -> str:
    host, _, port = text.rpartition(":")
    if not (host and port.isdigit() and int(port) <= 65535):
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT, e.g. 127.0.0.1:8080")
    return text


def _auth(args: argparse.Namespace) -> ViewAuth | None:
    from slo_engine.web.server import ViewAuth

    name = args.token_env or args.basic_auth_env
    if name is None:
        return None
    value = os.environ.get(name, "")
    option = "--token-env" if args.token_env else "--basic-auth-env"
    if not value:
        raise SloEngineError(f"{option} {name}: the environment variable is not set or empty; "
                             "export it before starting the view")
    if args.token_env:
        return ViewAuth("bearer", tokens=(value,))
    user, colon, password = value.partition(":")
    if not (user and colon and password):
        raise SloEngineError(f"--basic-auth-env {name}: give USER:PASSWORD, e.g. "
                             "export SLO_VIEW_LOGIN=oncall:s3cret")
    return ViewAuth("basic", users={user: password})


def _read_changes(paths: list[Path]) -> list[Change]:
    from slo_engine.changes.events import read_change_lines

    return [change for path in paths for change in read_change_lines(path)]
