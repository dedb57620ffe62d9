"""A real Alertmanager for tests: routes every alert to one webhook, stopped by PID.

It listens on 127.0.0.1 only (clustering off: `--cluster.listen-address=` empty), keeps its
data under a directory the caller owns, and groups and flushes within seconds so a test
sees the webhook shortly after Prometheus fires.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.prometheus import _STARTED, STOP_TIMEOUT, PrometheusError, free_port

READY_TIMEOUT = 30.0


@dataclass
class AlertmanagerServer:
    binary: str
    workdir: Path
    webhook_url: str
    bearer_token: str | None = None
    group_by: tuple[str, ...] = ("alertname", "service", "slo", "severity")
    group_wait: str = "1s"
    group_interval: str = "1s"
    repeat_interval: str = "4h"
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """host:port, as Prometheus' alerting config names it."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def log_file(self) -> Path:
        return self.workdir / "alertmanager.log"

    def config(self) -> dict[str, Any]:
        """The receiver as the README documents it: the engine's webhook, bearer token in
        http_config.authorization, resolved alerts sent too."""
        webhook: dict[str, Any] = {"url": self.webhook_url, "send_resolved": True}
        if self.bearer_token is not None:
            webhook["http_config"] = {"authorization": {"type": "Bearer",
                                                        "credentials": self.bearer_token}}
        return {
            "route": {"receiver": "slo-engine", "group_by": list(self.group_by),
                      "group_wait": self.group_wait, "group_interval": self.group_interval,
                      "repeat_interval": self.repeat_interval},
            "receivers": [{"name": "slo-engine", "webhook_configs": [webhook]}],
        }

    def start(self) -> None:
        if self.process is not None:
            raise PrometheusError("Alertmanager is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_file = self.workdir / "alertmanager.yml"
        config_file.write_text(yaml.safe_dump(self.config(), sort_keys=False), encoding="utf-8")
        for _attempt in range(3):
            self.port = self.port or free_port()
            if self._start_once(config_file):
                return
            self.port = 0
        raise PrometheusError(f"Alertmanager could not bind a port:\n{self._log_tail()}")

    def _start_once(self, config_file: Path) -> bool:
        args = [self.binary, f"--config.file={config_file}",
                f"--storage.path={self.workdir / 'data'}",
                f"--web.listen-address={self.address}",
                f"--web.external-url={self.url}/",
                "--cluster.listen-address=", "--log.level=warn"]
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        self.process = process
        _STARTED[process.pid] = process
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._forget()
                text = self.log_file.read_bytes()[offset:].decode(errors="replace")
                if "address already in use" in text:
                    return False
                raise PrometheusError(f"Alertmanager exited with {process.returncode}:\n"
                                      f"{text[-3000:]}")
            if self._ready():
                return True
            time.sleep(0.05)
        self.stop()
        raise PrometheusError(f"Alertmanager not ready after {READY_TIMEOUT:.0f} s:\n"
                              f"{self._log_tail()}")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stop(self) -> None:
        """TERM by PID, KILL if it has not exited within STOP_TIMEOUT."""
        process = self.process
        if process is None:
            return
        try:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(STOP_TIMEOUT)
        finally:
            self._forget()

    def _forget(self) -> None:
        if self.process is not None:
            _STARTED.pop(self.process.pid, None)
        self.process = None

    def _log_tail(self, chars: int = 3000) -> str:
        if not self.log_file.exists():
            return ""
        return self.log_file.read_bytes()[-chars:].decode(errors="replace")
