"""`modelledger history MDEP`: the revision history as a table, and whether its hash chain holds."""

from __future__ import annotations

import argparse
from typing import Any

from modelledger.cli.common import Cluster, add_cluster_args, console, parse_deployment, table
from modelledger.core import history


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("history", help="show a deployment's revision history")
    parser.add_argument("deployment")
    add_cluster_args(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    cluster = Cluster(args)
    md = parse_deployment(cluster.get_deployment(args.deployment))
    status = md.status
    entries = status.history if status else []
    rows = table(
        f"ModelDeployment {cluster.namespace}/{args.deployment}",
        ["REVISION", "VERSION", "CAUSE", "ACTOR", "AT", "STABLE", "REASON", "HASH"],
    )
    for entry in entries:
        serving = status is not None and entry.revision == status.current_revision
        reason = entry.reason or ""
        if entry.evidence is not None:
            reason += (
                f" [{entry.evidence.value} {entry.evidence.comparator.value} {entry.evidence.threshold}]"
            )
        rows.add_row(
            f"{entry.revision}{' *' if serving else ''}",
            entry.version,
            entry.cause.value,
            entry.actor,
            entry.at.strftime("%Y-%m-%d %H:%M:%S"),
            "yes" if entry.stable else "",
            reason.strip(),
            entry.hash.removeprefix("sha256:")[:12],
        )
    console.print(rows)
    if status is not None:
        console.print(
            f"phase {status.phase.value if status.phase else '-'}, serving {status.serving_version}, "
            f"desired {status.desired_version}"
            + (f", quarantined {', '.join(status.quarantined)}" if status.quarantined else ""),
            highlight=False,
        )
    broken = history.verify(entries, limit=md.spec.revision_history_limit)
    console.print(
        "chain: [green]verified[/]"
        if broken is None
        else f"chain: [red]BROKEN at revision {broken.revision}[/]: {broken.problem}",
        highlight=False,
    )
    console.print("(* serving)", style="dim")
    return 0 if broken is None else 1
