"""Command line of `python -m bench`: run the benchmarks, print and publish the table."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import compile_time, evaluation, promtool_time, refresh, report, service, ui

ROOT = Path(__file__).resolve().parent.parent
HINT = ("install Debian's prometheus and promtool: apt-get update && apt-get install -y "
        "--no-install-recommends prometheus (or `make prometheus`)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sizes = ", ".join(f"{c.cycles} at {c.slos:,} SLOs" for c in service.SIZES)
    parser.add_argument("--skip-compile", action="store_true", help="no compile-time bench")
    parser.add_argument("--skip-eval", action="store_true", help="no rule-evaluation bench")
    parser.add_argument("--skip-refresh", action="store_true", help="no budget-refresh bench")
    parser.add_argument("--skip-service", action="store_true",
                        help="no service evaluation-loop bench")
    parser.add_argument("--skip-promtool", action="store_true",
                        help="no bench of the generated promtool tests")
    parser.add_argument("--skip-ui", action="store_true",
                        help="no bench of the web view's SLO list")
    parser.add_argument("--service-cycles", type=int,
                        help="evaluations of the service loop at every size, one per minute "
                             f"of data (default: {sizes})")
    parser.add_argument("--only", action="append", choices=report.PARTS, default=[],
                        help="run only this part (repeatable); docs/performance.md keeps "
                             "the others")
    parser.add_argument("--loop-seconds", type=float,
                        default=refresh.RefreshConfig.loop_seconds,
                        help="time budget of the per-SLO loop before it is extrapolated "
                             "(default %(default)s)")
    parser.add_argument("--refresh-large-services", type=int,
                        default=refresh.RefreshConfig.large_services,
                        help="services of 10 SLOs in the refresh's sizing run, 0 for none "
                             "(default %(default)s: 10,000 SLOs)")
    parser.add_argument("--interval", type=int, default=evaluation.EvalConfig.interval,
                        help="seconds between sampled evaluations (default %(default)s)")
    parser.add_argument("--cycles", type=int, default=evaluation.EvalConfig.cycles,
                        help="evaluations averaged per group (default %(default)s)")
    parser.add_argument("--workdir", type=Path,
                        help="keep data, rules and logs here instead of a temporary dir")
    parser.add_argument("--no-write", action="store_true",
                        help="print the results only; leave docs/performance.md alone")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    began = time.monotonic()
    only = tuple(p for p in report.PARTS if p in args.only)
    run_compile = "compile" in only if only else not args.skip_compile
    run_eval = "eval" in only if only else not args.skip_eval
    run_refresh = "refresh" in only if only else not args.skip_refresh
    run_service = "service" in only if only else not args.skip_service
    run_promtool = "promtool" in only if only else not args.skip_promtool
    run_ui = "ui" in only if only else not args.skip_ui
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if (run_eval or run_refresh or run_service or run_promtool) and not (prometheus and promtool):
        print(f"python -m bench: prometheus/promtool not found; {HINT}", file=sys.stderr)
        return 2
    machine = report.machine(prometheus)
    compiled = evaluated = refreshed = served = tested = listed = None
    with tempfile.TemporaryDirectory(prefix="slo-bench-") as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        if run_compile:
            print("compile: 1,000 SLOs, best of 3 ...", flush=True)
            compiled = compile_time.run(workdir / "compile")
            print(f"  best {compiled.best:.2f} s", flush=True)
        if run_eval:
            assert prometheus and promtool
            print("rule evaluation in Prometheus ...", flush=True)
            eval_config = evaluation.EvalConfig(interval=args.interval, cycles=args.cycles)
            evaluated = evaluation.run(workdir / "eval", prometheus, promtool, eval_config,
                                       log=lambda line: print(line, flush=True))
        if run_refresh:
            assert prometheus and promtool
            refresh_config = refresh.RefreshConfig(loop_seconds=args.loop_seconds,
                                                   large_services=args.refresh_large_services)
            print(f"budget refresh of {refresh_config.slos:,} and "
                  f"{refresh_config.large_services * refresh_config.slos_per_service:,} SLOs "
                  "over 30 days in Prometheus ...", flush=True)
            refreshed = refresh.run(workdir / "refresh", prometheus, promtool, refresh_config,
                                    log=lambda line: print(line, flush=True))
        if run_service:
            assert prometheus and promtool
            print("service evaluation loop over "
                  f"{', '.join(f'{c.slos:,}' for c in service.SIZES)} SLOs ...", flush=True)
            served = service.run_sizes(workdir / "service", prometheus, promtool,
                                       args.service_cycles,
                                       log=lambda line: print(line, flush=True))
        if run_promtool:
            assert promtool
            print("generated promtool tests of services of "
                  f"{', '.join(map(str, promtool_time.SIZES))} SLOs ...", flush=True)
            tested = promtool_time.run(workdir / "promtool", promtool)
        if run_ui:
            print("web view: the SLO list at 1,000 SLOs ...", flush=True)
            listed = ui.run(workdir / "ui")
            print(f"  slowest list query {listed.worst_median * 1000:.0f} ms", flush=True)
    text = report.markdown(machine, compiled, evaluated, time.monotonic() - began, refreshed,
                           only, served, tested, listed)
    print()
    print(text)
    if not args.no_write:
        print(f"wrote {report.publish(text, ROOT).relative_to(ROOT)}")
    return 0
