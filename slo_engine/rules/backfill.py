"""Backfill recording rules over past data with promtool, one dependency level at a time.

`promtool tsdb create-blocks-from rules` evaluates rules by querying a running Prometheus,
and one run cannot read its own results. The generated rules build on each other (5m rates,
then window ratios, then the budget), so they are backfilled in levels. Level 1 reads only
raw series. Level N reads series recorded by earlier levels, so before level N runs,
Prometheus must serve the blocks of the levels before it. A `load_blocks` hook does that,
for example by moving the blocks into the data directory and restarting Prometheus.
Without a hook the backfill stops after one level and says what to do next.

Alerting rules never reach promtool: 2.42 writes them as plain series named after the
alert, although its help says it skips them.

Layout under `out_dir`:

    level-N/              the blocks of level N, and nothing else: move these
    rules/level-N/rules.yml   what level N evaluated

Every level runs one group with the same name, from a file with the same relative name.
promtool offsets evaluation times by a hash of the file and group name, so this puts the
samples of all levels on the same instants, as rules of one live group would be.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from slo_engine.errors import BackfillError
from slo_engine.rules.compile import AlertingRule, RecordingRule, Rule, RuleSet
from slo_engine.rules.files import dump_yaml
from slo_engine.spec.conventions import FAST_GROUP_INTERVAL
from slo_engine.spec.durations import parse_duration

BACKFILL_GROUP = "slo-engine-backfill"
RULES_FILE = "rules.yml"
DEFAULT_TIMEOUT = 3600.0  # seconds per level: 30 days × a few hundred rules fits easily
DEFAULT_WAIT = 90.0  # seconds for Prometheus to serve moved blocks (it rescans once a minute)
MAX_BLOCK_DURATION = "24h"  # hidden promtool flag: about 12x fewer blocks than the default 2h
QUERY_TIMEOUT = 30.0
INSTALL_HINT = ("install Debian's prometheus package (apt-get install prometheus), which "
                "ships promtool, or give the path of a promtool binary")

Progress = Callable[[int, int, str], None]
"""Called with (level, levels, message) as a backfill advances."""

LoadBlocks = Callable[[Path], None]
"""Makes Prometheus serve the blocks in the given level directory, for example by moving
them into its data directory and restarting it. The backfill then waits until the
records are queryable."""

RuleSource = RuleSet | Iterable[RuleSet] | Iterable[Rule] | str | Mapping[str, Any]
TimeLike = datetime | float


# --- planning (pure) --------------------------------------------------------------------


def recording_rules(source: RuleSource) -> list[RecordingRule]:
    """The recording rules of rule sets, rules, or a rules file (its text, or its parsed
    YAML). Alerting rules are dropped."""
    if isinstance(source, str):
        try:
            return _document_rules(yaml.safe_load(source) or {})
        except yaml.YAMLError as error:
            raise BackfillError(f"cannot read the rules: {error}") from None
    if isinstance(source, Mapping):
        return _document_rules(source)
    if isinstance(source, RuleSet):
        source = [source]
    rules: list[RecordingRule] = []
    for item in source:
        if isinstance(item, RuleSet):
            rules.extend(r for g in item.groups for r in g.rules if isinstance(r, RecordingRule))
        elif isinstance(item, RecordingRule):
            rules.append(item)
        elif not isinstance(item, AlertingRule):
            raise TypeError(f"not a rule or rule set: {item!r}")
    return rules


def _document_rules(document: Any) -> list[RecordingRule]:
    """Recording rules of a Prometheus rules file or a prometheus-operator PrometheusRule."""
    if isinstance(document, Mapping) and isinstance(document.get("spec"), Mapping):
        document = document["spec"]
    groups = document.get("groups") if isinstance(document, Mapping) else None
    if not isinstance(groups, list):
        raise BackfillError("cannot read the rules: expected a mapping with 'groups:' (a "
                            "Prometheus rules file or a PrometheusRule object)")
    rules: list[RecordingRule] = []
    for group in groups:
        for rule in (group.get("rules") or []) if isinstance(group, Mapping) else []:
            if isinstance(rule, Mapping) and "record" in rule:
                labels = rule.get("labels") or {}
                rules.append(RecordingRule(str(rule["record"]), str(rule.get("expr", "")),
                                           tuple((str(k), str(v)) for k, v in labels.items())))
    return rules


_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_NAME_MATCHER = re.compile(r"""__name__\s*=\s*(?:"([^"]*)"|'([^']*)')""")


