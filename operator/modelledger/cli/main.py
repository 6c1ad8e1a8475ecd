"""Entry point of `modelledger`, and of `kubectl-modelledger` (so `kubectl modelledger ...` works).

Each subcommand module exposes `register(subparsers)`, which adds its parser and sets `handler` (a
function from the parsed arguments to an exit code)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

import urllib3

from modelledger.cli import audit, crds, history, report, requests, run
from modelledger.cli.common import unreachable

Handler = Callable[[argparse.Namespace], int]

COMMANDS = (crds, run, history, requests, report, audit)
# kubectl's global flags, which a plugin user writes before the command (`kubectl modelledger -n ns
# history x`); argparse only knows them on the subcommands, so they are moved behind it.
GLOBAL_FLAGS = ("-n", "--namespace", "--kubeconfig", "--context")


def program_name(argv0: str) -> str:
    return "kubectl modelledger" if os.path.basename(argv0).startswith("kubectl-") else "modelledger"


def hoist_global_flags(argv: Sequence[str]) -> list[str]:
    """Move kubectl-style global flags given before the command to its end, where argparse finds them."""
    leading: list[str] = []
    rest = list(argv)
    while rest and rest[0].startswith("-") and rest[0] not in ("-h", "--help"):
        flag = rest.pop(0)
        name = flag.split("=", 1)[0]
        if name not in GLOBAL_FLAGS and not (name.startswith("-n") and len(name) > 2):
            rest.insert(0, flag)
            break
        leading.append(flag)
        if "=" not in flag and name in GLOBAL_FLAGS and rest:
            leading.append(rest.pop(0))  # the flag's value
    return [*rest, *leading]


def build_parser(prog: str = "modelledger") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Version control and automatic rollback of deployed ML models.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = hoist_global_flags(sys.argv[1:] if argv is None else argv)
    args = build_parser(program_name(sys.argv[0])).parse_args(arguments)
    handler: Handler = args.handler
    try:
        return handler(args)
    except urllib3.exceptions.HTTPError as error:  # refused, DNS, TLS, timeout: never an ApiException
        unreachable(error)


if __name__ == "__main__":
    sys.exit(main())
