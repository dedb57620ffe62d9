"""The `slo-engine` command: thin shells over `app`; user errors print without a traceback.

Each module of this package registers the subcommands of one part of the product.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from slo_engine.cli import (
    budget,
    changes,
    dashboards,
    demo,
    importers,
    notify,
    release,
    service,
    specs,
    state,
    web,
)
from slo_engine.cli.arguments import print_error
from slo_engine.errors import SloEngineError
from slo_engine.extras import missing_extra

COMMAND_GROUPS = (specs, importers, budget, changes, release, notify, service, web, state,
                  demo, dashboards)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slo-engine",
        description="SLOs as code: Prometheus rules, error budgets, Slack pages, release gates.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code: int = args.handler(args)
        return code
    except SloEngineError as error:
        print_error(error)
        return 1
    except ModuleNotFoundError as error:
        missing = missing_extra(error, args.command)
        if missing is None:
            raise
        print_error(missing)
        return 1
