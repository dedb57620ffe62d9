"""A real Prometheus for tests and the bench: start, backfill, query, stop.

Everything listens on 127.0.0.1 and lives under a directory the caller owns; the process is
stopped by PID when its context ends (tests/support/processes.py).

Backfilled history is how rules are tested over days in seconds. `promtool tsdb
create-blocks-from rules` evaluates each group against the live server, so rules that read
other recorded rules must be backfilled level by level, restarting the server after each
level so it loads the new blocks (`split_levels`, `backfill_levels`). Pure functions, no
pytest here: the bench uses this module too.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from slo_engine.rules import backfill
from slo_engine.rules.backfill import level_rules_text, plan_levels, record_levels
from tests.support.processes import ServerError, ServerProcess

QUERY_TIMEOUT = 120.0
RETENTION = "3650d"  # backfilled data is subject to retention: keep all of it
BACKFILL_EVAL_INTERVAL = "60s"
MAX_BLOCK_DURATION = "24h"  # hidden promtool flag in 2.42: 10 blocks a week instead of 85

# One group name and one relative file name for every level: promtool offsets each group's
# evaluation timestamps by a hash of (file, group), and equal offsets keep the samples of
# all levels on the same instants, as rules in one live group would be.
BACKFILL_GROUP = backfill.BACKFILL_GROUP
BACKFILL_FILE = "rules.yml"

PrometheusError = ServerError  # Prometheus or promtool failed; the message has their output


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float
    timestamp: float


@dataclass(frozen=True)
class RangeSeries:
    labels: dict[str, str]
    points: list[tuple[float, float]]

    @property
    def values(self) -> list[float]:
        return [v for _, v in self.points]


@dataclass
class PrometheusServer:
    """One Prometheus process on 127.0.0.1 with its own config, data and log under `workdir`."""

    binary: str
    workdir: Path
    rule_files: tuple[Path, ...] = ()
    evaluation_interval: str = "1m"
    out_of_order_window: str | None = None
    port: int = 0
    scrape_interval: str = "15s"
    scrape_targets: Mapping[str, Sequence[str]] = field(default_factory=dict)  # job -> targets
    alertmanagers: Sequence[str] = ()  # host:port of Alertmanagers to send alerts to
    server: ServerProcess | None = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def config_file(self) -> Path:
        return self.workdir / "prometheus.yml"

    @property
    def log_file(self) -> Path:
        return self.workdir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> None:
        config: dict[str, Any] = {
            "global": {"scrape_interval": self.scrape_interval,
                       "evaluation_interval": self.evaluation_interval},
            "rule_files": [str(p.resolve()) for p in self.rule_files],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}
                               for job, targets in self.scrape_targets.items()],
        }
        if self.alertmanagers:
            config["alerting"] = {"alertmanagers": [
                {"static_configs": [{"targets": list(self.alertmanagers)}]}]}
        if self.out_of_order_window:
            # Lets live rule results land in the head although backfilled raw blocks reach
            # past "now" (the bench needs raw data at evaluation time).
            config["storage"] = {"tsdb": {"out_of_order_time_window": self.out_of_order_window}}
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    def start(self) -> None:
        """Start and wait for /-/ready; retry on another port if this one was taken."""
        if self.server is not None and self.server.running:
            raise PrometheusError("Prometheus is already running")
        self.write_config()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.server = ServerProcess("Prometheus", self.log_file)
        self.port = self.server.launch_on_a_free_port(self.port, self._args)

    def _args(self, port: int) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--storage.tsdb.retention.time={RETENTION}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.external-url=http://127.0.0.1:{port}/",
            "--log.level=warn",
        ]

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def restart(self) -> None:
        """Restart on the same port: loads blocks moved into the data dir (0.13 s, deterministic,
        where a running server only notices them within a minute)."""
        self.stop()
        self.start()

    def log_tail(self, chars: int = 3000) -> str:
        return ServerProcess("Prometheus", self.log_file).log_tail(chars)

    # --- HTTP API ---------------------------------------------------------------------

    def api(self, path: str, params: Mapping[str, str]) -> Any:
        """GET/POST /api/v1/<path>; returns `data` or raises with Prometheus' error."""
        body = urllib.parse.urlencode(params).encode()
        request = urllib.request.Request(f"{self.url}/api/v1/{path}", data=body, method="POST")
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with urllib.request.urlopen(request, timeout=QUERY_TIMEOUT) as response:
                payload = json.load(response)
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            raise PrometheusError(f"{path} {dict(params)}: HTTP {error.code}: {text}") from error
        if payload.get("status") != "success":
            raise PrometheusError(f"{path} {dict(params)}: {payload}")
        return payload["data"]

    def query_data(self, expr: str, at: float | None = None, *, stats: bool = False) -> Any:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        if stats:
            params["stats"] = "all"
        return self.api("query", params)

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        """Instant query at `at` (default: now), as a list of samples."""
        data = self.query_data(expr, at)
        if data["resultType"] == "scalar":
            t, v = data["result"]
            return [Sample({}, float(v), float(t))]
        return [Sample(item["metric"], float(item["value"][1]), float(item["value"][0]))
                for item in data["result"]]

    def query_value(self, expr: str, at: float | None = None) -> float:
        """The single value of an instant query; fails on zero or several series."""
        samples = self.query(expr, at)
        if len(samples) != 1:
            raise PrometheusError(f"{expr!r} at {at}: expected 1 series, got {samples}")
        return samples[0].value

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[RangeSeries]:
        """Range query; split in chunks because Prometheus refuses > 11,000 points a series."""
        merged: dict[tuple[tuple[str, str], ...], RangeSeries] = {}
        chunk = step * 10_000
        t = start
        while t <= end:
            stop = min(end, t + chunk - step)
            data = self.api("query_range", {"query": expr, "start": f"{t:.3f}",
                                            "end": f"{stop:.3f}", "step": f"{step:g}"})
            for item in data["result"]:
                key = tuple(sorted(item["metric"].items()))
                series = merged.setdefault(key, RangeSeries(item["metric"], []))
                series.points.extend((float(ts), float(v)) for ts, v in item["values"])
            t = stop + step
        return list(merged.values())

    def metrics_text(self) -> str:
        """Prometheus' own /metrics (rule group durations live there)."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:
            return str(response.read().decode())


@contextlib.contextmanager
def running_prometheus(binary: str, workdir: Path, *, rule_files: Iterable[Path] = (),
                       evaluation_interval: str = "1m",
                       out_of_order_window: str | None = None) -> Iterator[PrometheusServer]:
    """A started server that is stopped (by PID) however the block exits."""
    server = PrometheusServer(binary, workdir, tuple(rule_files), evaluation_interval,
                              out_of_order_window)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- promtool backfill ----------------------------------------------------------------


def _run(args: Sequence[str], cwd: Path | None = None) -> None:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PrometheusError(f"{' '.join(args)} exited {result.returncode}:\n"
                              f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}")


def backfill_openmetrics(promtool: str, openmetrics_file: Path, data_dir: Path) -> None:
    """Write TSDB blocks of an OpenMetrics file straight into a (stopped or restarted) data dir."""
    data_dir.mkdir(parents=True, exist_ok=True)
    _run([promtool, "tsdb", "create-blocks-from", "openmetrics",
          f"--max-block-duration={MAX_BLOCK_DURATION}", "-q",
          str(openmetrics_file), str(data_dir)])


def recording_only(rules: Mapping[str, Any]) -> dict[str, Any]:
    """The recording rules of a rules document: promtool 2.42 backfills alerting rules as
    plain series named after the alert, although its help says it ignores them."""
    groups = []
    for group in rules.get("groups", []):
        kept = [r for r in group.get("rules", []) if "record" in r]
        if kept:
            groups.append({**group, "rules": kept})
    return {"groups": groups}


def backfill_rules(promtool: str, rules_file: Path, url: str, start: float, end: float,
                   out_dir: Path, *, eval_interval: str = BACKFILL_EVAL_INTERVAL) -> None:
    """Evaluate the recording rules of `rules_file` over [start, end] into blocks in `out_dir`.

    promtool runs in a scratch dir on a copy named BACKFILL_FILE, so equal group names give
    equal evaluation offsets whatever the caller's path.
    """
    document = yaml.safe_load(rules_file.read_text(encoding="utf-8")) or {}
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="slo-backfill-") as scratch:
        (Path(scratch) / BACKFILL_FILE).write_text(
            yaml.safe_dump(recording_only(document), sort_keys=False), encoding="utf-8")
        _run([promtool, "tsdb", "create-blocks-from", "rules", f"--url={url}",
              f"--start={int(start)}", f"--end={int(end)}", f"--eval-interval={eval_interval}",
              f"--max-block-duration={MAX_BLOCK_DURATION}", "-q",
              f"--output-dir={out_dir.resolve()}", BACKFILL_FILE], cwd=Path(scratch))


def move_blocks(src: Path, data_dir: Path) -> int:
    """Move every block (ULID dir) of `src` into `data_dir`; returns how many moved."""
    moved = 0
    for block in sorted(src.iterdir()):
        if block.is_dir() and (block / "meta.json").exists():
            shutil.move(str(block), str(data_dir / block.name))
            moved += 1
    return moved


# --- rules that build on rules: one backfill level at a time -----------------------------

_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_RANGE_READ = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{[^}]*\})?\s*\[")


def _names_in(expr: str) -> set[str]:
    return set(_NAME.findall(_QUOTED.sub('""', expr)))


def _range_reads(expr: str) -> set[str]:
    return set(_RANGE_READ.findall(_QUOTED.sub('""', expr)))


def _rules(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [r for g in document.get("groups", []) for r in g.get("rules", [])]


def rule_levels(document: Mapping[str, Any]) -> dict[str, int]:
    """Level of every recorded name: 1 reads only raw series, n+1 reads a level-n record."""
    return record_levels(document)


def history_records(document: Mapping[str, Any]) -> set[str]:
    """Records some rule reads through a range selector, plus what those records read: the
    only ones whose past matters when the rules are then evaluated live."""
    rules = _rules(document)
    records = {r["record"] for r in rules if "record" in r}
    wanted: set[str] = set()
    for rule in rules:
        wanted |= _range_reads(rule["expr"]) & records
    todo = list(wanted)
    while todo:
        name = todo.pop()
        for rule in rules:
            if rule.get("record") == name:
                new = (_names_in(rule["expr"]) & records) - wanted
                wanted |= new
                todo.extend(new)
    return wanted


def split_levels(rules_text: str, *, only: set[str] | None = None) -> list[str]:
    """A rendered rules file → one recording-rules file per level (one group each), lowest
    first, alerting rules dropped; `only` keeps just those record names."""
    texts = []
    for rules in plan_levels(rules_text):
        kept = [r for r in rules if only is None or r.record in only]
        if kept:
            texts.append(level_rules_text(kept))
    return texts


def backfill_levels(server: PrometheusServer, promtool: str, level_texts: Sequence[str],
                    start: float, end: float, workdir: Path,
                    *, starts: Sequence[float] | None = None) -> list[float]:
    """Backfill each level over [start (or starts[i]), end], move its blocks in, restart.

    Returns the seconds each level took (promtool + restart).
    """
    took: list[float] = []
    for index, text in enumerate(level_texts, 1):
        began = time.monotonic()
        level_dir = workdir / f"level-{index}"
        level_dir.mkdir(parents=True, exist_ok=True)
        rules_file = level_dir / "rules.yml"
        rules_file.write_text(text, encoding="utf-8")
        level_start = starts[index - 1] if starts is not None else start
        backfill_rules(promtool, rules_file, server.url, level_start, end, level_dir / "blocks")
        if move_blocks(level_dir / "blocks", server.data_dir):
            server.restart()
        took.append(time.monotonic() - began)
    return took
