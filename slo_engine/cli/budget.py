"""Subcommands over event history: report, backtest, backfill, sample-data."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from slo_engine import app
from slo_engine.cli.arguments import Commands, duration, moment, slo_paths
from slo_engine.errors import SloEngineError
from slo_engine.extras import ensure_installed

if TYPE_CHECKING:
    import pandas as pd

    from slo_engine.changes.events import Change
    from slo_engine.spec.model import Service


def register(commands: Commands) -> None:
    report = commands.add_parser("report", help="error budget of every SLO: SLI, budget left, "
                                 "burn rates, time to exhaustion, firing tiers")
    slo_paths(report)
    event_source_arguments(report)
    report.add_argument("--at", type=moment, default=None,
                        help="report as of this time (ISO 8601, UTC); default now")
    report.add_argument("--format", choices=("table", "json", "csv"), default="table")
    report.add_argument("--calendar", choices=("week", "month"), default=None,
                        help="calendar-aligned period that resets at the boundary, instead of "
                        "the spec's rolling period")
    report.add_argument("--chart", type=Path, default=None, metavar="DIR",
                        help="also write PNG charts here: each SLO's budget burn-down and SLI, "
                        "and a burn-rate heatmap across SLOs")
    report.add_argument("--changes", type=Path, default=None, metavar="FILE",
                        help="change events (JSON lines) to mark on the burn-down charts")
    report.set_defaults(handler=_report)

    backtest = commands.add_parser("backtest", help="replay the alert tiers (or a policy file) "
                                   "over history: every page and ticket, and the budget spent")
    slo_paths(backtest)
    event_source_arguments(backtest)
    backtest.add_argument("--since", type=duration, default=timedelta(days=30), metavar="DUR",
                          help="how far back to replay, e.g. 30d (default)")
    backtest.add_argument("--until", type=moment, default=None, metavar="TIME",
                          help="end of the replay (ISO 8601, UTC); default now")
    backtest.add_argument("--policy", type=Path, default=None, metavar="FILE",
                          help="an alternative AlertPolicy file to compare with the SLOs' own")
    backtest.add_argument("--format", choices=("table", "json"), default="table")
    backtest.set_defaults(handler=_backtest)

    backfill = commands.add_parser("backfill", help="TSDB blocks of the generated recording "
                                   "rules over history, so a new SLO has its budget on day one")
    slo_paths(backfill)
    backfill.add_argument("--prometheus-url", required=True, metavar="URL",
                          help="Prometheus holding the raw series (and earlier levels' blocks)")
    backfill.add_argument("--since", type=duration, default=timedelta(days=30), metavar="DUR")
    backfill.add_argument("--until", type=moment, default=None, metavar="TIME",
                          help="default: 3 hours ago (promtool leaves the head block alone)")
    backfill.add_argument("--out", type=Path, required=True, metavar="DIR")
    backfill.add_argument("--level", type=int, default=1,
                          help="the level to write (rules that read earlier levels' series "
                          "need those blocks loaded first)")
    backfill.set_defaults(handler=_backfill)

    sample = commands.add_parser("sample-data", help="write synthetic event counts for the SLOs "
                                 "(diurnal traffic, an outage, a slow burn), to try report and "
                                 "backtest without a server")
    slo_paths(sample)
    sample.add_argument("--out", type=Path, required=True, metavar="FILE", help=".csv or .parquet")
    sample.add_argument("--days", type=int, default=30)
    sample.add_argument("--until", type=moment, default=None, metavar="TIME")
    sample.add_argument("--changes", type=Path, default=None, metavar="FILE",
                        help="also write the sample's change events (deploys, rollbacks, "
                        "config, flags, migrations) here as JSON lines")
    sample.set_defaults(handler=_sample_data)


def event_source_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, metavar="FILE",
                        help="event counts: CSV or Parquet with columns timestamp, slo, total, "
                        "bad (further columns are group labels)")
    source.add_argument("--prometheus-url", metavar="URL",
                        help="Prometheus (or Thanos/Mimir) holding the generated rules' series")
    parser.add_argument("--state-dir", type=Path, default=None, metavar="DIR",
                        help="cache fetched events here, so a repeated run fetches only what "
                        "is new")


def events(args: argparse.Namespace, step_seconds: int = 300) -> app.EventSource:
    """Backtests read 1m buckets, so their windows sum the same samples the rules do."""
    if args.data is not None:
        return app.file_events(args.data)
    return app.prometheus_events(args.prometheus_url, cache_dir=args.state_dir,
                                 step_seconds=step_seconds)


def _report(args: argparse.Namespace) -> int:
    from slo_engine.budget import report_format

    at = args.at or datetime.now(UTC)
    changes = _read_changes(args.changes)
    if args.chart is not None:  # a missing charts extra, too, fails before the report prints
        ensure_installed("matplotlib")
        _chart_directory(args.chart)
    # Charts draw every bucket; the report alone needs only its windows' sums.
    source = events(args) if args.chart is not None or args.data is not None else \
        app.prometheus_report_events(args.prometheus_url, cache_dir=args.state_dir)
    fetched: list[pd.DataFrame] = []

    def keep(services: list[Service], start: datetime, end: datetime) -> tuple[
            pd.DataFrame, list[str]]:
        frame, warnings = source(services, start, end)
        fetched.append(frame)
        return frame, warnings

    rows, warnings = app.budget_report(args.paths, keep, at, args.calendar)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    sys.stdout.write(report_format.render(rows, args.format))
    if args.chart is not None:
        from slo_engine.budget.charts import write_charts

        written = write_charts(args.chart, app.validate(args.paths), fetched[0], changes)
        print(f"wrote {len(written)} charts to {args.chart}", file=sys.stderr)
    return 0


def _chart_directory(path: Path) -> None:
    """Made before anything is fetched, so a bad --chart fails before the report prints."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SloEngineError(f"--chart {path}: cannot make the directory ({error.strerror}); "
                             "give a directory the charts can be written to") from None


def _read_changes(path: Path | None) -> list[Change]:
    """Read before anything is fetched, so a bad line fails fast."""
    if path is None:
        return []
    from slo_engine.changes.events import read_change_lines

    return read_change_lines(path)


def _backtest(args: argparse.Namespace) -> int:
    from slo_engine.budget import report_format

    until = args.until or datetime.now(UTC)
    results, warnings = app.backtest_report(args.paths, events(args, step_seconds=60),
                                            args.since, until, args.policy)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    render = report_format.backtest_json if args.format == "json" else \
        report_format.backtest_table
    sys.stdout.write(render(results))
    return 0


def _sample_data(args: argparse.Namespace) -> int:
    from slo_engine.demo.month import demo_data, write_changes, write_events

    data = demo_data(app.validate(args.paths), args.until or datetime.now(UTC), args.days)
    written = write_events(data.ledger, args.out)
    print(f"wrote {written:,} rows of events to {args.out}")
    if args.changes is not None:
        count = write_changes(data.changes, args.changes)
        print(f"wrote {count} change events to {args.changes}")
    return 0


def _backfill(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    until = args.until or datetime.now(UTC) - timedelta(hours=3)
    with Progress(transient=True) as bar:
        task = bar.add_task("backfill", total=None)

        def progress(level: int, levels: int, message: str) -> None:
            bar.update(task, total=levels, completed=level - 1,
                       description=f"level {level}/{levels}: {message}")

        result = app.backfill_rules(args.paths, args.prometheus_url, until - args.since, until,
                                    args.out, args.level, progress)
    print(result.next_steps or f"wrote {args.out}")
    return 0

