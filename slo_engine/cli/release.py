"""Release gates for CD pipelines: `gate` (error-budget policy) and `canary` (canary verdict).

Exit codes are the contract with the pipeline, so every failure to answer is 2, never 1:
a bad file or an unreachable Prometheus must not read as "hold" or "rollback".
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slo_engine import app
from slo_engine.cli.arguments import (
    Commands,
    duration,
    engine_config,
    moment,
    open_state,
    print_error,
    slo_paths,
    state_arguments,
)
from slo_engine.errors import ReleaseError, SloEngineError

if TYPE_CHECKING:
    from slo_engine.changes.events import Change
    from slo_engine.config import EngineConfig
    from slo_engine.spec.model import Service

NO_ANSWER = 2  # gate: could not decide; canary: inconclusive


def register(commands: Commands) -> None:
    gate = commands.add_parser(
        "gate", help="may this service release now? exit 0 ship, 1 hold, 2 cannot decide",
        description="Decide from the error budget of a service's SLOs and a policy (the "
        "built-in one by default) whether a release may ship. Exit 0: ship; 1: hold (or "
        "frozen); 2: cannot decide (no data, Prometheus unreachable, bad input).")
    slo_paths(gate)
    gate.add_argument("--service", required=True, help="the service to release")
    gate.add_argument("--policy", type=Path, default=None, metavar="FILE",
                      help="ErrorBudgetPolicy file; default: below 0%% left only fixes ship, "
                      "below 25%% left or a page firing releases need an override")
    gate.add_argument("--override", default=None, metavar="REASON",
                      help="release despite a hold; the reason is recorded as a change event")
    gate.add_argument("--fix", action="store_true",
                      help="with --override: this release is a fix or a rollback, which also "
                      "ships while the budget is frozen")
    gate.add_argument("--version", default=None, help="the version being released (recorded "
                      "with an override)")
    gate.add_argument("--previous-version", default=None, metavar="VERSION",
                      help="the version it replaces (pages show the rollback to it)")
    _source_arguments(gate)
    gate.add_argument("--data", type=Path, default=None, metavar="FILE",
                      help="event counts (CSV or Parquet) instead of Prometheus")
    gate.add_argument("--at", type=moment, default=None, metavar="TIME",
                      help="decide as of this time (ISO 8601, UTC); default now")
    state_arguments(gate)
    gate.add_argument("--format", choices=("text", "json"), default="text")
    gate.set_defaults(handler=_gate)

    canary = commands.add_parser(
        "canary", help="compare a canary with its baseline on an SLO's SLI: exit 0 promote, "
        "1 rollback, 2 inconclusive",
        description="Compare the canary's and the baseline's requests over the last "
        "--duration on the SLO's own SLI: error-ratio delta, burn rate and (latency SLIs) p95 "
        "delta, each with a significance test. Exit 0: promote; 1: rollback; 2: inconclusive "
        "or cannot analyse.")
    slo_paths(canary)
    canary.add_argument("--slo", required=True, metavar="SERVICE/NAME",
                        help="the SLO whose SLI to compare on (NAME alone when unique)")
    canary.add_argument("--canary", required=True, metavar="SELECTOR",
                        help="label matchers of the canary's series, e.g. 'track=\"canary\"'")
    canary.add_argument("--baseline", required=True, metavar="SELECTOR",
                        help="label matchers of the baseline's series, e.g. 'track=\"stable\"'")
    canary.add_argument("--duration", type=duration, default=duration("10m"), metavar="DUR",
                        help="window of the comparison, ending now (default 10m)")
    _source_arguments(canary)
    canary.add_argument("--max-error-delta", type=_percent, default=0.005, metavar="PCT",
                        help="error-ratio difference allowed, in points (default 0.5%%)")
    canary.add_argument("--max-latency-delta", type=_percent, default=0.20, metavar="PCT",
                        help="p95 increase allowed, latency SLIs (default 20%%)")
    canary.add_argument("--max-burn-rate", type=_burn_rate, default=4.0, metavar="X",
                        help="canary burn rate allowed (default 4)")
    canary.add_argument("--alpha", type=_alpha, default=0.05,
                        help="significance level of each one-sided test (default 0.05)")
    canary.add_argument("--at", type=moment, default=None, metavar="TIME",
                        help="end of the window (ISO 8601, UTC); default now")
    canary.add_argument("--record", action="store_true",
                        help="record the verdict as a change event in the state database")
    canary.add_argument("--version", default=None, help="the canary's version (recorded)")
    state_arguments(canary)
    canary.add_argument("--format", choices=("text", "json"), default="text")
    canary.set_defaults(handler=_canary)


def _source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prometheus-url", default=None, metavar="URL",
                        help="Prometheus (or Thanos/Mimir); default: prometheus.url of --config")


def _percent(text: str) -> float:
    try:
        value = float(text.strip().removesuffix("%")) / 100
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage, e.g. 0.5%") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def _burn_rate(text: str) -> float:
    try:
        value = float(text.strip().removesuffix("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a burn rate, e.g. 4 or 4x") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
    return value


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 0.5:
        raise argparse.ArgumentTypeError(f"{text!r}: give a significance level between 0 and "
                                         "0.5, e.g. 0.05")
    return value


# --- gate -----------------------------------------------------------------------------------


def _gate(args: argparse.Namespace) -> int:
    if args.fix and args.override is None:
        return _no_answer(args, ReleaseError("--fix declares what an override releases; give "
                                             "the reason too: --override REASON --fix"))
    if args.override is not None and not args.override.strip():
        return _no_answer(args, ReleaseError("--override needs a reason, e.g. --override "
                                             "'INC-42: hotfix approved by the on-call'; the "
                                             "next page shows it"))
    try:
        return _decide(args)
    except SloEngineError as error:
        return _no_answer(args, error)


def _decide(args: argparse.Namespace) -> int:
    from slo_engine.budget import accounting as budget
    from slo_engine.release import gate

    policy = (gate.load_budget_policy(args.policy) if args.policy is not None
              else gate.DEFAULT_POLICY)
    service = _service(app.validate(args.paths), args.service)
    config = engine_config(args)
    at = args.at or datetime.now(UTC)
    start, end = app.report_window([service], at)
    frame, warnings = _events(args, config)([service], start, end)
    statuses = budget.report([service], frame, at)
    labels = {(slo.service, slo.name): dict(slo.labels) for slo in service.slos}
    outcome = gate.release(gate.decide(policy, service.name, statuses, at, labels),
                           args.override, args.fix)
    change = outcome.change(args.version, args.previous_version)
    recorded = _record(args, change) if change is not None else None
    if args.format == "json":
        _print_json({**outcome.as_json(), "warnings": warnings,
                     "recorded_change": recorded.as_json() if recorded else None})
    else:
        text = gate.render_text(outcome, warnings)
        if recorded is not None:
            text += f"recorded change: {recorded.description}\n"
        sys.stdout.write(text)
    return outcome.exit_code


def _service(services: list[Service], name: str) -> Service:
    import difflib

    for service in services:
        if service.name == name:
            return service
    known = [s.name for s in services]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known services: {', '.join(known)}"
    raise ReleaseError(f"--service {name!r}: no SLOs for this service in the given files; {hint}")


def _events(args: argparse.Namespace, config: EngineConfig | None) -> app.EventSource:
    if args.data is not None:
        if args.prometheus_url is not None:
            raise ReleaseError("give either --data or --prometheus-url, not both")
        return app.file_events(args.data)
    url, headers = _prometheus(args, config)
    return app.prometheus_events(url, headers)


def _prometheus(args: argparse.Namespace,
                config: EngineConfig | None) -> tuple[str, dict[str, str] | None]:
    if args.prometheus_url is not None:
        return str(args.prometheus_url), config.prometheus.header_values() if config else None
    if config is not None:
        return config.prometheus.url, config.prometheus.header_values()
    raise ReleaseError("no Prometheus to ask: give --prometheus-url URL, or --config FILE with "
                       "a prometheus section" + (", or --data FILE" if "data" in args else ""))


def _record(args: argparse.Namespace, change: Change) -> Change:
    with open_state(args) as state:
        state.add_changes([change])
    return change


# --- canary ---------------------------------------------------------------------------------


def _canary(args: argparse.Namespace) -> int:
    try:
        return _compare(args)
    except SloEngineError as error:
        return _no_answer(args, error)


def _compare(args: argparse.Namespace) -> int:
    from slo_engine.prometheus.source import PrometheusSource
    from slo_engine.release import canary
    from slo_engine.spec.model import LatencySLI

    slo = canary.find_slo(app.validate(args.paths), args.slo)
    canary_matchers = canary.label_matchers(args.canary, "--canary")
    baseline_matchers = canary.label_matchers(args.baseline, "--baseline")
    if set(canary_matchers) == set(baseline_matchers):
        raise ReleaseError("--canary and --baseline select the same series; give each the "
                           "labels that tell them apart, e.g. track=\"canary\" / "
                           "track=\"stable\"")
    window = args.duration.total_seconds()
    if window < 1:
        raise ReleaseError("--duration must be at least 1s (a few scrape intervals at least)")
    config = engine_config(args)
    url, headers = _prometheus(args, config)
    at = args.at or datetime.now(UTC)
    with PrometheusSource(url, headers) as source:
        canary_traffic = canary.measure(source, slo, canary_matchers, window, at)
        baseline_traffic = canary.measure(source, slo, baseline_matchers, window, at)
        url = source.shown_url
    thresholds = canary.Thresholds(args.max_error_delta, args.max_latency_delta,
                                   args.max_burn_rate, args.alpha)
    analysis = canary.analyse(canary_traffic, baseline_traffic, slo.error_budget, thresholds,
                              latency=isinstance(slo.sli, LatencySLI))
    run = canary.CanaryRun(slo, args.canary, args.baseline, window, at, analysis, url, {
        "canary": canary.traffic_queries(slo, canary_matchers, window),
        "baseline": canary.traffic_queries(slo, baseline_matchers, window)})
    recorded = _record(args, run.change(args.version)) if args.record else None
    if args.format == "json":
        _print_json({**run.as_json(), "queries": run.queries,
                     "recorded_change": recorded.as_json() if recorded else None})
    else:
        text = run.render_text()
        if recorded is not None:
            text += f"recorded change: {recorded.description}\n"
        sys.stdout.write(text)
    return analysis.exit_code


# --- output ---------------------------------------------------------------------------------


def _print_json(document: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document, indent=2, allow_nan=False) + "\n")


def _no_answer(args: argparse.Namespace, error: SloEngineError) -> int:
    """As the CLI prints any user error, but with the exit code that means 'no answer' and,
    for --format json, an answer a pipeline's JSON parser can read too."""
    if args.format == "json":
        answer = "decision" if args.command == "gate" else "verdict"
        _print_json({answer: "undecided" if answer == "decision" else "inconclusive",
                     "exit_code": NO_ANSWER, "error": str(error)})
    print_error(error)
    return NO_ANSWER
