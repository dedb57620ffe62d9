"""The demo's month served by a real Prometheus, for `slo-engine demo-prometheus` to read the
same report, charts, backtest, incidents and page from with `--prometheus-url`.

What Prometheus holds are the series the generated rules record, `slo:total_events:rate5m`
and `slo:bad_events:rate5m` with the rules' labels, one sample a minute: what those rules
would have recorded from counters growing evenly within each 5m bucket of the demo's ledger.
They cover the demo's days and one before (the demo's data is the same whatever its span),
so the report's period is covered from its first bucket. They are backfilled with
`promtool tsdb create-blocks-from openmetrics` into a fresh data directory; a Prometheus from
the PATH (Debian's /usr/bin/prometheus) then serves it on 127.0.0.1 at a free port, and is
stopped by its PID when the demo is done, however it ends. Nothing else runs, and nothing
outside `--out` is written.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from slo_engine.budget.ledger import group_labels
from slo_engine.errors import BackfillError, SourceUnavailable
from slo_engine.spec.conventions import BAD_EVENTS_RATE, TOTAL_EVENTS_RATE
from slo_engine.spec.model import Service

SAMPLE_SECONDS = 60  # the rules' evaluation interval
RATE_SECONDS = 300  # the recorded rate's window
MAX_BLOCK_DURATION = "486h"  # few blocks: promtool reads its whole input once per block
LEAD_DAYS = 1  # history before the demo's days, as rules deployed earlier would have recorded
RETENTION = "3650d"  # retention counts from the newest sample: keep the whole month
MARKER = ".slo-engine-demo-prometheus"  # in --out: its data dir may be emptied on a rerun
READY_SECONDS = 60.0
STOP_SECONDS = 10.0
INSTALL_HINT = ("install Debian's prometheus package (`make prometheus` does: apt-get install "
                "prometheus), which ships prometheus and promtool")


def recorded_rates(services: Sequence[Service], ledger: pd.DataFrame) -> Iterator[
        tuple[str, dict[str, str], np.ndarray, np.ndarray]]:
    """(metric, labels, unix times, values) of every recorded rate series for the ledger.

    Each 5m bucket's events are spread evenly over its five minutes, and the sample at each
    minute is the events of the five minutes before it over 300 s: what `rate(...[5m])`
    records of counters growing that way. At a bucket's end it is exactly the bucket's rate.
    """
    per_bucket = RATE_SECONDS // SAMPLE_SECONDS
    slos = {(slo.service, slo.name): slo for service in services for slo in service.slos}
    for (service, name, group), rows in ledger.groupby(["service", "slo", "group"],
                                                        sort=True, observed=True):
        slo = slos.get((str(service), str(name)))
        if slo is None or rows.empty:
            continue
        labels = {**dict(slo.labels), **group_labels(str(group))}
        ends = pd.DatetimeIndex(rows["timestamp"]).as_unit("s").asi8
        minutes = (ends[:, None] - SAMPLE_SECONDS * np.arange(per_bucket - 1, -1, -1)).ravel()
        for metric, column in ((TOTAL_EVENTS_RATE, "total"), (BAD_EVENTS_RATE, "bad")):
            spread = np.repeat(rows[column].to_numpy(dtype=float) / per_bucket, per_bucket)
            window = np.convolve(spread, np.ones(per_bucket))[:len(spread)]
            yield (metric, labels, minutes[per_bucket - 1:],
                   window[per_bucket - 1:] / RATE_SECONDS)


def write_openmetrics(path: Path, services: Sequence[Service], ledger: pd.DataFrame) -> int:
    """The recorded rates as one OpenMetrics file, families kept together; the samples."""
    series = sorted(recorded_rates(services, ledger), key=lambda s: s[0])
    samples = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        family = ""
        for metric, labels, times, values in series:
            if metric != family:
                family = metric
                out.write(f"# HELP {metric} Recorded by slo-engine's rules (demo).\n"
                          f"# TYPE {metric} gauge\n")
            selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
            prefix = f"{metric}{{{selector}}} "
            out.writelines(f"{prefix}{value:.6g} {stamp}\n"
                           for stamp, value in zip(times.tolist(), values.tolist(), strict=True))
            samples += len(times)
        out.write("# EOF\n")
    return samples


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise SourceUnavailable(f"{name} not found on the PATH; {INSTALL_HINT}")
    return found


def backfill(openmetrics: Path, data_dir: Path) -> None:
    """TSDB blocks of the OpenMetrics file, written straight into a data directory."""
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [_binary("promtool"), "tsdb", "create-blocks-from", "openmetrics",
               f"--max-block-duration={MAX_BLOCK_DURATION}", "-q", str(openmetrics),
               str(data_dir)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BackfillError(f"{' '.join(command)} exited {result.returncode}:\n"
                            f"{(result.stdout + result.stderr)[-3000:]}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """TERM by PID, KILL if it has not exited in time."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_SECONDS)


