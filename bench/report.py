"""The bench's markdown: the machine it ran on, the figures, and ratios between schemes.

Published into the documentation's performance page (docs/performance.md) between markers,
so re-running replaces the previous results and nothing else of the page. Each part (compile,
eval, refresh, service, promtool) starts with a `<!-- bench:part NAME -->` line: a run of some parts
only (`python -m bench --only refresh`) replaces those parts and keeps the others.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.compile_time import TARGET_SECONDS, CompileResult
from bench.evaluation import EvalResult, SchemeResult
from bench.promtool_time import TARGET_SECONDS as PROMTOOL_TARGET_SECONDS
from bench.promtool_time import PromtoolResult
from bench.refresh import (
    TARGET_COLD_RATIO,
    TARGET_COLD_RSS,
    TARGET_LARGE_COLD_SECONDS,
    TARGET_LARGE_RSS,
    TARGET_LARGE_WARM_SECONDS,
    RefreshResult,
    Sized,
)
from bench.service import TARGET_CYCLE_SECONDS, TARGET_RSS_GROWTH, ServiceResult, cycle_stats
from bench.ui import DAYS as UI_DAYS
from bench.ui import STEP as UI_STEP
from bench.ui import TARGET_SECONDS as UI_TARGET_SECONDS
from bench.ui import UIResult

START = "<!-- bench:start -->"
END = "<!-- bench:end -->"
PARTS = ("compile", "eval", "refresh", "service", "promtool", "ui")
_PART = re.compile(r"^<!-- bench:part (\w+) -->\n", re.MULTILINE)


def part_marker(name: str) -> str:
    return f"<!-- bench:part {name} -->"


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

    def slow(g: str) -> bool:  # conventions.slow_group_name: the period and day-long tiers
        return g.endswith(":slow")

    def other(g: str) -> bool:
        return not slow(g)

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
        row("… slo-engine slow groups: period budget and day-long tiers (ms)",
            _ms(ours.per_cycle(slow)), "—"),
        timing("evaluation time per minute, groups every 1m, slo-engine slow groups "
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
        f"evaluates its slow group (the period and the day-long tiers) every 5 minutes "
        f"instead of every evaluation. "
        f"Setup (data generation and raw backfill) took {result.setup_seconds:.0f} s; the "
        f"history backfill {sum(ours.backfill_seconds):.1f} s (slo-engine, "
        f"{len(ours.backfill_seconds)} levels) and {sum(naive.backfill_seconds):.1f} s "
        f"(naive, {len(naive.backfill_seconds)} level).",
        "",
    ]


def _mb(count: float) -> str:
    return f"{count / 1e6:,.2f}" if count < 1e8 else f"{count / 1e6:,.0f}"


def _wide_ratio(a: float, b: float) -> str:
    """a ÷ b over several orders of magnitude: 0.0002, 0.18, 5.19, 274."""
    if not b or not (math.isfinite(a) and math.isfinite(b)):
        return "—"
    value = a / b
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def refresh_section(result: RefreshResult) -> list[str]:
    c, small, loop, large = result.config, result.small, result.loop, result.large
    cold = small.cold

    def row(label: str, *cells: str) -> str:
        return f"| {label} | {' | '.join(cells)} |"

    sampled = (f"{loop.slos_run:,} of {loop.slos_all:,} SLOs (random sample, the rest "
               f"extrapolated linearly: {loop.seconds_run:.0f} s, {loop.queries_run:,} "
               "queries measured)" if loop.extrapolated else f"all {loop.slos_all:,} SLOs")
    per_query = loop.seconds_run / loop.queries_run if loop.queries_run else math.nan
    sizes = [small, *([large] if large else [])]
    head = " | ".join(f"{s.slos:,} SLOs cold | {s.slos:,} SLOs warm" for s in sizes)
    lines = [
        f"**Budget refresh** for `slo-engine report --prometheus-url` of {c.slos:,} SLOs "
        f"({c.services} services × {c.slos_per_service}) over {c.days} days, and of "
        f"{large.slos if large else 0:,} SLOs for sizing: `windows.fetch_report_ledger` (the "
        "recorded rates summed by Prometheus between the report's window edges, a few "
        "instant queries for all SLOs) and `budget.report`, each in a new process (as a new "
        "`slo-engine report` runs; peak memory is that process'), against a per-SLO loop as "
        "slo-generator runs it: two instant queries (`sum_over_time` of the bad and of the "
        f"total recorded rate) per SLO and window ({', '.join(loop.windows)}), one after "
        f"another through a keep-alive `requests.Session`, run over {sampled}. Prometheus "
        f"holds {c.days + c.lead_days} days of `slo:total_events:rate5m` and "
        f"`slo:bad_events:rate5m` for every SLO, one sample every {c.sample_seconds // 60} "
        f"minutes ({small.series:,} series, {small.samples / 1e6:.1f} M samples, "
        f"{small.blocks} blocks"
        + (f"; {large.series:,} series, {large.samples / 1e6:.0f} M samples, {large.blocks} "
           "blocks" if large else "")
        + f"). Cold: an empty `--state-dir`; warm: {c.step_seconds // 60} minutes later on "
        "that directory, as the next run of a periodic refresh: each group's sums at the "
        "window edges are kept there, and only the stretch each edge moved is asked for.",
        "",
        f"| | {head} | per-SLO loop ({loop.slos_all:,}) | cold ÷ loop |",
        "|---|" + "---:|" * (2 * len(sizes) + 2),
        row("wall time (s)", *[f"{x.seconds:.2f}" for s in sizes for x in (s.cold, s.warm)],
            f"{loop.seconds:.2f}", _wide_ratio(cold.seconds, loop.seconds)),
        row("… fetch / `budget.report` (s)",
            *[f"{x.fetch_seconds:.2f} / {x.report_seconds:.2f}" for s in sizes
              for x in (s.cold, s.warm)], "—", ""),
        row("peak resident memory (GB)",
            *[f"{x.peak_rss_bytes / 1e9:.2f}" for s in sizes for x in (s.cold, s.warm)],
            "—", ""),
        row("HTTP queries", *[f"{x.queries:,}" for s in sizes for x in (s.cold, s.warm)],
            f"{loop.queries:,.0f}", _wide_ratio(cold.queries, loop.queries)),
        row("MB received", *[_mb(x.bytes) for s in sizes for x in (s.cold, s.warm)],
            _mb(loop.bytes), _wide_ratio(cold.bytes, loop.bytes)),
        row("points received", *[f"{x.points:,}" for s in sizes for x in (s.cold, s.warm)],
            f"{loop.points:,.0f}", _wide_ratio(cold.points, loop.points)),
        row("ledger rows", *[f"{x.rows:,}" for s in sizes for x in (s.cold, s.warm)], "—", ""),
        "",
        f"Targets: cold at {small.slos:,} SLOs at most {TARGET_COLD_RATIO:g} of the loop's "
        f"time, {_met(cold.seconds <= TARGET_COLD_RATIO * loop.seconds)} "
        f"({_wide_ratio(cold.seconds, loop.seconds)}), and at most "
        f"{TARGET_COLD_RSS / 1e9:g} GB resident, {_met(cold.peak_rss_bytes <= TARGET_COLD_RSS)} "
        f"({cold.peak_rss_bytes / 1e9:.2f} GB)",
    ]
    if large:
        lines[-1] += (
            f"; at {large.slos:,} SLOs cold within {TARGET_LARGE_COLD_SECONDS:g} s and "
            f"{TARGET_LARGE_RSS / 1e9:g} GB, "
            f"{_met(large.cold.seconds <= TARGET_LARGE_COLD_SECONDS and large.cold.peak_rss_bytes <= TARGET_LARGE_RSS)} "  # noqa: E501
            f"({large.cold.seconds:.1f} s, {large.cold.peak_rss_bytes / 1e9:.2f} GB), warm "
            f"within {TARGET_LARGE_WARM_SECONDS:g} s, "
            f"{_met(large.warm.seconds <= TARGET_LARGE_WARM_SECONDS)} "
            f"({large.warm.seconds:.1f} s)")
    lines[-1] += "."
    lines += [
        "",
        f"The period's bad and total events in slo-engine's report match the loop's "
        f"{c.days}d sums within {result.max_period_difference:.1e} (relative, "
        f"{len(loop.sums):,} SLOs); the window sums give the same report as the 5-minute "
        "bucket ledger (`tests/test_report_windows.py`). The report computes every window "
        "of each SLO (7 windows and the period), the loop only its "
        f"{len(loop.windows)}. Prometheus runs on this machine, so each of the loop's "
        f"queries costs only {per_query * 1000:.1f} ms: a 10 ms round trip to a remote "
        f"Prometheus would add about {loop.queries * 0.010:,.0f} s to the loop and "
        f"{0.010 * cold.queries:.2f} s to a refresh.",
        "",
        "Setup: " + "; ".join(_setup(s) for s in sizes) + ".",
        "",
    ]
    if large:
        lines += _sizing(result, large)
    return lines


def _sizing(result: RefreshResult, large: Sized) -> list[str]:
    """SLOs → time and memory of a cold report, fitted through the two measured sizes."""
    small, c = result.small, result.config

    def fit(a: float, b: float, slos: int) -> float:
        return a + (b - a) * (slos - small.slos) / (large.slos - small.slos)

    lines = [
        f"Sizing a deployment (this machine; {c.days}-day periods, recorded rates one sample "
        f"every {c.sample_seconds // 60} minutes): a cold `slo-engine report` is a straight "
        "line through the two measured sizes, and Prometheus' share of it is reading each "
        "series' samples over the period once. The rules record one sample a minute, "
        f"{c.sample_seconds // 60}× the bench's, so a real server reads that many more samples "
        "for the same SLOs (not measured here); the client's time and memory do not depend "
        "on it.",
        "",
        "| SLOs | cold report (s) | … of which the fetch (s) | peak memory (GB) | "
        "samples read (M) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for slos in (small.slos, 5_000, large.slos, 20_000, 50_000):
        measured = slos in (small.slos, large.slos)
        label = f"{slos:,}" + ("" if measured else " (fitted)")
        samples = 2 * slos * c.days * 86_400 / c.sample_seconds / 1e6
        lines.append(
            f"| {label} | {fit(small.cold.seconds, large.cold.seconds, slos):.1f} | "
            f"{fit(small.cold.fetch_seconds, large.cold.fetch_seconds, slos):.1f} | "
            f"{fit(small.cold.peak_rss_bytes, large.cold.peak_rss_bytes, slos) / 1e9:.2f} | "
            f"{samples:,.0f} |")
    lines.append("")
    return lines


def _setup(sized: Sized) -> str:
    return (f"{sized.slos:,} SLOs: {sized.openmetrics_bytes / 1e9:.1f} GB of OpenMetrics "
            f"generated in {sized.generate_seconds:.0f} s (one process per core), backfilled "
            f"{sized.backfill_seconds:.0f} s after the last file was written, "
            f"{sized.compactions} TSDB compactions during the measurements")


def service_section(results: list[ServiceResult]) -> list[str]:
    small, largest = results[0], results[-1]
    c = small.config
    median, p95, worst = cycle_stats(small.steady)
    naive = cycle_stats(small.naive_cycle_seconds)
    slowest = max(largest.cycle_seconds)
    paging = max(largest.paging_seconds, default=0.0)
    fast_ok = slowest < TARGET_CYCLE_SECONDS
    growth = [r.rss_growth for r in results]
    flat_ok = all(g <= TARGET_RSS_GROWTH for g in growth)
    sizes = ", ".join(f"{r.config.slos:,}" for r in results)

    def row(label: str, a: str, b: str, r: str = "") -> str:
        return f"| {label} | {a} | {b} | {r} |"

    def size_row(r: ServiceResult) -> str:
        m, p, w = cycle_stats(r.steady)
        rss = r.rss_bytes[r.config.warmup:]
        pages = max(r.paging_seconds, default=0.0)
        return (f"| {r.config.slos:,} | {r.config.cycles} | {r.samples:,} | "
                f"{r.queries_per_cycle:,} | {r.transitions} ({r.pages}) | "
                f"{m:.3f} / {p:.3f} / {w:.3f} | {len(r.paging_seconds)}: {pages:.3f} | "
                f"{max(r.cycle_seconds):.3f} | {rss[0] / 1e6:.0f} → {max(rss) / 1e6:.0f} → "
                f"{rss[-1] / 1e6:.0f} | {r.setup_seconds:.0f} |")

    return [
        f"**Service evaluation loop** at {sizes} SLOs (services of {c.slos_per_service}, "
        "the default four tiers): at each size a real Prometheus of its own holds the "
        "recorded error ratios of every window, one sample a minute, and `Engine.evaluate` "
        "runs once per minute of data, back to back; "
        f"{c.incidents} SLOs have an incident, so tiers start and stop firing and the "
        "notifier makes Slack calls (rendered and delivered to a discarded terminal). A cycle "
        "is the queries, the firing tiers, the transitions, the pages with their budget and "
        "correlation queries, and the state database writes; a cycle with pages is one with "
        "at least one transition. Resident memory is the bench process's, read after each "
        "cycle (the sizes run one after the other in it, smallest first).",
        "",
        "| SLOs | cycles | samples | instant queries per cycle | transitions (Slack calls) "
        f"| cycle time after {c.warmup} warm-up cycles, median / p95 / max (s) "
        "| cycles with pages: how many, slowest (s) | slowest cycle (s) "
        "| resident memory after warm-up, first → max → last (MB) | setup (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(size_row(r) for r in results),
        "",
        f"The naive loop (one instant query per SLO and window) ran at {c.slos:,} SLOs only: "
        "its cost grows with the SLOs, at minutes per cycle beyond. It ran "
        f"{len(small.naive_cycle_seconds)} cycles on the same data at the same instants"
        + (", and found the same firing tiers." if small.same_firing
           else ", and found **different** firing tiers."),
        "",
        f"| {c.slos:,} SLOs | slo-engine | naive per-SLO loop | slo-engine ÷ naive |",
        "|---|---:|---:|---:|",
        row("instant queries per cycle", f"{small.queries_per_cycle:,}",
            f"{small.naive_queries_per_cycle:,}",
            _wide_ratio(small.queries_per_cycle, small.naive_queries_per_cycle)),
        row("cycle time, median (s)", f"{median:.3f}", f"{naive[0]:.2f}",
            _wide_ratio(median, naive[0])),
        row(f"cycle time, p95 / max after {c.warmup} warm-up cycles (s)",
            f"{p95:.3f} / {worst:.3f}", f"{naive[1]:.2f} / {naive[2]:.2f}"),
        "",
        f"Targets: every cycle at {largest.config.slos:,} SLOs, those with pages and the "
        f"warm-up included, under {TARGET_CYCLE_SECONDS:g} s: "
        f"{'met' if fast_ok else '**missed**'} (slowest {slowest:.2f} s, slowest with pages "
        f"{paging:.2f} s); resident memory flat within {TARGET_RSS_GROWTH:.0%} after warm-up "
        f"at every size: {'met' if flat_ok else '**missed**'} "
        f"({', '.join(f'{g:+.1%}' for g in growth)}).",
        "",
    ]


def promtool_section(result: PromtoolResult) -> list[str]:
    """Per-file times side by side for each service size: flat rows mean no growth."""
    largest = max(result.services, key=lambda s: s.slos)
    cpu = [f.cpu for s in result.services for f in s.files]
    ok = largest.together < PROMTOOL_TARGET_SECONDS
    sizes = ", ".join(str(s.slos) for s in result.services)
    lines = [
        f"**Generated promtool tests**: `promtool test rules` on every test file that "
        f"`slo-engine compile` writes for services of {sizes} "
        f"SLOs (in rotation: {'; '.join(result.kinds)}). Each file loads only its own SLO's "
        "rules; files run one at a time for the per-file figures, then all of a service's "
        "files together on every core.",
        "",
        "| SLOs in the service | test files | per file, wall: min / median / max (s) | "
        "per file, CPU: min / median / max (s) | all files together, wall (s) | "
        "CPU of all files (s) | load average after |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for service in result.services:
        walls = sorted(f.wall for f in service.files)
        cpus = sorted(f.cpu for f in service.files)
        lines.append(
            f"| {service.slos} | {len(service.files)} | {walls[0]:.2f} / "
            f"{walls[len(walls) // 2]:.2f} / {walls[-1]:.2f} | {cpus[0]:.2f} / "
            f"{cpus[len(cpus) // 2]:.2f} / {cpus[-1]:.2f} | {service.together:.2f} | "
            f"{sum(cpus):.2f} | {service.load:.1f} |")
    lines += [
        "",
        f"Target: the tests of the {largest.slos}-SLO service in under "
        f"{PROMTOOL_TARGET_SECONDS:g} s, {'met' if ok else '**missed**'} "
        f"({largest.together:.2f} s wall at a load average of {largest.load:.1f}; "
        f"{sum(f.cpu for f in largest.files):.1f} s of CPU in all, so about half that on two "
        f"idle cores). A file's CPU time ranges {min(cpu):.2f}–{max(cpu):.2f} s whatever the "
        "number of its siblings: it depends on the SLO's shape (a pages-only SLO has no "
        "slow-burn case), not on the service's size. Wall times depend on what else the "
        "machine runs; CPU times much less.",
        "",
    ]
    return lines


def ui_section(result: UIResult) -> list[str]:
    verdict = "under" if result.worst_median < UI_TARGET_SECONDS else "OVER"
    lines = [
        f"### Web view: the SLO list at {result.slos:,} SLOs",
        "",
        f"Server time of `GET /` in the view's ASGI app (in process, no network), the "
        f"snapshot read once ({result.ledger_rows:,} ledger rows, {UI_DAYS} days of {UI_STEP} "
        f"buckets); the naive view recomputes every SLO's budget from the ledger per request "
        f"(timed over {result.naive_measured:,} SLOs, extrapolated).",
        "",
        "| | slo-engine | naive per-SLO recompute | slo-engine ÷ naive |",
        "|---|---:|---:|---:|",
    ]
    for query, seconds in result.medians.items():
        lines.append(f"| `{query}`, median of warm requests (ms) | {_ms(seconds)} | "
                     f"{_ms(result.naive_per_request)} | "
                     f"{_wide_ratio(seconds, result.naive_per_request)} |")
    lines += [
        f"| first request, its rows derived from the snapshot (ms) | "
        f"{_ms(result.first_seconds)} | | |",
        f"| reading the snapshot: the budget report of every SLO (ms, once per refresh) | "
        f"{_ms(result.snapshot_seconds)} | | |",
        f"| page size (kB) | {result.page_bytes / 1000:,.0f} | | |",
        "",
        f"Slowest list query {_ms(result.worst_median)} ms: {verdict} the "
        f"{UI_TARGET_SECONDS:.0f} s target; even a request that finds the snapshot stale "
        f"and reads it again takes "
        f"{_ms(result.snapshot_seconds + result.first_seconds)} ms.",
        "",
    ]
    return lines



def markdown(machine_line: str, compile_result: CompileResult | None,
             eval_result: EvalResult | None, seconds: float,
             refresh_result: RefreshResult | None = None,
             only: tuple[str, ...] = (), service_result: list[ServiceResult] | None = None,
             promtool_result: PromtoolResult | None = None,
             ui_result: UIResult | None = None) -> str:
    """The bench section: a heading line, then each part that ran after its marker. With
    `only`, the heading says which parts ran and goes inside each of them, so that
    `publish` can keep the heading and the other parts of the last full run."""
    heading = (f"`python -m bench --only {' --only '.join(only)}`, {seconds:.0f} s: "
               f"{machine_line}." if only else
               f"`make bench` (`python -m bench`, {seconds:.0f} s): {machine_line}.")
    lines = [] if only else [heading, ""]
    sections: tuple[tuple[str, Any, Callable[[Any], list[str]]], ...] = (
        ("compile", compile_result, compile_section),
        ("eval", eval_result, eval_section),
        ("refresh", refresh_result, refresh_section),
        ("service", service_result, service_section),
        ("promtool", promtool_result, promtool_section),
        ("ui", ui_result, ui_section))
    for name, result, section in sections:
        if result is not None:
            lines += [part_marker(name)]
            if only:  # a part kept by later runs carries its own provenance
                lines += [f"*{heading}*", ""]
            lines += section(result)
    return "\n".join(lines).rstrip() + "\n"


def _split_parts(block: str) -> tuple[str, dict[str, str]]:
    """A bench section's text → what precedes the first part marker, and each part's text
    (marker line included)."""
    found = list(_PART.finditer(block))
    if not found:
        return block, {}
    head = block[:found[0].start()]
    parts = {}
    for index, match in enumerate(found):
        end = found[index + 1].start() if index + 1 < len(found) else len(block)
        parts[match.group(1)] = block[match.start():end]
    return head, parts


def merge(current: str, new: str) -> str:
    """The bench section after a run: `new` whole if it has a heading (a full run), else
    `current` with the parts of `new` put in place (appended when missing)."""
    new_head, new_parts = _split_parts(new)
    if new_head.strip() or not new_parts:
        return new
    head, parts = _split_parts(current)
    for name, text in new_parts.items():
        parts[name] = text
    ordered = sorted(parts, key=lambda n: PARTS.index(n) if n in PARTS else len(PARTS))
    body = "".join(parts[n].rstrip("\n") + "\n\n" for n in ordered).rstrip("\n") + "\n"
    return (head.rstrip("\n") + "\n\n" if head.strip() else "") + body


PAGE = Path("docs") / "performance.md"


def publish(text: str, root: Path) -> Path:
    """Replace the performance page's bench section (markers appended if missing), or only
    the parts this run made (see `merge`); the page is created when it does not exist."""
    target = root / PAGE
    current = target.read_text(encoding="utf-8") if target.exists() else ""
    if START in current and END in current:
        head, rest = current.split(START, 1)
        old, tail = rest.split(END, 1)
        block = f"{START}\n{merge(old.strip(chr(10)) + chr(10), text)}{END}\n"
        updated = head + block + tail.removeprefix("\n")
    elif current:
        updated = current.rstrip("\n") + "\n\n" + f"{START}\n{text}{END}\n"
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        updated = f"# Performance\n\n{START}\n{text}{END}\n"
    target.write_text(updated, encoding="utf-8")
    return target
