"""Argument types shared by the subcommands."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import TypeAlias

from slo_engine.durations import parse_duration

Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def duration(text: str) -> timedelta:
    try:
        return timedelta(seconds=parse_duration(text))
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
