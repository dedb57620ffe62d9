"""A real Alertmanager for tests: routes every alert to one webhook, stopped by PID.

It listens on 127.0.0.1 only (clustering off: `--cluster.listen-address=` empty), keeps its
data under a directory the caller owns, and groups and flushes within seconds so a test
sees the webhook shortly after Prometheus fires.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.processes import ServerError, ServerProcess


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
    server: ServerProcess | None = field(default=None, repr=False)

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
        if self.server is not None and self.server.running:
            raise ServerError("Alertmanager is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_file = self.workdir / "alertmanager.yml"
        config_file.write_text(yaml.safe_dump(self.config(), sort_keys=False), encoding="utf-8")
        self.server = ServerProcess("Alertmanager", self.log_file)
        self.port = self.server.launch_on_a_free_port(self.port, lambda port: [
            self.binary, f"--config.file={config_file}", f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.external-url=http://127.0.0.1:{port}/", "--cluster.listen-address=",
            "--log.level=warn"])

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