@contextmanager
def serving(data_dir: Path) -> Iterator[str]:
    """Prometheus on 127.0.0.1 over `data_dir` (no scrapes, no rules); yields its URL and
    stops it by PID when the block exits. A port taken in the meantime is retried."""
    binary = _binary("prometheus")
    config = data_dir.parent / "prometheus.yml"
    config.write_text("global:\n  evaluation_interval: 1m\n", encoding="utf-8")
    log = data_dir.parent / "prometheus.log"
    for _attempt in range(3):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        with log.open("ab") as output:
            process = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={data_dir}",
                 f"--storage.tsdb.retention.time={RETENTION}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + READY_SECONDS
            while process.poll() is None and time.monotonic() < deadline \
                    and not _ready(url):
                time.sleep(0.1)
            if process.poll() is None and _ready(url):
                yield url
                return
            tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
            if "address already in use" not in tail:
                raise SourceUnavailable(f"Prometheus at {url} did not become ready; its log "
                                        f"({log}) ends:\n{tail}")
        finally:
            _stop(process)
    raise SourceUnavailable(f"Prometheus found no free port; see {log}")


@dataclass(frozen=True)
class DemoPrometheus:
    url: str
    at: str  # the end of the demo's data, ISO 8601 UTC: the report's --at, the replay's --until
    changes: Path  # the month's change events, JSON lines


@contextmanager
def demo_month_served(paths: Sequence[str], out: Path, until: datetime,
                      days: int) -> Iterator[DemoPrometheus]:
    """Backfill the demo's month into a fresh data directory under `out` and serve it from a
    Prometheus on 127.0.0.1, stopped by its PID when the block ends, however it ends."""
    from slo_engine.demo.month import demo_data, write_changes
    from slo_engine.spec.loader import load_services

    services = load_services(paths)
    data = demo_data(services, until, days + LEAD_DAYS)
    data_dir = _fresh_data_dir(out)
    changes = out / "changes.jsonl"
    write_changes(data.changes, changes)
    openmetrics = out / "recorded.om"
    samples = write_openmetrics(openmetrics, services, data.ledger)
    print(f"backfilling {samples:,} samples of the recorded 5m rates ({days} days and "
          f"{LEAD_DAYS} before, one a minute) with promtool", flush=True)
    backfill(openmetrics, data_dir)
    openmetrics.unlink()
    with serving(data_dir) as url:
        print(f"Prometheus serves them at {url}", flush=True)
        yield DemoPrometheus(url, data.end.isoformat().replace("+00:00", "Z"), changes)
    print("Prometheus stopped", flush=True)


def _fresh_data_dir(out: Path) -> Path:
    """`out/data`, emptied if an earlier run of this demo made it; anything else is left
    alone, and is an error."""
    data_dir, marker = out / "data", out / MARKER
    if data_dir.exists():
        if not marker.exists():
            raise BackfillError(f"{data_dir} exists and was not made by this demo; remove it "
                                "or choose another --out")
        shutil.rmtree(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text("made by slo-engine demo-prometheus\n", encoding="utf-8")
    return data_dir
