"""`modelledger rollback | mark-stable | retry`: a person's request, written into the ModelDeployment's
status subresource (never its spec, so RBAC can grant requests apart from spec edits). The operator
consumes each request exactly once and records the outcome under the request's id, which these
commands wait for and print.
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from modelledger.api import HumanRequest, RequestKind, RequestOutcome
from modelledger.api.common import GROUP, VERSION
from modelledger.cli.common import EXIT_FAILED, Cluster, add_cluster_args, api_error, console, fail

MERGE = "application/merge-patch+json"


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    rollback = subparsers.add_parser(
        "rollback", help="roll a deployment back (default: to its newest stable revision)"
    )
    rollback.add_argument("deployment")
    rollback.add_argument("--to-revision", type=int, help="the revision to return to")
    rollback.add_argument("--reason", required=True, help="why: recorded in the history")
    rollback.set_defaults(handler=_handler(RequestKind.ROLLBACK))

    mark = subparsers.add_parser("mark-stable", help="mark a revision stable (default: the serving one)")
    mark.add_argument("deployment")
    mark.add_argument("--revision", type=int, help="the revision to mark")
    mark.add_argument("--reason", default="", help="why: recorded in the audit trail")
    mark.set_defaults(handler=_handler(RequestKind.MARK_STABLE))

    retry = subparsers.add_parser(
        "retry", help="lift the quarantine on the desired version so it deploys again"
    )
    retry.add_argument("deployment")
    retry.add_argument("--reason", default="", help="why: recorded in the audit trail")
    retry.set_defaults(handler=_handler(RequestKind.RETRY))

    for parser in (rollback, mark, retry):
        parser.add_argument(
            "--timeout",
            type=float,
            default=60.0,
            help="seconds to wait for the operator's answer (0: do not wait)",
        )
        add_cluster_args(parser)


def _handler(kind: RequestKind) -> Any:
    def handle(args: argparse.Namespace) -> int:
        return submit(args, kind)

    return handle


def submit(args: argparse.Namespace, kind: RequestKind) -> int:
    cluster = Cluster(args)
    request = HumanRequest(
        id=f"{kind.value.lower()}-{uuid.uuid4().hex[:10]}",
        kind=kind,
        requested_by=cluster.whoami(),
        reason=args.reason,
        to_revision=getattr(args, "to_revision", None),
        revision=getattr(args, "revision", None),
        at=datetime.now(UTC),
    )
    _append_request(cluster, args.deployment, request)
    console.print(
        f"{kind.value} request [bold]{request.id}[/] sent by {request.requested_by}", highlight=False
    )
    if args.timeout <= 0:
        return 0
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        status = cluster.get_deployment(args.deployment).get("status") or {}
        handled = next((h for h in status.get("handledRequests") or [] if h.get("id") == request.id), None)
        if handled is not None:
            applied = handled.get("outcome") == RequestOutcome.APPLIED.value
            colour = "green" if applied else "red"
            console.print(
                f"[{colour}]{handled.get('outcome')}[/]: {handled.get('message', '')}", highlight=False
            )
            return 0 if applied else EXIT_FAILED
        time.sleep(0.5)
    fail(
        f"no answer from the operator within {args.timeout:g} s (is it running?); "
        f"the request {request.id} stays queued",
        EXIT_FAILED,
    )


def _append_request(cluster: Cluster, name: str, request: HumanRequest, attempts: int = 5) -> None:
    """Add to status.requests under the read resourceVersion, so concurrent writers never lose one."""
    for _ in range(attempts):
        raw = cluster.get_deployment(name)
        pending = list((raw.get("status") or {}).get("requests") or [])
        patch = {
            "metadata": {"resourceVersion": raw["metadata"]["resourceVersion"]},
            "status": {"requests": [*pending, request.to_wire()]},
        }
        try:
            cluster.objects.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                cluster.namespace,
                "modeldeployments",
                name,
                patch,
                field_manager="modelledger-cli",
                _content_type=MERGE,
            )
            return
        except ApiException as error:
            if error.status != 409:
                api_error(error, f"request on ModelDeployment {name}")
    fail(f"ModelDeployment {name} kept changing; try again", EXIT_FAILED)