def reads(expr: str, records: Iterable[str]) -> set[str]:
    """The recorded metric names an expression reads: identifiers outside string literals
    (and `__name__="…"` matchers) that some rule records."""
    names = set(_NAME.findall(_QUOTED.sub('""', expr)))
    names.update(a or b for a, b in _NAME_MATCHER.findall(expr))
    return names & set(records)


def _levels(rules: Sequence[RecordingRule]) -> tuple[list[int], dict[str, int]]:
    """Level of each rule (1 + the highest level of any name it reads) and of each name
    (the highest level of the rules recording it)."""
    records = {r.record for r in rules}
    by_name: dict[str, list[int]] = {}
    for index, rule in enumerate(rules):
        by_name.setdefault(rule.record, []).append(index)
    deps = [reads(r.expr, records) for r in rules]
    name_level: dict[str, int] = {}
    rule_level: dict[int, int] = {}

    def level_of(name: str, trail: tuple[str, ...]) -> int:
        if name in trail:
            cycle = " → ".join((*trail[trail.index(name):], name))
            raise BackfillError(f"recording rules read each other in a cycle ({cycle}); "
                                "promtool cannot backfill them")
        if name not in name_level:
            name_level[name] = max(level_of_rule(i, (*trail, name)) for i in by_name[name])
        return name_level[name]

    def level_of_rule(index: int, trail: tuple[str, ...]) -> int:
        if index not in rule_level:
            rule_level[index] = 1 + max((level_of(d, trail) for d in sorted(deps[index])),
                                        default=0)
        return rule_level[index]

    for name in sorted(records):
        level_of(name, ())
    return [level_of_rule(i, ()) for i in range(len(rules))], name_level


def record_levels(source: RuleSource) -> dict[str, int]:
    """The level of every recorded name: the level at which all of its series exist."""
    return _levels(recording_rules(source))[1]


def plan_levels(source: RuleSource) -> list[list[RecordingRule]]:
    """Recording rules in backfill order, lowest level first; source order within a level.

    Level 1 reads only raw series. A rule is one level above the highest name it reads.
    """
    rules = recording_rules(source)
    levels, _ = _levels(rules)
    plan: list[list[RecordingRule]] = [[] for _ in range(max(levels, default=0))]
    for rule, level in zip(rules, levels, strict=True):
        plan[level - 1].append(rule)
    return plan


def level_rules_text(rules: Sequence[RecordingRule]) -> str:
    """One level as a rules file: one group, no interval (promtool's --eval-interval)."""
    items: list[dict[str, Any]] = []
    for rule in rules:
        item: dict[str, Any] = {"record": rule.record, "expr": rule.expr}
        if rule.labels:
            item["labels"] = dict(rule.labels)
        items.append(item)
    return dump_yaml({"groups": [{"name": BACKFILL_GROUP, "rules": items}]})


