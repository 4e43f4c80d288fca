"""The ``edgeae`` command line: parse, call one library function, write the result.

Each subcommand lives in its own module under ``edgeae.cli`` and exposes
``register(subparsers) -> argparse.ArgumentParser`` and ``run(args) -> int``. Command modules keep heavy
imports inside ``run`` so that ``edgeae --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from edgeae._version import __version__

# name -> module (a plain dict: easy to read and grep)
COMMANDS: dict[str, str] = {
    "demo": "edgeae.cli.demo",
    "reconstruct": "edgeae.cli.reconstruct",
    "train": "edgeae.cli.train",
    "zoo": "edgeae.cli.zoo",
    "score": "edgeae.cli.score",
    "evaluate": "edgeae.cli.evaluate",
    "export": "edgeae.cli.export",
    "downlink": "edgeae.cli.downlink",
    "ground": "edgeae.cli.ground",
    "scan": "edgeae.cli.scan",
}


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeae",
        description="Machine learning for spacecraft and ground stations: sparse-pixel reconstruction, "
        "patch anomaly detection, export to flight runtimes, CCSDS downlink and ground decoding.",
    )
    parser.add_argument("--version", action="version", version=f"edgeae {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMANDS.values():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # command not available in this build
        p = module.register(sub)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except (CLIError, FileNotFoundError, ValueError, ImportError) as exc:
        print(f"edgeae {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
