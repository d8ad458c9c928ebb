"""The `abcrnn` command line: parse arguments and call the library."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from abcrnn import __version__
from abcrnn.errors import AbcrnnError

# Subcommand name -> module under abcrnn.commands. Each module defines
# add_parser(subparsers) and run(args) -> int, and imports heavy libraries lazily.
COMMANDS = {
    "corpus": "corpus",
    "train": "train",
    "generate": "generate",
    "render": "render",
    "demo": "demo",
    "check": "check",
    "evaluate": "evaluate",
    "sweep": "sweep",
    "serve": "serve",
}


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every subcommand that is installed."""
    parser = argparse.ArgumentParser(
        prog="abcrnn",
        description="Learn folk tunes in ABC notation with a character-level "
        "recurrent network, and compose, check and render new ones.",
    )
    parser.add_argument("--version", action="version", version=f"abcrnn {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log debug messages (default: off)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMANDS.values():
        try:
            module = importlib.import_module(f"abcrnn.commands.{module_name}")
        except ModuleNotFoundError as error:
            if error.name != f"abcrnn.commands.{module_name}":
                raise
            continue
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except AbcrnnError as error:
        print(f"abcrnn {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        # A full disk or an unwritable folder: name the file instead of a traceback,
        # which --verbose still logs.
        logging.getLogger(__name__).debug("traceback", exc_info=True)
        where = f": {error.filename}" if error.filename else ""
        reason = error.strerror or str(error)
        print(f"abcrnn {args.command}: error: {reason}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"abcrnn {args.command}: interrupted", file=sys.stderr)
        return 130
