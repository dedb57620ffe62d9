"""Command line of `python -m bench`: run the benchmarks, print and publish the table."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import compile_time, evaluation, report

ROOT = Path(__file__).resolve().parent.parent
HINT = ("install Debian's prometheus and promtool: apt-get update && apt-get install -y "
        "--no-install-recommends prometheus (or `make prometheus`)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--skip-compile", action="store_true", help="no compile-time bench")
    parser.add_argument("--skip-eval", action="store_true", help="no Prometheus bench")
    parser.add_argument("--interval", type=int, default=evaluation.EvalConfig.interval,
                        help="seconds between sampled evaluations (default %(default)s)")
    parser.add_argument("--cycles", type=int, default=evaluation.EvalConfig.cycles,
                        help="evaluations averaged per group (default %(default)s)")
    parser.add_argument("--workdir", type=Path,
                        help="keep data, rules and logs here instead of a temporary dir")
    parser.add_argument("--no-write", action="store_true",
                        help="print the results only; leave README.md alone")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    began = time.monotonic()
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if not args.skip_eval and not (prometheus and promtool):
        print(f"python -m bench: prometheus/promtool not found; {HINT}", file=sys.stderr)
        return 2
    machine = report.machine(prometheus)
    compiled = evaluated = None
    with tempfile.TemporaryDirectory(prefix="slo-bench-") as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        if not args.skip_compile:
            print("compile: 1,000 SLOs, best of 3 ...", flush=True)
            compiled = compile_time.run(workdir / "compile")
            print(f"  best {compiled.best:.2f} s", flush=True)
        if not args.skip_eval:
            assert prometheus and promtool
            print("rule evaluation in Prometheus ...", flush=True)
            config = evaluation.EvalConfig(interval=args.interval, cycles=args.cycles)
            evaluated = evaluation.run(workdir / "eval", prometheus, promtool, config,
                                       log=lambda line: print(line, flush=True))
    text = report.markdown(machine, compiled, evaluated, time.monotonic() - began)
    print()
    print(text)
    if not args.no_write:
        print(f"wrote {report.publish(text, ROOT).relative_to(ROOT)}")
    return 0