def write_level_rules(rules: Sequence[RecordingRule], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(level_rules_text(rules), encoding="utf-8")
    return path


# --- running promtool -------------------------------------------------------------------


def _unix(when: TimeLike, what: str) -> int:
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise BackfillError(f"{what} {when.isoformat()} has no timezone; give UTC, e.g. "
                                f"{when.isoformat()}Z")
        return int(when.timestamp())
    return int(when)


def _promtool(promtool: str) -> str:
    found = shutil.which(promtool)
    if found is None:
        raise BackfillError(f"promtool not found ({promtool!r}); {INSTALL_HINT}")
    return found


def blocks_in(directory: Path) -> list[Path]:
    """TSDB blocks (directories with a meta.json) directly under `directory`."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() and (p / "meta.json").is_file())


def run_level(rules_file: Path, *, prometheus_url: str, start: TimeLike, end: TimeLike,
              out_dir: Path, eval_interval: int = 60, promtool: str = "promtool",
              timeout: float | None = DEFAULT_TIMEOUT,
              max_block_duration: str | None = MAX_BLOCK_DURATION) -> list[Path]:
    """Evaluate one level's rules file over [start, end] into blocks in `out_dir`.

    promtool runs in the rules file's directory on its bare name, so files of the same
    name give the same evaluation offsets. Returns the new blocks.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    before = set(blocks_in(out_dir))
    command = [_promtool(promtool), "tsdb", "create-blocks-from", "rules",
               f"--url={prometheus_url}", f"--start={_unix(start, 'start')}",
               f"--end={_unix(end, 'end')}", f"--eval-interval={eval_interval}s",
               f"--output-dir={out_dir.resolve()}", "--quiet"]
    if max_block_duration:
        command.append(f"--max-block-duration={max_block_duration}")
    command.append(rules_file.name)
    shown = f"(cd {rules_file.parent} && {' '.join(command)})"
    try:
        result = subprocess.run(command, cwd=rules_file.parent, capture_output=True, text=True,
                                timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise BackfillError(f"{shown} did not finish within {timeout:g} s; backfill a shorter "
                            "range, or allow more time") from None
    except OSError as error:
        raise BackfillError(f"{shown} could not run: {error}") from None
    if result.returncode != 0:
        output = "\n".join(line for line in result.stderr.splitlines()
                           if not line.startswith("level=info"))
        raise BackfillError(f"{shown} exited with {result.returncode}:\n"
                            f"{(output or result.stdout).strip()[-3000:]}")
    return [b for b in blocks_in(out_dir) if b not in before]


def _missing(prometheus_url: str, names: Iterable[str], start: int, end: int) -> list[str]:
    """The recorded names Prometheus has no series of in [start, end]. The series API reads
    only the index, so no samples are loaded."""
    missing = []
    for name in sorted(names):
        params = urllib.parse.urlencode({"match[]": f'{{__name__="{name}"}}',
                                         "start": str(start), "end": str(end)})
        url = f"{prometheus_url.rstrip('/')}/api/v1/series?{params}"
        try:
            with urllib.request.urlopen(url, timeout=QUERY_TIMEOUT) as response:
                payload = json.load(response)
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise BackfillError(f"cannot query Prometheus at {prometheus_url}: {error}; is it "
                                "running, and is this the URL promtool should read from?"
                                ) from None
        if not payload.get("data"):
            missing.append(name)
    return missing


# --- the use case -----------------------------------------------------------------------


@dataclass(frozen=True)
class BackfillResult:
    """What a backfill did and, if it stopped early, how to go on."""

    levels: int  # levels the rules need in all
    completed: tuple[int, ...]  # levels written by this run
    blocks: Mapping[int, tuple[Path, ...]]  # new blocks by level
    next_level: int | None  # the level to run next; None when all are written
    next_steps: str  # what the user must do now; "" when nothing is left

    @property
    def done(self) -> bool:
        return self.next_level is None


def level_dir(out_dir: Path, level: int) -> Path:
    return out_dir / f"level-{level}"


def level_rules_file(out_dir: Path, level: int) -> Path:
    return out_dir / "rules" / f"level-{level}" / RULES_FILE


def backfill(source: RuleSource, prometheus_url: str, start: TimeLike, end: TimeLike,
             out_dir: Path, eval_interval: int = 60, progress: Progress | None = None, *,
             load_blocks: LoadBlocks | None = None, first_level: int = 1,
             promtool: str = "promtool", timeout: float | None = DEFAULT_TIMEOUT,
             max_block_duration: str | None = MAX_BLOCK_DURATION,
             wait_seconds: float = DEFAULT_WAIT) -> BackfillResult:
    """Backfill the recording rules of `source` over [start, end], level by level.

    With `load_blocks`, every level runs. After each level the hook loads its blocks, and
    the next level waits up to `wait_seconds` until Prometheus serves the records it reads.
    Without a hook, only `first_level` runs, and the result's `next_steps` says how to load
    its blocks and run the next level. Before a level runs, Prometheus must serve the
    records of earlier levels that it reads in [start, end]. If it does not, BackfillError
    says which level to load.
    """
    plan = plan_levels(source)
    if not plan:
        raise BackfillError("no recording rules to backfill (alerting rules are never "
                            "backfilled)")
    levels = len(plan)
    if not 1 <= first_level <= levels:
        raise BackfillError(f"level {first_level} does not exist; these rules have levels "
                            f"1 to {levels}")
    start_s, end_s = _unix(start, "start"), _unix(end, "end")
    if end_s <= start_s:
        raise BackfillError(f"end ({end_s}) must be after start ({start_s})")
    if eval_interval != parse_duration(FAST_GROUP_INTERVAL):
        raise BackfillError(
            f"eval_interval must be {parse_duration(FAST_GROUP_INTERVAL):g} seconds, got "
            f"{eval_interval}: the recorded windows count one 5m rate sample a minute, as "
            "the rules' fast group records them")
    _promtool(promtool)
    report = progress or (lambda level, total, message: None)
    recorded_at = {r.record: n for n, rules in enumerate(plan, 1) for r in rules}
    last = levels if load_blocks is not None else first_level
    written: dict[int, tuple[Path, ...]] = {}
    for level in range(first_level, last + 1):
        rules = plan[level - 1]
        # Names of levels this run found empty are not waited for: nothing will come.
        earlier = {name: recorded_at[name] for r in rules
                   for name in reads(r.expr, recorded_at)
                   if recorded_at[name] < level and written.get(recorded_at[name]) != ()}
        _await_records(prometheus_url, earlier, start_s, end_s, level, levels, out_dir,
                       wait_seconds, report)
        directory = level_dir(out_dir, level)
        stale = blocks_in(directory)
        if stale:
            raise BackfillError(f"{directory} already holds {len(stale)} block(s) from an "
                                "earlier run; move them into Prometheus' data directory or "
                                "delete them first (blocks written twice are duplicates)")
        rules_file = write_level_rules(rules, level_rules_file(out_dir, level))
        report(level, levels, f"evaluating {len(rules)} rule(s) with promtool")
        blocks = run_level(rules_file, prometheus_url=prometheus_url, start=start_s,
                           end=end_s, out_dir=directory, eval_interval=eval_interval,
                           promtool=promtool, timeout=timeout,
                           max_block_duration=max_block_duration)
        written[level] = tuple(blocks)
        report(level, levels, f"wrote {len(blocks)} block(s) to {directory}")
        if load_blocks is not None and blocks:
            report(level, levels, "loading the blocks into Prometheus")
            load_blocks(directory)
    next_level = last + 1 if last < levels else None
    return BackfillResult(levels, tuple(written), written, next_level,
                          _next_steps(out_dir, last, levels, load_blocks is None))


def _await_records(prometheus_url: str, names: Mapping[str, int], start: int, end: int,
                   level: int, levels: int, out_dir: Path, wait_seconds: float,
                   report: Progress) -> None:
    """Wait until Prometheus serves every record of earlier levels this level reads
    (`names`: record → its level)."""
    if not names:
        return
    deadline = time.monotonic() + wait_seconds
    missing = _missing(prometheus_url, names, start, end)
    if missing and wait_seconds > 0:
        report(level, levels, f"waiting up to {wait_seconds:g} s for Prometheus to serve "
               f"{', '.join(missing)} (the blocks of earlier levels)")
    while missing and time.monotonic() < deadline:
        time.sleep(1.0)
        missing = _missing(prometheus_url, missing, start, end)
    if missing:
        below = min(names[name] for name in missing)
        raise BackfillError(
            f"level {level} reads {', '.join(missing)}, but Prometheus at {prometheus_url} has "
            f"no such series between start and end. Load the blocks of level {below} first: "
            f"move {level_dir(out_dir, below)}/* into Prometheus' data directory (its "
            "--storage.tsdb.path) and restart it, or wait a minute for it to load them. If "
            f"level {below} wrote no blocks, its rules found no data in that range: check "
            "that Prometheus holds the raw series there")


def _next_steps(out_dir: Path, last: int, levels: int, manual: bool) -> str:
    if not manual:
        return ""
    move = f"mv {level_dir(out_dir, last)}/* <Prometheus data directory>/"
    if last == levels:
        return (f"All {levels} level(s) written. Load the last one into Prometheus:\n"
                f"  1. {move}   (its --storage.tsdb.path)\n"
                "  2. restart Prometheus, or wait about a minute for it to load the blocks")
    return (f"Level {last} of {levels} written to {level_dir(out_dir, last)}. Prometheus must "
            f"serve these blocks before level {last + 1} can be evaluated:\n"
            f"  1. {move}   (its --storage.tsdb.path)\n"
            "  2. restart Prometheus, or wait about a minute for it to load the blocks\n"
            f"  3. run the same backfill again with --level {last + 1} (same rules, start, end "
            "and output directory)")
