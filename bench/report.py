"""The bench's markdown: the machine it ran on, the figures, and ratios between schemes.

Published into README.md between markers, so re-running replaces the previous results and
nothing else; without a README the results go to bench/RESULTS.md.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import subprocess
from collections.abc import Callable
from pathlib import Path

from bench.compile_time import TARGET_SECONDS, CompileResult
from bench.evaluation import EvalResult, SchemeResult

START = "<!-- bench:start -->"
END = "<!-- bench:end -->"


def machine(prometheus: str | None) -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    version = "not installed"
    if prometheus:
        out = subprocess.run([prometheus, "--version"], capture_output=True, text=True,
                             check=False)
        first = (out.stdout or out.stderr).splitlines()[:1]
        version = first[0].removeprefix("prometheus, version ").split(" (")[0] if first \
            else "unknown"
    load = os.getloadavg()[0]
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f"{when}; nproc {os.cpu_count()}, {cpu}; load average {load:.1f} at start; "
            f"Prometheus {version}; Python {platform.python_version()}")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b and math.isfinite(a) and math.isfinite(b) else "—"


def _rel(got: float, want: float) -> float:
    return got / want - 1


def _accuracy(scheme: SchemeResult) -> str:
    nans = sum(1 for r in scheme.period_ratios if math.isnan(r))
    finite = [_rel(r, t) for r, t in zip(scheme.period_ratios, scheme.truths, strict=True)
              if not math.isnan(r)]
    parts = []
    if finite:
        worst = max(finite, key=abs)
        parts.append(f"max {worst:+.3%}")
    if nans:
        parts.append(f"NaN for {nans} of {len(scheme.period_ratios)} SLOs")
    return ", ".join(parts)


def compile_section(result: CompileResult) -> list[str]:
    runs = ", ".join(f"{t:.2f}" for t in result.runs)
    verdict = "within" if result.best < TARGET_SECONDS else "**over**"
    timing = (f"best of {len(result.runs)} **{result.best:.2f} s** (runs {runs} s)"
              if len(result.runs) > 1 else
              f"**{result.best:.2f} s** (one run, not repeated as it is far over the target)")
    return [
        f"**Compile** {result.slos:,} SLOs ({result.files} files × "
        f"{result.slos // result.files}; {'; '.join(result.kinds)}) with `slo-engine compile "
        f"DIR --out DIR` as a fresh process, start-up included: {timing}, {verdict} the "
        f"{TARGET_SECONDS:.0f} s target; {result.rules:,} rules, "
        f"{result.output_bytes / 1e6:.1f} MB written (rules and rule tests).",
        "",
    ]


def eval_section(result: EvalResult) -> list[str]:
    ours, naive, c = result.ours, result.naive, result.config

    def period(g: str) -> bool:
        return g.endswith(":period")

    def other(g: str) -> bool:
        return not g.endswith(":period")

    def sli(g: str) -> bool:
        return "-sli-recordings-" in g

    def row(label: str, a: str, b: str, r: str = "") -> str:
        return f"| {label} | {a} | {b} | {r} |"

    def timing(label: str, fa: Callable[[SchemeResult], float],
               fb: Callable[[SchemeResult], float]) -> str:
        a, b = fa(ours), fb(naive)
        return row(label, _ms(a), _ms(b), _ratio(a, b))

    skip = [_rel(r, t) for r, t in zip(naive.skip_nan_ratios, naive.truths, strict=True)]
    taken = min(len(g.durations) for g in [*ours.groups, *naive.groups])
    return [
        f"**Rule evaluation** in Prometheus: {c.slos} SLOs × {result.raw_series // c.slos} raw "
        f"counter series, {c.days} days of 1-minute data; the recorded series that long "
        "windows read are backfilled level by level at 1-minute resolution (as with the "
        "default `evaluation_interval: 1m`). Each scheme then runs alone on the same data; "
        f"groups are sampled every {c.interval} s and each duration "
        "(`prometheus_rule_group_last_duration_seconds`) is the mean of "
        f"{c.cycles} evaluations after a warm-up one"
        + ("." if taken >= c.cycles else f" (some groups only {taken}: timed out)."),
        "",
        "| | slo-engine | naive (Sloth-like) | slo-engine ÷ naive |",
        "|---|---:|---:|---:|",
        row("rule groups / rules", f"{len(ours.groups)} / {ours.rules}",
            f"{len(naive.groups)} / {naive.rules}"),
        timing("evaluation of every group once (ms)",
               lambda s: s.per_cycle(), lambda s: s.per_cycle()),
        timing("… per-evaluation groups: slo-engine alert groups / naive SLI groups (ms)",
               lambda s: s.per_cycle(other), lambda s: s.per_cycle(sli)),
        row("… slo-engine period groups (ms)", _ms(ours.per_cycle(period)), "—"),
        timing("evaluation time per minute, groups every 1m, slo-engine period groups "
               "every 5m (ms)", lambda s: s.per_minute(), lambda s: s.per_minute()),
        row("samples read per minute, one SLO (query stats)",
            f"{ours.samples_per_minute():,.0f}", f"{naive.samples_per_minute():,.0f}",
            _ratio(ours.samples_per_minute(), naive.samples_per_minute())),
        row("samples read per evaluation of every group, one SLO",
            f"{ours.samples_per_cycle():,}", f"{naive.samples_per_cycle():,}",
            _ratio(ours.samples_per_cycle(), naive.samples_per_cycle())),
        row(f"period ({c.days} days of data) error ratio vs truth", _accuracy(ours),
            _accuracy(naive)),
        row("naive period with the NaN samples skipped", "—",
            f"{min(skip):+.1%} … {max(skip):+.1%}" if skip else "—"),
        "",
        f"Truth is the generator's own count of bad / total events. Traffic is diurnal (10× "
        f"between trough and peak) with a quiet half hour (no requests) and two incidents per "
        f"SLO, one at the trough. The period windows read {c.days} days of history here; with "
        f"30 days both schemes' period reads grow about {30 / c.days:.0f}×, and slo-engine "
        f"evaluates its period group every 5 minutes instead of every evaluation. "
        f"Setup (data generation and raw backfill) took {result.setup_seconds:.0f} s; the "
        f"history backfill {sum(ours.backfill_seconds):.1f} s (slo-engine, "
        f"{len(ours.backfill_seconds)} levels) and {sum(naive.backfill_seconds):.1f} s "
        f"(naive, {len(naive.backfill_seconds)} level).",
        "",
    ]


def markdown(machine_line: str, compile_result: CompileResult | None,
             eval_result: EvalResult | None, seconds: float) -> str:
    lines = [f"`make bench` (`python -m bench`, {seconds:.0f} s): {machine_line}.", ""]
    if compile_result is not None:
        lines += compile_section(compile_result)
    if eval_result is not None:
        lines += eval_section(eval_result)
    return "\n".join(lines).rstrip() + "\n"


def publish(text: str, root: Path) -> Path:
    """Replace the README's bench section (markers appended if missing); without a README,
    write bench/RESULTS.md."""
    block = f"{START}\n{text}{END}\n"
    readme = root / "README.md"
    if not readme.exists():
        target = root / "bench" / "RESULTS.md"
        target.write_text(f"# Benchmark results\n\n{block}", encoding="utf-8")
        return target
    current = readme.read_text(encoding="utf-8")
    if START in current and END in current:
        head, rest = current.split(START, 1)
        tail = rest.split(END, 1)[1].removeprefix("\n")
        updated = head + block + tail
    else:
        updated = current.rstrip("\n") + "\n\n" + block
    readme.write_text(updated, encoding="utf-8")
    return readme
