"""`modelledger list [-n NS | -A]`: the ModelDeployments, what each serves and how it stands.

`-o json|yaml` prints a kubectl-style `List` of the objects as the apiserver returns them (without
`managedFields`, as kubectl); `-o name` one `modeldeployment.modelledger.io/NAME` per line."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from modelledger.cli.common import (
    OUTPUT_FORMATS,
    Cluster,
    add_cluster_args,
    add_output_arg,
    all_namespaces,
    list_objects,
    plain_table,
    write_document,
)
from modelledger.cli.status import judge

RESOURCE = "modeldeployment.modelledger.io"


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "list",
        help="list ModelDeployments: desired and serving version, phase, revisions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_output_arg(parser, (*OUTPUT_FORMATS, "name"))
    add_cluster_args(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    every = all_namespaces(args)
    cluster = Cluster(args)
    items = list_objects(cluster, "modeldeployments", every_namespace=every)
    items.sort(key=lambda item: (_meta(item, "namespace"), _meta(item, "name")))
    if args.output in ("json", "yaml"):
        write_document(document(items), args.output)
    elif args.output == "name":
        sys.stdout.write("".join(f"{RESOURCE}/{_meta(item, 'name')}\n" for item in items))
    elif not items:
        where = "any namespace" if every else f"namespace {cluster.namespace}"
        sys.stderr.write(f"No ModelDeployments found in {where}.\n")
    else:
        headers, rows = table(items, every=every, wide=args.output == "wide")
        sys.stdout.write(plain_table(headers, rows))
    return 0


def document(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A `List` as `kubectl get -o json` prints it."""
    return {
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": [_without_managed_fields(item) for item in items],
    }


def _without_managed_fields(item: dict[str, Any]) -> dict[str, Any]:
    metadata = {k: v for k, v in (item.get("metadata") or {}).items() if k != "managedFields"}
    return {**item, "metadata": metadata}


def table(
    items: list[dict[str, Any]], *, every: bool, wide: bool, now: datetime | None = None
) -> tuple[list[str], list[list[str]]]:
    headers = ["NAME", "MODEL", "DESIRED", "SERVING", "PHASE", "REVISION", "STABLE", "AGE"]
    if wide:
        headers += ["REPLICAS", "QUARANTINED", "RULES", "MESSAGE"]
    if every:
        headers.insert(0, "NAMESPACE")
    now = now or datetime.now(UTC)
    rows = []
    for item in items:
        spec = item.get("spec") or {}
        status = item.get("status") or {}
        cells = [
            _meta(item, "name"),
            str(spec.get("modelName", "")),
            str(spec.get("version", "")),
            str(status.get("servingVersion") or "-"),
            str(status.get("phase") or "-"),
            str(status.get("currentRevision") or "-"),
            str(status.get("stableRevision") or "-"),
            age(_meta(item, "creationTimestamp"), now),
        ]
        if wide:
            rules = status.get("rules") or []
            cells += [
                f"{status.get('replicas', '-')}/{spec.get('replicas', 1)}",
                ",".join(status.get("quarantined") or []) or "-",
                ", ".join(f"{r.get('name')}={r.get('state')}" for r in rules) or "-",
                judge(item).message,
            ]
        if every:
            cells.insert(0, _meta(item, "namespace"))
        rows.append(cells)
    return headers, rows


def _meta(item: dict[str, Any], key: str) -> str:
    return str((item.get("metadata") or {}).get(key) or "")


def age(timestamp: str, now: datetime) -> str:
    """kubectl's short age: 45s, 12m, 3h, 2d, 400d."""
    try:
        created = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    seconds = max(int((now - created).total_seconds()), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "d" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
