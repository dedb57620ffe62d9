"""`slo-engine run` (the service) and `slo-engine config check` (its config, before deploying).

`config check` lists every problem it finds instead of stopping at the first: the YAML of
the config, the SLO files, owners no channel receives, the state path, the digest schedule,
the HTTP tokens, and with --connect whether Prometheus and Slack accept the set-up.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from slo_engine.cli.arguments import Commands
from slo_engine.redaction import redact

if TYPE_CHECKING:
    from slo_engine.config import EngineConfig
    from slo_engine.spec.model import Service

DEFAULT_CONFIG = Path("slo-engine.yaml")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

log = logging.getLogger("slo_engine.service")


def register(commands: Commands) -> None:
    run = commands.add_parser("run", help="the service: evaluate burn rates, refresh budgets, "
                              "page and notify on Slack, serve the HTTP API, until SIGTERM")
    config_argument(run)
    run.add_argument("--log-level", default="INFO",
                     choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    run.set_defaults(handler=_run)

    config = commands.add_parser("config", help="the engine config (slo-engine.yaml)")
    actions = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="list every problem of the config, its SLO "
                               "files and its routing; --connect also tries Prometheus and "
                               "Slack")
    config_argument(check)
    check.add_argument("--connect", action="store_true",
                       help="also query Prometheus and ask Slack who the token is")
    check.set_defaults(handler=_check)


def config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, metavar="FILE",
                        help=f"engine config (default {DEFAULT_CONFIG})")


def _run(args: argparse.Namespace) -> int:
    from slo_engine.config import load_config
    from slo_engine.service.engine import Engine
    from slo_engine.service.http_api import HttpServer, create_app
    from slo_engine.service.scheduler import EngineScheduler, serve

    logging.basicConfig(level=args.log_level, format=LOG_FORMAT, stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
    if args.log_level != "DEBUG":  # every job run, every retried connection: the engine
        logging.getLogger("apscheduler").setLevel(logging.WARNING)  # logs what matters
        logging.getLogger("urllib3").setLevel(logging.ERROR)
        logging.getLogger("psycopg.pool").setLevel(logging.ERROR)  # StateErrors say it
    config = load_config(args.config)
    engine = Engine.from_config(config)
    try:
        scheduler = EngineScheduler(engine, config.schedule)
        server = HttpServer(create_app(engine, config.http, engine.web_view()),
                            config.http.listen)
        server.start()
    except BaseException:
        engine.close()
        raise
    slos = sum(len(s.slos) for s in engine.services)
    log.info("slo-engine running: %d SLOs of %d services, paging mode %s, HTTP on port %d, "
             "Prometheus %s, replica %s", slos, len(engine.services), config.paging,
             server.port, redact(config.prometheus.url), engine.leadership.replica_id)

    def stop() -> None:
        server.stop()
        engine.close()

    serve(scheduler, on_stop=stop)
    return 0


class RedactingFilter(logging.Filter):
    """Masks URL credentials in every record the service logs, whoever wrote it (a library's
    exception text may quote the URL it was given)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        shown = redact(message)
        if shown != message:
            record.msg, record.args = shown, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def _check(args: argparse.Namespace) -> int:
    from slo_engine.config import load_config
    from slo_engine.errors import SpecError

    try:
        config = load_config(args.config)
    except SpecError as error:
        for issue in error.issues:
            print(f"problem: {issue}")
        print(f"{args.config}: {_count(len(error.issues), 'problem')}")
        return 1
    problems, notes = config_problems(config, connect=args.connect)
    for note in notes:
        print(redact(f"ok: {note}"))
    for problem in problems:
        print(redact(f"problem: {problem}"))
    print(f"{args.config}: {_count(len(problems), 'problem')}")
    return 1 if problems else 0


