"""Entry point of `modelledger`, and of `kubectl-modelledger` (so `kubectl modelledger ...` works).

Each subcommand module exposes `register(subparsers)`, which adds its parser and sets `handler` (a
function from the parsed arguments to an exit code). Only the module of the command run is imported
(all of them for `--help` and `completion`), so `lint` starts without the kubernetes client."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence

from modelledger.cli.common import EXIT_FAILED, command_timeout, is_connection_error, unreachable

Handler = Callable[[argparse.Namespace], int]

# The command each module registers, in the order `--help` lists them.
COMMANDS: dict[str, str] = {
    "run": "run",
    "crds": "crds",
    "lint": "lint",
    "register": "register",
    "list": "listing",
    "status": "status",
    "history": "history",
    "rollback": "requests",
    "mark-stable": "requests",
    "retry": "requests",
    "approve": "requests",
    "report": "report",
    "audit": "audit",
    "version": "version",
    "completion": "completion",
}
# kubectl's global flags, which a plugin user writes before the command (`kubectl modelledger -n ns
# history x`); argparse only knows them on the subcommands, so they are moved behind it. `--timeout`
# (kubectl's `--request-timeout`) is one of them: every command that talks to the cluster takes it.
GLOBAL_FLAGS = ("-n", "--namespace", "--kubeconfig", "--context", "--timeout")
GLOBAL_SWITCHES = ("-A", "--all-namespaces")  # the same, without a value


def program_name(argv0: str) -> str:
    return "kubectl modelledger" if os.path.basename(argv0).startswith("kubectl-") else "modelledger"


def hoist_global_flags(argv: Sequence[str]) -> list[str]:
    """Move kubectl-style global flags given before the command to its end, where argparse finds them."""
    leading: list[str] = []
    rest = list(argv)
    while rest and rest[0].startswith("-") and rest[0] not in ("-h", "--help"):
        flag = rest.pop(0)
        name = flag.split("=", 1)[0]
        known = name in GLOBAL_FLAGS or name in GLOBAL_SWITCHES
        if not known and not (name.startswith("-n") and len(name) > 2):
            rest.insert(0, flag)
            break
        leading.append(flag)
        if "=" not in flag and name in GLOBAL_FLAGS and rest:
            leading.append(rest.pop(0))  # the flag's value
    return [*rest, *leading]


def build_parser(prog: str = "modelledger", only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or (`only`) just the parser of one command, which imports less."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Version control and automatic rollback of deployed ML models.",
        epilog="Exit codes: 0 ok; 1 verification failed, gate not met, request Rejected or Expired; "
        "2 usage; 3 not found or forbidden; 4 cluster or Prometheus unreachable; 5 unsigned entries "
        "(audit verify). Details: docs/cli.md.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = [COMMANDS[only]] if only in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        importlib.import_module(f"modelledger.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = hoist_global_flags(sys.argv[1:] if argv is None else argv)
    command = arguments[0] if arguments and not arguments[0].startswith("-") else None
    args = build_parser(program_name(sys.argv[0]), only=command).parse_args(arguments)
    # The client retries a refused connection and logs each retry: one error line is what a person
    # (and a CI log) should see. `run` configures logging its own way.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    handler: Handler = args.handler
    try:
        with command_timeout(args):
            return handler(args)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): say nothing more, as other command-line tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as error:
        if is_connection_error(error):
            unreachable(error)
        raise


if __name__ == "__main__":
    sys.exit(main())
