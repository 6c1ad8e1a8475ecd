"""`modelledger history MDEP`: the revision history as a table, who did each change (verified or not),
and whether the chain, its signatures and the status seal verify against the published keys.

`-o json|yaml` prints the same as a document: the history entries verbatim from the status (hashes and
signatures included, so they can be checked again), the serving state, and the verdict."""

from __future__ import annotations

import argparse
import os
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from modelledger.adapters import keys
from modelledger.api import HistoryEntry, ModelDeployment
from modelledger.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    Cluster,
    add_cluster_args,
    add_output_arg,
    console,
    one_namespace,
    parse_deployment,
    table,
    write_document,
)
from modelledger.core import trust
from modelledger.core.actors import UNVERIFIED
from modelledger.core.signing import Keyring

# The verdict over the chain, signatures and seal: (word printed, word in -o json|yaml, colour).
VERDICTS = {
    "Signed": ("verified", "verified", "green"),
    "Unsigned": ("UNSIGNED", "unsigned", "yellow"),
    "Tampered": ("BROKEN", "broken", "red"),
}


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "history", help="show a deployment's revision history", description=__doc__
    )
    parser.add_argument("deployment")
    parser.add_argument(
        "--operator-namespace",
        default=os.environ.get("MODELLEDGER_OPERATOR_NAMESPACE", keys.DEFAULT_NAMESPACE),
        help="where the operator publishes its public keys (default: %(default)s)",
    )
    add_output_arg(parser)
    add_cluster_args(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    one_namespace(args, "a ModelDeployment's history")
    cluster = Cluster(args)
    raw = cluster.get_deployment(args.deployment)
    md = parse_deployment(raw)
    status = md.status
    try:
        keyring = keys.read_keyring(kubernetes.client.CoreV1Api(cluster.client), args.operator_namespace)
    except ApiException:
        keyring = Keyring()
    check: trust.HistoryCheck | None = None
    if keyring.keys:
        subject = trust.Subject(cluster.namespace, args.deployment, str(md.metadata.get("uid", "")))
        check = (
            trust.check_status(status, keyring, subject, limit=md.spec.revision_history_limit)
            if status is not None
            else trust.HistoryCheck(trust.Verdict.SIGNED)
        )
    code = EXIT_OK if check is None or check.verdict is trust.Verdict.SIGNED else EXIT_FAILED
    if args.output in ("json", "yaml"):
        write_document(document(raw, check, args.operator_namespace), args.output)
        return code
    print_table(md, cluster.namespace, args.deployment, wide=args.output == "wide")
    if check is None:
        console.print(
            f"signatures: [yellow]not checked[/] (no public keys readable in {args.operator_namespace}; "
            "`modelledger audit verify --public-key FILE` checks them)",
            highlight=False,
        )
    else:
        label, _, colour = VERDICTS[check.verdict.value]
        console.print(f"chain: [{colour}]{label}[/] ({check.describe()})", highlight=False)
    console.print("(* serving)", style="dim")
    return code


def document(
    raw: dict[str, Any], check: trust.HistoryCheck | None, operator_namespace: str
) -> dict[str, Any]:
    """The history as data: the status's entries verbatim, what serves, and the verdict."""
    metadata = raw.get("metadata") or {}
    status = raw.get("status") or {}
    if check is None:
        verification = {
            "result": "notChecked",
            "detail": f"no public keys readable in {operator_namespace}",
        }
    else:
        verification = {"result": VERDICTS[check.verdict.value][1], "detail": check.describe()}
    return {
        "namespace": metadata.get("namespace"),
        "name": metadata.get("name"),
        "uid": metadata.get("uid"),
        "phase": status.get("phase"),
        "desiredVersion": status.get("desiredVersion"),
        "servingVersion": status.get("servingVersion"),
        "currentRevision": status.get("currentRevision"),
        "stableRevision": status.get("stableRevision"),
        "quarantined": list(status.get("quarantined") or []),
        "history": list(status.get("history") or []),
        "historyWatermark": status.get("historyWatermark"),
        "verification": verification,
    }


def _commit(entry: HistoryEntry) -> str:
    """The Git commit behind a Deploy (docs/gitops.md#lineage), or why it is not known."""
    lineage = entry.gitops
    if lineage is None:
        return ""
    return (lineage.revision or "?")[:12] if lineage.trusted else f"unavailable: {lineage.reason}"


def print_table(md: ModelDeployment, namespace: str, name: str, *, wide: bool) -> None:
    status = md.status
    entries = status.history if status else []
    columns = ["REVISION", "VERSION", "CAUSE", "ACTOR", "APPROVERS", "AT", "STABLE", "REASON", "SIGNED"]
    if wide:
        columns += ["REQUEST", "COMMIT", "ARTIFACT", "IMAGE", "HASH"]
    rows = table(f"ModelDeployment {namespace}/{name}", columns)
    for entry in entries:
        serving = status is not None and entry.revision == status.current_revision
        reason = entry.reason or ""
        if entry.evidence is not None:
            reason += (
                f" [{entry.evidence.value} {entry.evidence.comparator.value} {entry.evidence.threshold}]"
            )
        cells = [
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
        ]
        if wide:
            pipeline = entry.pipeline
            cells += [
                entry.request_name or "",
                _commit(entry),
                pipeline.artifact_digest.removeprefix("sha256:")[:12] if pipeline else "",
                pipeline.image if pipeline else "",
                entry.hash.removeprefix("sha256:")[:12],
            ]
        rows.add_row(*cells)
    console.print(rows)
    if status is not None:
        console.print(
            f"phase {status.phase.value if status.phase else '-'}, serving {status.serving_version}, "
            f"desired {status.desired_version}"
            + (f", quarantined {', '.join(status.quarantined)}" if status.quarantined else ""),
            highlight=False,
        )
