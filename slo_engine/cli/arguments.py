"""Argument types shared by the subcommands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from slo_engine.errors import SloEngineError, SpecError, SpecWarning
from slo_engine.redaction import redact
from slo_engine.spec.durations import parse_duration

if TYPE_CHECKING:
    from slo_engine.config import EngineConfig
    from slo_engine.storage.interface import StateStore

Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def print_error(error: SloEngineError) -> None:
    """A user's mistake as every command shows it: each located issue and their count, or
    one `error:` line; never a traceback."""
    if isinstance(error, SpecError):
        print(error, file=sys.stderr)
        print_warnings(error.warnings)
        count = len(error.issues)
        print(f"{count} error{'s' if count != 1 else ''} found", file=sys.stderr)
    else:
        print(redact(f"error: {error}"), file=sys.stderr)


def print_warnings(warnings: Iterable[SpecWarning]) -> None:
    """Located warnings, one a line on stderr, like errors; they never change the exit code."""
    for warning in warnings:
        print(warning, file=sys.stderr)


def duration(text: str) -> timedelta:
    try:
        return timedelta(seconds=parse_duration(text))
    except OverflowError:
        raise argparse.ArgumentTypeError(f"{text!r} is too long a duration") from None
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def moment(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time; use ISO 8601, e.g. 2026-05-12T14:00:00Z") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def slo_paths(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="SLO files or directories")


DEFAULT_STATE = Path(".slo-engine/state.db")


def state_arguments(parser: argparse.ArgumentParser) -> None:
    """Commands that read or record changes and incidents find the state database here."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--config", type=Path, default=None, metavar="FILE",
                       help="engine config (slo-engine.yaml); its state.path or state.url "
                       "is used")
    where.add_argument("--state", type=Path, default=None, metavar="FILE",
                       help=f"state database (SQLite); default {DEFAULT_STATE}")


def engine_config(args: argparse.Namespace) -> EngineConfig | None:
    from slo_engine.config import load_config

    return load_config(args.config) if getattr(args, "config", None) is not None else None


def state_path(args: argparse.Namespace) -> Path:
    """--state, else the --config's state.path, else the default: the SQLite file only,
    for the commands that inspect one (a config whose state is PostgreSQL is refused)."""
    from slo_engine.errors import StateError

    config = engine_config(args)
    if config is not None:
        if config.state.url is not None:
            raise StateError(f"'slo-engine {args.command} {args.action}' works on a SQLite "
                             f"state file, but {args.config} keeps the state in PostgreSQL "
                             f"({config.state.location}): use `slo-engine state migrate "
                             f"--config {args.config}`, or psql")
        return config.state.path
    path: Path = getattr(args, "state", None) or DEFAULT_STATE
    return path


def open_state(args: argparse.Namespace) -> StateStore:
    """The state store of --config (SQLite or PostgreSQL), else the SQLite file of --state."""
    from slo_engine.storage.opening import open_store
    from slo_engine.storage.sqlite import StateDB

    config = engine_config(args)
    if config is not None:
        return open_store(config.state)
    return StateDB(getattr(args, "state", None) or DEFAULT_STATE)
