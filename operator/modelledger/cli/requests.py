"""`modelledger rollback | mark-stable | retry | approve`: a person's request, as a ModelDeploymentRequest.

The command creates the request object and waits for the operator's answer in its status. Admission
stamps (or verifies) `spec.requester` with the identity the apiserver authenticated, so what the client
claims is never what is recorded; the CLI fills it in from a SelfSubjectReview, which admission then
checks. Exit codes: 0 applied; 1 rejected, expired, or no answer in time; 3 not found or forbidden.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, cast

from kubernetes.client.exceptions import ApiException

from modelledger.api import (
    TERMINAL_PHASES,
    ModelDeploymentRequestSpec,
    RequestAction,
    Requester,
    RequestPhase,
)
from modelledger.api.common import GROUP, VERSION
from modelledger.cli.common import (
    EXIT_FAILED,
    Cluster,
    add_cluster_args,
    api_error,
    console,
    deadline,
    fail,
    format_seconds,
    one_namespace,
)

PLURAL = "modeldeploymentrequests"


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    rollback = subparsers.add_parser(
        "rollback", help="roll a deployment back (default: to its newest stable revision)"
    )
    rollback.add_argument("deployment")
    rollback.add_argument("--to-revision", type=int, help="the revision to return to")
    rollback.add_argument("--reason", required=True, help="why: recorded in the history")
    rollback.set_defaults(handler=_handler(RequestAction.ROLLBACK))

    mark = subparsers.add_parser("mark-stable", help="mark a revision stable (default: the serving one)")
    mark.add_argument("deployment")
    mark.add_argument("--revision", type=int, help="the revision to mark")
    mark.add_argument("--reason", default="", help="why: recorded in the audit trail")
    mark.set_defaults(handler=_handler(RequestAction.MARK_STABLE))

    retry = subparsers.add_parser(
        "retry", help="lift the quarantine on the desired version so it deploys again"
    )
    retry.add_argument("deployment")
    retry.add_argument("--reason", default="", help="why: recorded in the audit trail")
    retry.set_defaults(handler=_handler(RequestAction.RETRY))

    approve = subparsers.add_parser("approve", help="approve another person's pending request (four-eyes)")
    approve.add_argument("request", help="the ModelDeploymentRequest to approve")
    approve.add_argument("--reason", default="", help="why: recorded in the audit trail")
    approve.set_defaults(handler=_handler(RequestAction.APPROVE))

    for parser in (rollback, mark, retry, approve):
        add_cluster_args(
            parser,
            timeout=60.0,
            timeout_help="how long to wait for the operator's answer (exit 1 without one; exit 4 when the "
            "apiserver does not answer): 30s, 2m, or seconds (default: 1m; 0: do not wait)",
        )
        parser.set_defaults(waits=True)  # --timeout is a wait: its API requests get common.WAIT_GRACE


def _handler(action: RequestAction) -> Any:
    def handle(args: argparse.Namespace) -> int:
        return submit(args, action)

    return handle


def _spec(cluster: Cluster, args: argparse.Namespace, action: RequestAction) -> ModelDeploymentRequestSpec:
    user = cluster.user_info()
    requester = Requester(username=user.username, uid=user.uid, groups=list(user.groups)) if user else None
    if action is RequestAction.APPROVE:
        target = cluster.get_object(PLURAL, args.request, "ModelDeploymentRequest")
        deployment = str(target.get("spec", {}).get("deployment", ""))
        return ModelDeploymentRequestSpec(
            deployment=deployment,
            action=action,
            approves=args.request,
            reason=args.reason,
            requester=requester,
        )
    revision = getattr(args, "to_revision", None) or getattr(args, "revision", None)
    return ModelDeploymentRequestSpec(
        deployment=args.deployment, action=action, revision=revision, reason=args.reason, requester=requester
    )


def submit(args: argparse.Namespace, action: RequestAction) -> int:
    one_namespace(args, "a request")
    cluster = Cluster(args)
    try:
        spec = _spec(cluster, args, action)
    except ValueError as error:
        fail(f"invalid request: {error}")
    if action is not RequestAction.APPROVE:
        cluster.get_deployment(spec.deployment)  # a clear "not found" before anything is created
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeploymentRequest",
        "metadata": {"generateName": f"{spec.deployment}-{action.value.lower()}-"},
        "spec": spec.to_wire(),
    }
    try:
        created = cast(
            dict[str, Any],
            cluster.objects.create_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL, body),
        )
    except ApiException as error:
        api_error(error, f"{action.value} request on ModelDeployment {spec.deployment}")
    name = created["metadata"]["name"]
    who = (created.get("spec", {}).get("requester") or {}).get("username", "?")
    console.print(f"{action.value} request [bold]{name}[/] created by {who}", highlight=False)
    if args.timeout <= 0:
        return 0
    return wait(cluster, name, args.timeout)


def wait(cluster: Cluster, name: str, timeout: float) -> int:
    """Wait for the request to be decided; print the outcome; the exit code says which."""
    armed = deadline()  # --timeout counts from the command's start, when main armed it
    until = armed.soft if armed is not None else time.monotonic() + timeout
    announced = ""
    while True:
        status = cluster.get_object(PLURAL, name, "ModelDeploymentRequest").get("status") or {}
        phase = status.get("phase")
        if phase in {p.value for p in TERMINAL_PHASES}:
            applied = phase == RequestPhase.APPLIED.value
            colour = "green" if applied else "red"
            console.print(f"[{colour}]{phase}[/]: {status.get('message', '')}", highlight=False)
            return 0 if applied else EXIT_FAILED
        if phase == RequestPhase.PENDING.value and status.get("message") and status["message"] != announced:
            announced = status["message"]
            console.print(f"[yellow]Pending[/]: {announced}", highlight=False)
        left = until - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(0.5, left))
    fail(
        f"no decision on {name} within {format_seconds(timeout)} (is the operator running? does it wait for "
        "approvals?); the request stays pending",
        EXIT_FAILED,
    )
