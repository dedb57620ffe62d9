"""`slo-engine dashboards`: Grafana dashboards of the SLOs and their provisioning file."""

from __future__ import annotations

import argparse
from pathlib import Path

from slo_engine import app
from slo_engine.cli.arguments import Commands, slo_paths
from slo_engine.extras import ensure_installed

DEFAULT_GRAFANA_PATH = "/var/lib/grafana/dashboards/slo-engine"


def register(commands: Commands) -> None:
    parser = commands.add_parser("dashboards", help="write Grafana dashboards (an overview and "
                                 "one per service) and a provisioning file")
    slo_paths(parser)
    parser.add_argument("--out", type=Path, default=Path("dashboards"),
                        help="output directory (default: dashboards)")
    parser.add_argument("--grafana-path", default=DEFAULT_GRAFANA_PATH, metavar="DIR",
                        help="where Grafana will find the dashboards, for the provisioning "
                        f"file (default: {DEFAULT_GRAFANA_PATH})")
    parser.set_defaults(handler=_dashboards)


def _dashboards(args: argparse.Namespace) -> int:
    ensure_installed("grafana_foundation_sdk")
    written = app.write_dashboards(args.paths, args.out, args.grafana_path)
    print(f"wrote {len(written)} files to {args.out} (provisioning file: "
          f"{args.out / 'provisioning'})")
    return 0
