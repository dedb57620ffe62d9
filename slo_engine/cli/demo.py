"""`slo-engine demo-prometheus`: the demo's story read from a real Prometheus.

`make demo` runs the other commands on the demo's file; this one serves the same month from
Prometheus and runs them again with `--prometheus-url`.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from slo_engine.cli.arguments import Commands, moment


def register(commands: Commands) -> None:
    demo = commands.add_parser(
        "demo-prometheus",
        help="the demo's month served by a real Prometheus (Debian's, on a free port of "
             "127.0.0.1, stopped by its PID), then the report with charts, the backtest, the "
             "incidents and the worst one's page read from it")
    demo.add_argument("paths", nargs="+", metavar="PATH", help="SLO files or directories")
    demo.add_argument("--out", type=Path, required=True, metavar="DIR",
                      help="working directory: Prometheus' data, log, and the charts")
    demo.add_argument("--until", type=moment, default=None, metavar="TIME",
                      help="end of the demo's data (ISO 8601, UTC); default now")
    demo.add_argument("--days", type=int, default=30)
    demo.set_defaults(handler=_demo_prometheus)


def _demo_prometheus(args: argparse.Namespace) -> int:
    from slo_engine.cli import main
    from slo_engine.demo.prometheus import demo_month_served

    paths = [str(p) for p in args.paths]
    with demo_month_served(paths, args.out, args.until or datetime.now(UTC),
                           args.days) as served:
        replay = ["--prometheus-url", served.url, "--until", served.at,
                  "--since", f"{max(args.days - 3, 1)}d"]
        incidents = ["incidents", *paths, *replay, "--changes", str(served.changes),
                     "--state", str(args.out / "state.db")]
        for command in (
                ["report", *paths, "--prometheus-url", served.url, "--at", served.at,
                 "--chart", str(args.out / "charts"), "--changes", str(served.changes)],
                ["backtest", *paths, *replay], incidents, [*incidents, "--page", "worst"]):
            code = main(command)
            if code != 0:
                return code
    return 0
