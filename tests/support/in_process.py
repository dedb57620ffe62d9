"""The engine as `slo-engine run` wires it (HTTP server, scheduler), in the test's process, so
a test can read its metrics directly; signals aside."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from slo_engine.config import load_config
from slo_engine.service.engine import Engine
from slo_engine.service.http_api import HttpServer, create_app
from slo_engine.service.scheduler import EngineScheduler


@dataclass
class InProcessEngine:
    engine: Engine
    server: HttpServer
    scheduler: EngineScheduler

    @classmethod
    def start(cls, config_file: Path) -> InProcessEngine:
        config = load_config(config_file)
        engine = Engine.from_config(config)
        server = HttpServer(create_app(engine, config.http, engine.web_view()),
                            config.http.listen)
        server.start()
        scheduler = EngineScheduler(engine, config.schedule, watch_seconds=3600)
        scheduler.start()
        return cls(engine, server, scheduler)

    def stop(self) -> None:
        self.scheduler.shutdown(wait=True)
        self.server.stop()
        self.engine.close()

    def sample(self, name: str) -> float:
        """A metric of the engine's own registry (0 while it has no sample)."""
        return self.engine.telemetry.registry.get_sample_value(name) or 0.0

    def last_evaluation(self) -> float:
        return self.sample("slo_engine_last_evaluation_timestamp_seconds")
