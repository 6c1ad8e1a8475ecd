"""`modelledger audit verify [MDEP] [--file PATH]`: recompute the hash chains and name the first entry
that was altered, removed or reordered (exit 1), in a deployment's status history, in the audit JSONL
file, and between the two (a history rewritten with recomputed hashes no longer matches the log)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modelledger.api import ModelDeployment
from modelledger.cli.common import (
    EXIT_FAILED,
    Cluster,
    add_cluster_args,
    console,
    fail,
    list_objects,
    parse_deployment,
    table,
)
from modelledger.core import audit_chain, history
from modelledger.core.history import GENESIS


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    audit = subparsers.add_parser("audit", help="check the audit trail")
    commands = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify = commands.add_parser(
        "verify",
        help="verify the hash chains of histories and of the audit log",
        description=__doc__,
    )
    verify.add_argument(
        "deployment", nargs="?", help="the ModelDeployment (default: all in the namespace, unless --file)"
    )
    verify.add_argument(
        "--file", type=Path, help="an audit JSONL file written by `modelledger run --audit-log`"
    )
    verify.add_argument(
        "--anchor",
        default=GENESIS,
        help="the hash the file's first line links to (the previous file's last hash, after rotation)",
    )
    add_cluster_args(verify)
    verify.set_defaults(handler=run)


def read_log(path: Path) -> list[str]:
    try:
        with path.open(encoding="utf-8", errors="replace") as source:
            return list(source)
    except OSError as error:
        fail(f"cannot read the audit log: {error}")


def run(args: argparse.Namespace) -> int:
    rows = table("Audit verification", ["SUBJECT", "RESULT", "DETAIL"])
    broken = False
    records: list[tuple[int, dict[str, Any]]] = []
    if args.file is not None:
        lines = read_log(args.file)
        result = audit_chain.verify_lines(lines, anchor=args.anchor)
        records = [(n, r) for n, r, _ in audit_chain.parse_lines(lines) if r is not None]
        detail = f"{result.records} records, last hash {result.tip.hash.removeprefix('sha256:')[:12] or '-'}"
        if result.broken is not None:
            detail = result.broken.describe()
        rows.add_row(f"audit log {args.file}", _verdict(result.ok), detail)
        broken |= not result.ok
    if args.deployment is not None or args.file is None:
        cluster = Cluster(args)
        raw = (
            [cluster.get_deployment(args.deployment)]
            if args.deployment
            else list_objects(cluster, "modeldeployments")
        )
        for item in raw:
            broken |= _verify_deployment(cluster.namespace, item, records if args.file else None, rows)
        if not raw:
            rows.add_row(f"namespace {cluster.namespace}", "-", "no ModelDeployment")
    console.print(rows)
    return EXIT_FAILED if broken else 0


def _verify_deployment(
    namespace: str, raw: dict[str, Any], records: list[tuple[int, dict[str, Any]]] | None, rows: Any
) -> bool:
    """Adds the deployment's rows; returns True when something is broken."""
    name = raw.get("metadata", {}).get("name", "?")
    try:
        md: ModelDeployment = parse_deployment(raw)
    except ValidationError as error:
        rows.add_row(
            f"{namespace}/{name} history", _verdict(False), f"unreadable: {error.errors()[0]['msg']}"
        )
        return True
    entries = md.status.history if md.status else []
    problem = history.verify(entries, limit=md.spec.revision_history_limit)
    detail = (
        f"{len(entries)} revisions" if problem is None else f"revision {problem.revision}: {problem.problem}"
    )
    rows.add_row(f"{namespace}/{name} history", _verdict(problem is None), detail)
    broken = problem is not None
    if records is not None:
        mismatch = audit_chain.cross_check(namespace, name, entries, records)
        detail = (
            "every logged revision matches"
            if mismatch is None
            else (f"revision {mismatch.revision}: {mismatch.problem}")
        )
        rows.add_row(f"{namespace}/{name} vs audit log", _verdict(mismatch is None), detail)
        broken |= mismatch is not None
    return broken


def _verdict(ok: bool) -> str:
    return "[green]verified[/]" if ok else "[bold red]BROKEN[/]"
