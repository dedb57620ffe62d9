"""Subcommands over SLO files: validate, schema, compile, explain."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from slo_engine import app
from slo_engine.cli.arguments import Commands, print_warnings, slo_paths
from slo_engine.redaction import redact
from slo_engine.rules.files import FORMATS
from slo_engine.spec.document import json_schema_text
from slo_engine.spec.durations import describe_seconds
from slo_engine.spec.model import Service, budget_lifetime_seconds, detection_seconds


def register(commands: Commands) -> None:
    validate = commands.add_parser("validate", help="check SLO files, report every mistake")
    slo_paths(validate)
    validate.add_argument("--prometheus-url", metavar="URL", default=None,
                          help="also check against this Prometheus that every selector "
                          "matches series and every latency threshold is a bucket bound")
    validate.set_defaults(handler=_validate)

    schema = commands.add_parser("schema", help="print the JSON Schema of SLO files")
    schema.set_defaults(handler=_schema)

    explain = commands.add_parser("explain", help="show each SLO's alert tiers: thresholds, "
                                  "detection time of a full outage, budget left when they fire")
    slo_paths(explain)
    explain.set_defaults(handler=_explain)

    compile_ = commands.add_parser("compile", help="write Prometheus rules and promtool tests")
    slo_paths(compile_)
    compile_.add_argument("--out", type=Path, default=Path("rules_out"),
                          help="output directory (default: rules_out)")
    compile_.add_argument("--check", action="store_true",
                          help="write nothing; exit 1 if the output directory is out of date")
    compile_.add_argument("--format", choices=FORMATS, default="prometheus",
                          help="plain rule files, prometheus-operator PrometheusRule objects, "
                          "or rule files in vmalert's layout (VictoriaMetrics)")
    compile_.add_argument("--no-tests", action="store_true",
                          help="do not write promtool unit tests under OUT/tests")
    compile_.add_argument("--sloth-compatible", action="store_true",
                          help="also record the series Sloth's Grafana dashboards read "
                          "(sloth_slo_info, slo:sli_error:ratio_rate<window>, ...)")
    compile_.set_defaults(handler=_compile)


def _validate(args: argparse.Namespace) -> int:
    services, warnings = app.validate_with_warnings(args.paths)
    print_warnings(warnings)
    slos = sum(len(s.slos) for s in services)
    if args.prometheus_url:
        report = app.lint_against_prometheus(services, args.prometheus_url)
        for issue in sorted([*report.errors, *report.warnings]):
            print(issue, file=sys.stderr)
        if report.errors:
            print(f"{len(report.errors)} error{'s' if len(report.errors) != 1 else ''} found "
                  f"against {redact(args.prometheus_url)}", file=sys.stderr)
            return 1
    print(f"OK: {slos} SLO{'s' if slos != 1 else ''} in {len(services)} "
          f"service{'s' if len(services) != 1 else ''} valid")
    return 0


def _schema(args: argparse.Namespace) -> int:
    sys.stdout.write(json_schema_text())
    return 0


def _explain(args: argparse.Namespace) -> int:
    services, warnings = app.validate_with_warnings(args.paths)
    print_warnings(warnings)
    print(explain_text(services))
    return 0


def _compile(args: argparse.Namespace) -> int:
    drift = app.compile_rules(args.paths, args.out, fmt=args.format,
                              with_tests=not args.no_tests, check_only=args.check,
                              sloth_compatible=args.sloth_compatible)
    if args.check:
        if not drift.clean:
            print(drift.report(args.out), file=sys.stderr)
            options = "".join((f" --format {args.format}" if args.format != "prometheus" else "",
                               " --no-tests" if args.no_tests else "",
                               " --sloth-compatible" if args.sloth_compatible else ""))
            print(f"{args.out} is out of date; run: slo-engine compile "
                  f"{' '.join(args.paths)} --out {args.out}{options}", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    changed = len(drift.stale) + len(drift.missing) + len(drift.extra)
    print(f"wrote {args.out}: {changed} file{'s' if changed != 1 else ''} changed")
    return 0


def explain_text(services: list[Service]) -> str:
    """What each SLO's alerts mean, in the numbers an SRE reviews a policy with."""
    lines: list[str] = []
    for service in services:
        for slo in service.slos:
            kind = type(slo.sli).__name__.removesuffix("SLI").lower()
            grouped = f", one per {'/'.join(slo.group_by)}" if slo.group_by else ""
            lines.append(f"{slo.service}/{slo.name}: {slo.objective_percent}% over {slo.period} "
                         f"({kind} SLI{grouped}), owner {service.owner}")
            width = max([9, *(len(f"{t.long_window}/{t.short_window}") for t in slo.tiers)])
            lines.append(f"  {'severity':<8} {'windows':<{width}} {'burn >':>7} "
                         f"{'budget spent':>12} "
                         f"{'full outage fires in':>21} {'budget gone in':>15}")
            for tier in slo.tiers:
                detect = detection_seconds(slo, tier)
                detect_text = "never" if detect is None else describe_seconds(detect)
                gone = describe_seconds(budget_lifetime_seconds(slo, tier))
                lines.append(
                    f"  {tier.severity:<8} {tier.long_window + '/' + tier.short_window:<{width}} "
                    f"{tier.burn_rate:>6.4g}x {tier.budget_fraction:>12.0%} "
                    f"{detect_text:>21} {gone:>15}")
            if not slo.tiers:
                lines.append("  no burn-rate alerts")
            lines.append("")
    lines.append("Detection times follow the SRE Workbook (budget spent x period / burn rate) "
                 "from a clean window;\nadd up to 3m for the 5m rate to ramp up, plus scrape "
                 "and evaluation intervals.")
    return "\n".join(lines)
