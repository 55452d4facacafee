"""The `vramguard` command line: argparse subcommands, one module each under `commands/`.

Exit codes: 0 within criteria, 1 a leak or a criterion missed, 2 bad input or usage.
Bad input is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from vramguard import __version__
from vramguard.commands import agent, analyze, churn, probe, run, soak, watch
from vramguard.errors import UsageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_COMMANDS = (probe, watch, run, analyze, soak, churn, agent)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, raised rather than printed."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vramguard",
        description="Measure, detect and prevent GPU memory growth in video encoders.",
    )
    parser.add_argument("--version", action="version", version=f"vramguard {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for command in _COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand and return its exit code."""
    try:
        args = build_parser().parse_args(argv)
        code: int = args.run(args)
        return code
    except UsageError as exc:
        print(f"vramguard: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("vramguard: interrupted", file=sys.stderr)
        return 130
