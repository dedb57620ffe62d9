"""A real VictoriaMetrics (single node) and vmalert for tests: start, import, replay, stop.

VictoriaMetrics listens on 127.0.0.1 and keeps its data under a directory the caller owns;
it is stopped by PID when its context ends (tests/support/processes.py). History goes in
through `/api/v1/import/prometheus` (text format, millisecond timestamps), and vmalert
evaluates rules over it with `-replay.timeFrom/-replay.timeTo`, writing recorded series and
`ALERTS` back through remote write. Pure functions, no pytest here.
"""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support.processes import ServerError, ServerProcess

QUERY_TIMEOUT = 120.0
REPLAY_TIMEOUT = 600.0

VictoriaError = ServerError  # VictoriaMetrics or vmalert failed; the message has their output


@dataclass(frozen=True)
class Exported:
    """One series' raw samples, as /api/v1/export gives them."""

    labels: dict[str, str]
    points: list[tuple[float, float]]  # (unix seconds, value)


@dataclass
class VictoriaServer:
    """One victoria-metrics process on 127.0.0.1 with its data and log under `workdir`."""

    binary: str
    workdir: Path
    port: int = 0
    server: ServerProcess | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.workdir / "victoria-metrics.log"

    def start(self) -> None:
        """Start and wait for /-/ready; retry on another port if this one was taken."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.server = ServerProcess("VictoriaMetrics", self.log_file)
        self.port = self.server.launch_on_a_free_port(self.port, self._args)

    def _args(self, port: int) -> list[str]:
        return [
            self.binary,
            f"-storageDataPath={self.workdir / 'data'}",
            f"-httpListenAddr=127.0.0.1:{port}",
            "-retentionPeriod=100y",
            # Imported and replayed history is queried at once: no cached answer from before.
            "-search.disableCache",
            "-loggerLevel=WARN",
        ]

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def log_tail(self, chars: int = 3000) -> str:
        return ServerProcess("VictoriaMetrics", self.log_file).log_tail(chars)

    def _request(self, path: str, data: bytes | None = None,
                 content_type: str = "application/x-www-form-urlencoded") -> bytes:
        request = urllib.request.Request(f"{self.url}{path}", data=data,
                                         method="POST" if data is not None else "GET")
        request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=QUERY_TIMEOUT) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            raise VictoriaError(f"{path}: HTTP {error.code}: {text}") from error

    def import_prometheus(self, lines: Iterable[str]) -> None:
        """Import text-format samples (`name{labels} value ms`) and make them searchable."""
        body = "".join(f"{line}\n" for line in lines).encode()
        self._request("/api/v1/import/prometheus", body, "text/plain")
        self.flush()

    def flush(self) -> None:
        """Recently added samples become searchable now rather than within a second."""
        self._request("/internal/force_flush")

    def export(self, selector: str, start: float, end: float) -> list[Exported]:
        params = urllib.parse.urlencode({"match[]": selector, "start": f"{start:.0f}",
                                         "end": f"{end:.0f}"})
        text = self._request(f"/api/v1/export?{params}").decode()
        found = []
        for line in text.splitlines():
            if line.strip():
                item = json.loads(line)
                found.append(Exported(item["metric"], [
                    (ms / 1000, float(v)) for ms, v in zip(item["timestamps"], item["values"],
                                                           strict=True)]))
        return found

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        params = urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}"}).encode()
        payload = json.loads(self._request("/api/v1/query", params))
        if payload.get("status") != "success":
            raise VictoriaError(f"query {expr!r}: {payload}")
        return list(payload["data"]["result"])


@contextlib.contextmanager
def running_victoria(binary: str, workdir: Path) -> Iterator[VictoriaServer]:
    """A started server that is stopped (by PID) however the block exits."""
    server = VictoriaServer(binary, workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def text_lines(labels: Sequence[tuple[str, str]], points: Iterable[tuple[float, float]]
               ) -> Iterator[str]:
    """Prometheus text-format lines of one series, NaN points left out (no sample)."""
    name = dict(labels)["__name__"]
    rest = ",".join(f'{k}="{_escape(v)}"' for k, v in labels if k != "__name__")
    series = f"{name}{{{rest}}}" if rest else name
    for t, value in points:
        if not math.isnan(value):
            yield f"{series} {value!r} {round(t * 1000)}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def replay(vmalert: str, rule_file: Path, server: VictoriaServer, start: float, end: float,
           *, log_file: Path, extra_args: Sequence[str] = ()) -> None:
    """vmalert evaluates `rule_file` over [start, end] against `server` and writes what it
    records and its ALERTS there; returns once vmalert has flushed and exited."""
    args = [vmalert, f"-rule={rule_file}", f"-datasource.url={server.url}",
            f"-remoteWrite.url={server.url}", f"-replay.timeFrom={_rfc3339(start)}",
            f"-replay.timeTo={_rfc3339(end)}", "-replay.disableProgressBar",
            "-replay.rulesDelay=0s",
            # The step of replay's range queries: each group's own interval, not 5m.
            "-datasource.queryStep=0s", "-loggerLevel=WARN", *extra_args]
    with log_file.open("ab") as log:
        result = subprocess.run(args, stdout=log, stderr=subprocess.STDOUT, timeout=REPLAY_TIMEOUT,
                                check=False)
    if result.returncode != 0:
        text = log_file.read_bytes()[-3000:].decode(errors="replace")
        raise VictoriaError(f"vmalert replay of {rule_file} exited {result.returncode}:\n{text}")
    server.flush()


def firing_minutes(server: VictoriaServer, alertname: str, start: float, end: float,
                   by: Mapping[str, str] | None = None) -> dict[tuple[tuple[str, str], ...],
                                                              set[int]]:
    """Minutes after `start` at which each label set of `alertname` was firing, by the
    ALERTS series vmalert wrote."""
    matchers = [f'alertname="{alertname}"', 'alertstate="firing"',
                *(f'{k}="{v}"' for k, v in (by or {}).items())]
    found: dict[tuple[tuple[str, str], ...], set[int]] = {}
    for series in server.export(f"ALERTS{{{','.join(matchers)}}}", start, end):
        key = tuple(sorted((k, v) for k, v in series.labels.items()
                           if k not in ("__name__", "alertstate")))
        found.setdefault(key, set()).update(round((t - start) / 60) for t, _ in series.points)
    return found
