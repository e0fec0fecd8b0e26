"""The ``st-distill`` command line.

This module only dispatches: each sub-command lives in its own module under
:mod:`st_distill.commands`, which declares its arguments (``add_arguments``) and
calls into the library (``run``). Command modules import heavy dependencies
(torch, transformers) inside ``run`` so that ``st-distill --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from st_distill import __version__
from st_distill.logs import configure_logging

# sub-command name -> module under st_distill.commands. Each module defines
# HELP (one line), add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, str] = {
    "teacher": "teacher",
    "build": "build",
    "retrieve": "retrieve",
    "eval": "eval",
    "bench": "bench",
    "report": "report",
    "mteb": "mteb",
    "export": "export",
}


def build_parser() -> argparse.ArgumentParser:
    """Builds the top-level parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog="st-distill",
        description="Train cross-encoder re-rankers by distillation with sentence-transformers.",
    )
    parser.add_argument("--version", action="version", version=f"st-distill {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level, third-party libraries and every model-loading report included")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"st_distill.commands.{module_name}")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``st-distill`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except (ValueError, OSError) as exc:
        # Input errors name the file and line, OS errors the path: print them without a traceback
        # (with --verbose, the traceback is logged too).
        logging.getLogger("st_distill").debug("%s failed", args.command, exc_info=True)
        print(f"st-distill {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
