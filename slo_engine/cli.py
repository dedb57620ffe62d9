"""The `slo-engine` command: a thin shell over `app`; user errors print without traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from slo_engine import app
from slo_engine.durations import describe_seconds, parse_duration
from slo_engine.errors import SloEngineError, SpecError
from slo_engine.model import Service, detection_seconds
from slo_engine.rules_out import FORMATS
from slo_engine.spec import json_schema_text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slo-engine",
        description="Compile SLO specs into multiwindow, multi-burn-rate Prometheus rules.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="check SLO files, report every mistake")
    validate.add_argument("paths", nargs="+", metavar="PATH", help="SLO files or directories")

    commands.add_parser("schema", help="print the JSON Schema of SLO files")

    report = commands.add_parser("report", help="error budget of every SLO: SLI, budget left, "
                                 "burn rates, time to exhaustion, firing tiers")
    report.add_argument("paths", nargs="+", metavar="PATH", help="SLO files or directories")
    _event_source_arguments(report)
    report.add_argument("--at", type=_moment, default=None,
                        help="report as of this time (ISO 8601, UTC); default now")
    report.add_argument("--format", choices=("table", "json", "csv"), default="table")
    report.add_argument("--calendar", choices=("week", "month"), default=None,
                        help="calendar-aligned period that resets at the boundary, instead of "
                        "the spec's rolling period")

    backtest = commands.add_parser("backtest", help="replay the alert tiers (or a policy file) "
                                   "over history: every page and ticket, and the budget spent")
    backtest.add_argument("paths", nargs="+", metavar="PATH", help="SLO files or directories")
    _event_source_arguments(backtest)
    backtest.add_argument("--since", type=_duration, default=timedelta(days=30), metavar="DUR",
                          help="how far back to replay, e.g. 30d (default)")
    backtest.add_argument("--until", type=_moment, default=None, metavar="TIME",
                          help="end of the replay (ISO 8601, UTC); default now")
    backtest.add_argument("--policy", type=Path, default=None, metavar="FILE",
                          help="an alternative AlertPolicy file to compare with the SLOs' own")
    backtest.add_argument("--format", choices=("table", "json"), default="table")

    backfill = commands.add_parser("backfill", help="TSDB blocks of the generated recording "
                                   "rules over history, so a new SLO has its budget on day one")
    backfill.add_argument("paths", nargs="+", metavar="PATH", help="SLO files or directories")
    backfill.add_argument("--prometheus-url", required=True, metavar="URL",
                          help="Prometheus holding the raw series (and earlier levels' blocks)")
    backfill.add_argument("--since", type=_duration, default=timedelta(days=30), metavar="DUR")
    backfill.add_argument("--until", type=_moment, default=None, metavar="TIME",
                          help="default: 3 hours ago (promtool leaves the head block alone)")
    backfill.add_argument("--out", type=Path, required=True, metavar="DIR")
    backfill.add_argument("--level", type=int, default=1,
                          help="the level to write (rules that read earlier levels' series "
                          "need those blocks loaded first)")

    sample = commands.add_parser("sample-data", help="write synthetic event counts for the SLOs "
                                 "(diurnal traffic, an outage, a slow burn), to try report and "
                                 "backtest without a server")
    sample.add_argument("paths", nargs="+", metavar="PATH", help="SLO files or directories")
    sample.add_argument("--out", type=Path, required=True, metavar="FILE", help=".csv or .parquet")
    sample.add_argument("--days", type=int, default=30)
    sample.add_argument("--until", type=_moment, default=None, metavar="TIME")

    explain = commands.add_parser("explain", help="show each SLO's alert tiers: thresholds, "
                                  "detection time of a full outage, budget left when they fire")
    explain.add_argument("paths", nargs="+", metavar="PATH", help="SLO files or directories")

    compile_ = commands.add_parser("compile", help="write Prometheus rules and promtool tests")
    compile_.add_argument("paths", nargs="+", metavar="PATH", help="SLO files or directories")
    compile_.add_argument("--out", type=Path, default=Path("rules_out"),
                          help="output directory (default: rules_out)")
    compile_.add_argument("--check", action="store_true",
                          help="write nothing; exit 1 if the output directory is out of date")
    compile_.add_argument("--format", choices=FORMATS, default="prometheus",
                          help="plain rule files, or prometheus-operator PrometheusRule objects")
    compile_.add_argument("--no-tests", action="store_true",
                          help="do not write promtool unit tests under OUT/tests")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except SpecError as error:
        print(error, file=sys.stderr)
        count = len(error.issues)
        print(f"{count} error{'s' if count != 1 else ''} found", file=sys.stderr)
        return 1
    except SloEngineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.command == "schema":
        sys.stdout.write(json_schema_text())
        return 0
    if args.command == "report":
        from slo_engine import report_format

        at = args.at or datetime.now(UTC)
        rows, warnings = app.budget_report(args.paths, _events(args), at, args.calendar)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        sys.stdout.write(report_format.render(rows, args.format))
        return 0
    if args.command == "backtest":
        from slo_engine import report_format

        until = args.until or datetime.now(UTC)
        results, warnings = app.backtest_report(args.paths, _events(args, step_seconds=60),
                                                args.since, until, args.policy)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        render = report_format.backtest_json if args.format == "json" else \
            report_format.backtest_table
        sys.stdout.write(render(results))
        return 0
    if args.command == "backfill":
        return _backfill(args)
    if args.command == "sample-data":
        from slo_engine.demo import write_demo_events

        written = write_demo_events(app.validate(args.paths), args.out,
                                    args.until or datetime.now(UTC), args.days)
        print(f"wrote {written:,} rows of events to {args.out}")
        return 0
    if args.command == "explain":
        print(explain_text(app.validate(args.paths)))
        return 0
    if args.command == "validate":
        services = app.validate(args.paths)
        slos = sum(len(s.slos) for s in services)
        print(f"OK: {slos} SLO{'s' if slos != 1 else ''} in {len(services)} "
              f"service{'s' if len(services) != 1 else ''} valid")
        return 0
    drift = app.compile_rules(args.paths, args.out, fmt=args.format,
                              with_tests=not args.no_tests, check_only=args.check)
    if args.check:
        if not drift.clean:
            print(drift.report(args.out), file=sys.stderr)
            options = "".join((f" --format {args.format}" if args.format != "prometheus" else "",
                               " --no-tests" if args.no_tests else ""))
            print(f"{args.out} is out of date; run: slo-engine compile "
                  f"{' '.join(args.paths)} --out {args.out}{options}", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    changed = len(drift.stale) + len(drift.missing) + len(drift.extra)
    print(f"wrote {args.out}: {changed} file{'s' if changed != 1 else ''} changed")
    return 0


def _event_source_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, metavar="FILE",
                        help="event counts: CSV or Parquet with columns timestamp, slo, total, "
                        "bad (further columns are group labels)")
    source.add_argument("--prometheus-url", metavar="URL",
                        help="Prometheus (or Thanos/Mimir) holding the generated rules' series")
    parser.add_argument("--state-dir", type=Path, default=None, metavar="DIR",
                        help="cache fetched events here, so a repeated run fetches only what "
                        "is new")


def _events(args: argparse.Namespace, step_seconds: int = 300) -> app.EventSource:
    """Backtests read 1m buckets, so their windows sum the same samples the rules do."""
    if args.data is not None:
        return app.file_events(args.data)
    return app.prometheus_events(args.prometheus_url, cache_dir=args.state_dir,
                                 step_seconds=step_seconds)


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


def _duration(text: str) -> timedelta:
    try:
        return timedelta(seconds=parse_duration(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time; use ISO 8601, e.g. 2026-05-12T14:00:00Z") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def explain_text(services: list[Service]) -> str:
    """What each SLO's alerts mean, in the numbers an SRE reviews a policy with."""
    lines: list[str] = []
    for service in services:
        for slo in service.slos:
            kind = type(slo.sli).__name__.removesuffix("SLI").lower()
            grouped = f", one per {'/'.join(slo.group_by)}" if slo.group_by else ""
            lines.append(f"{slo.service}/{slo.name}: {slo.objective_percent}% over {slo.period} "
                         f"({kind} SLI{grouped}), owner {service.owner}")
            lines.append(f"  {'severity':<8} {'windows':<9} {'burn >':>7} {'budget spent':>12} "
                         f"{'full outage fires in':>21} {'budget gone in':>15}")
            for tier in slo.tiers:
                detect = detection_seconds(slo, tier)
                detect_text = "never" if detect is None else describe_seconds(detect)
                gone = describe_seconds(slo.period_seconds / tier.burn_rate)
                lines.append(
                    f"  {tier.severity:<8} {tier.long_window + '/' + tier.short_window:<9} "
                    f"{tier.burn_rate:>6.4g}x {tier.budget_fraction:>12.0%} "
                    f"{detect_text:>21} {gone:>15}")
            if not slo.tiers:
                lines.append("  no burn-rate alerts")
            lines.append("")
    lines.append("Detection times follow the SRE Workbook (budget spent x period / burn rate) "
                 "from a clean window;\nadd up to 3m for the 5m rate to ramp up, plus scrape "
                 "and evaluation intervals.")
    return "\n".join(lines)