def config_problems(config: EngineConfig, *, connect: bool = False) -> tuple[
        list[str], list[str]]:
    """Every problem that would keep `run` from working as configured, and what was found
    fine. Secrets never appear in either."""
    from slo_engine import app
    from slo_engine.config import routing_issues
    from slo_engine.errors import ConfigError, SpecError
    from slo_engine.service.scheduler import digest_trigger

    problems: list[str] = []
    notes: list[str] = []
    services: list[Service] = []
    try:
        services = app.validate(config.slo_files)
        notes.append(f"{sum(len(s.slos) for s in services)} SLOs of {len(services)} services "
                     f"in {', '.join(map(str, config.slo_files))}")
    except SpecError as error:
        problems.extend(str(issue) for issue in error.issues)
    owners = {slo.owner for service in services for slo in service.slos}
    problems.extend(routing_issues(config, owners))
    if config.state.url is None:
        problems.extend(_state_problems(config.state.path))
    else:
        notes.append(f"state in PostgreSQL at {config.state.location}"
                     + ("" if connect else " (--connect opens it)"))
    try:
        digest_trigger(config.schedule.digest_cron)
    except ConfigError as error:
        problems.append(str(error))
    if not any(t.get_secret_value() for t in config.http.tokens):
        message = ("http.tokens is empty: POST /api/v1/changes and /api/v1/alertmanager "
                   "answer 401; add a token, e.g. tokens: [${SLO_ENGINE_TOKEN}]")
        if config.paging == "alertmanager":
            problems.append(f"{message} (paging is alertmanager: no page would arrive)")
        else:
            notes.append(f"warning: {message}")
    if not config.slack.dry_run and (config.slack.token is None
                                     or not config.slack.token.get_secret_value().strip()):
        problems.append("no Slack token: set slack.token: ${SLACK_BOT_TOKEN} and export it, "
                        "or slack.dry_run: true to print messages instead")
    if connect:
        _connect(config, services, problems, notes)
    return problems, notes


def _state_problems(path: Path) -> list[str]:
    """Whether the state database could be created or written there, and whether `run`
    would refuse the one that is there, without creating or changing it."""
    from slo_engine.storage.sqlite import check_state, fresh_start_hint

    problems = [f"{problem}: {fresh_start_hint(path)}"
                for problem in check_state(path).problems]
    target = path if path.exists() else next(
        (p for p in path.parents if p.exists()), Path("."))
    if target.exists() and not target.is_dir() and target != path:
        return [*problems, f"state.path {path}: {target} is a file, not a directory"]
    if not os.access(target, os.W_OK):
        return [*problems, f"state.path {path}: {target} is not writable by this user; choose "
                "a writable path or fix its permissions"]
    return problems


def _connect(config: EngineConfig, services: list[Service], problems: list[str],
             notes: list[str]) -> None:
    from slo_engine.errors import SloEngineError, SourceError
    from slo_engine.prometheus.source import PrometheusSource
    from slo_engine.spec.conventions import SERVICE_LABEL, SLO_LABEL, TOTAL_EVENTS_RATE
    from slo_engine.spec.durations import parse_duration

    try:
        with PrometheusSource(config.prometheus.url, config.prometheus.header_values(),
                              parse_duration(config.prometheus.timeout), retries=0) as source:
            found = source.instant(f"count by ({SERVICE_LABEL}, {SLO_LABEL}) "
                                   f"({TOTAL_EVENTS_RATE})")
        recorded = {(i["metric"].get(SERVICE_LABEL), i["metric"].get(SLO_LABEL))
                    for i in found}
        missing = sorted(f"{slo.service}/{slo.name}" for service in services
                         for slo in service.slos if (slo.service, slo.name) not in recorded)
        notes.append(f"Prometheus at {redact(config.prometheus.url)} answers")
        if missing:
            notes.append(f"warning: no recorded series yet for {_count(len(missing), 'SLO')} "
                         f"({', '.join(missing[:10])}{', …' if len(missing) > 10 else ''}): "
                         "load the rules `slo-engine compile` writes into Prometheus")
    except SourceError as error:
        problems.append(str(error))
    if config.state.url is not None:
        from slo_engine.storage.postgres import schema_version

        try:
            version = schema_version(config.state.url.get_secret_value())
            notes.append(f"PostgreSQL state answers, schema version {version}" + (
                "" if version else " (the first start, or `state migrate`, creates it)"))
        except SloEngineError as error:
            problems.append(str(error))
    if config.slack.dry_run:
        notes.append("slack.dry_run: messages are printed, not sent")
        return
    if config.slack.token is None or not config.slack.token.get_secret_value().strip():
        return  # reported above
    try:
        from slo_engine.paging.slack import SlackDelivery

        notes.append(f"Slack token accepted: {SlackDelivery(config.slack).identity()}")
    except SloEngineError as error:
        problems.append(str(error))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"
