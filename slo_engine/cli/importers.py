"""`slo-engine import`: Sloth, Pyrra and OpenSLO files as slo-engine SLO files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from slo_engine import app
from slo_engine.cli.arguments import Commands, print_error
from slo_engine.errors import SpecError
from slo_engine.importers import SOURCE_FORMATS, import_texts, render


def register(commands: Commands) -> None:
    parser = commands.add_parser("import", help="convert Sloth, Pyrra or OpenSLO SLO files "
                                 "into slo-engine files, listing whatever cannot be carried")
    parser.add_argument("format", choices=SOURCE_FORMATS, help="the source files' format")
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="source files, or directories of .yml/.yaml files")
    parser.add_argument("--out", type=Path, required=True, help="directory to write "
                        "<service>.yaml files into")
    parser.add_argument("--owner", default="unknown", help="owner of the imported services "
                        "(the source formats have none; default: unknown)")
    parser.add_argument("--allow-partial", action="store_true", help="write the SLOs that "
                        "can be represented even when something cannot, and exit 0")
    parser.set_defaults(handler=_import)


def _sources(paths: list[str]) -> list[tuple[str, str]]:
    """(name, text) of every file given or under a directory given, in a stable order."""
    files: list[Path] = []
    for text in paths:
        path = Path(text)
        files.extend(sorted(p for p in path.rglob("*") if p.suffix in (".yml", ".yaml"))
                     if path.is_dir() else [path])
    return [(str(path), path.read_text(encoding="utf-8")) for path in files]


def _import(args: argparse.Namespace) -> int:
    result = import_texts(args.format, _sources(args.paths), args.owner)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    for issue in result.issues:
        print(issue, file=sys.stderr)
    if args.owner == "unknown" and result.services:
        print("note: owner set to 'unknown' (the sources name none); pass --owner TEAM",
              file=sys.stderr)
    if result.issues and not args.allow_partial:
        print(f"{len(result.issues)} thing{'s' if len(result.issues) != 1 else ''} cannot be "
              "imported; nothing written (--allow-partial writes the rest)", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    command = f"slo-engine import {args.format}"
    written = []
    for service in result.services:
        path = args.out / f"{service.service}.yaml"
        path.write_text(render(service, command), encoding="utf-8")
        written.append(path)
    try:
        if written:
            app.validate(written)
    except SpecError as error:
        print_error(error)
        print("error: the imported files do not validate; this is a bug in slo-engine import",
              file=sys.stderr)
        return 1
    slos = sum(len(s.slos) for s in result.services)
    print(f"wrote {len(written)} file{'s' if len(written) != 1 else ''} ({slos} "
          f"SLO{'s' if slos != 1 else ''}) to {args.out}"
          + (f"; {len(result.issues)} left out (see above)" if result.issues else ""))
    return 0
