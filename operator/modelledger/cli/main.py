"""Entry point of `modelledger`. Each subcommand module exposes `register(subparsers)`, which adds its
parser and sets `handler` (a function from the parsed arguments to an exit code)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from modelledger.cli import crds, history, requests, run

Handler = Callable[[argparse.Namespace], int]

COMMANDS = (crds, run, history, requests)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelledger",
        description="Version control and automatic rollback of deployed ML models.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
