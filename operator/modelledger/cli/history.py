"""`modelledger history MDEP`: the revision history as a table, who did each change (verified or not),
and whether the chain, its signatures and the status seal verify against the published keys."""

from __future__ import annotations

import argparse
import os
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from modelledger.adapters import keys
from modelledger.cli.common import Cluster, add_cluster_args, console, parse_deployment, table
from modelledger.core import trust
from modelledger.core.actors import UNVERIFIED
from modelledger.core.signing import Keyring


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("history", help="show a deployment's revision history")
    parser.add_argument("deployment")
    parser.add_argument(
        "--operator-namespace",
        default=os.environ.get("MODELLEDGER_OPERATOR_NAMESPACE", keys.DEFAULT_NAMESPACE),
        help="where the operator publishes its public keys (default: %(default)s)",
    )
    add_cluster_args(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    cluster = Cluster(args)
    md = parse_deployment(cluster.get_deployment(args.deployment))
    status = md.status
    entries = status.history if status else []
    rows = table(
        f"ModelDeployment {cluster.namespace}/{args.deployment}",
        ["REVISION", "VERSION", "CAUSE", "ACTOR", "APPROVERS", "AT", "STABLE", "REASON", "SIGNED"],
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
            entry.actor
            + (" (unverified)" if entry.actor_verified is False and entry.actor != UNVERIFIED else ""),
            ", ".join(entry.approvers),
            entry.at.strftime("%Y-%m-%d %H:%M:%S"),
            ("yes by " + entry.stable_mark.actor if entry.stable_mark else "yes") if entry.stable else "",
            reason.strip(),
            "yes" if entry.signature else "no",
        )
    console.print(rows)
    if status is not None:
        console.print(
            f"phase {status.phase.value if status.phase else '-'}, serving {status.serving_version}, "
            f"desired {status.desired_version}"
            + (f", quarantined {', '.join(status.quarantined)}" if status.quarantined else ""),
            highlight=False,
        )
    try:
        keyring = keys.read_keyring(kubernetes.client.CoreV1Api(cluster.client), args.operator_namespace)
    except ApiException:
        keyring = Keyring()
    if not keyring.keys:
        console.print(
            f"signatures: [yellow]not checked[/] (no public keys readable in {args.operator_namespace}; "
            "`modelledger audit verify --public-key FILE` checks them)",
            highlight=False,
        )
        console.print("(* serving)", style="dim")
        return 0
    subject = trust.Subject(cluster.namespace, args.deployment, str(md.metadata.get("uid", "")))
    check = (
        trust.check_status(status, keyring, subject, limit=md.spec.revision_history_limit)
        if status is not None
        else trust.HistoryCheck(trust.Verdict.SIGNED)
    )
    colour = {"Signed": "green", "Unsigned": "yellow", "Tampered": "red"}[check.verdict.value]
    label = {"Signed": "verified", "Unsigned": "UNSIGNED", "Tampered": "BROKEN"}[check.verdict.value]
    console.print(f"chain: [{colour}]{label}[/] ({check.describe()})", highlight=False)
    console.print("(* serving)", style="dim")
    return 0 if check.verdict is trust.Verdict.SIGNED else 1
