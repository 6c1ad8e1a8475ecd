"""`modelledger version [--client]`: this client's version and, when the cluster answers, the
Kubernetes version and the operator's.

The operator's version is the `app.kubernetes.io/version` label of its Deployment (labelled
`app.kubernetes.io/name=modelledger`, as the chart installs it) in `--operator-namespace`; when that
cannot be read it is `unknown`, with the reason."""

from __future__ import annotations

import argparse
import os
import platform
from importlib import metadata
from typing import Any

from rich.markup import escape

from modelledger.cli.common import (
    EXIT_OK,
    EXIT_UNREACHABLE,
    OUTPUT_FORMATS,
    Cluster,
    add_cluster_args,
    add_output_arg,
    console,
    describe_unreachable,
    errors,
    is_connection_error,
    one_namespace,
    write_document,
)

DEFAULT_OPERATOR_NAMESPACE = "modelledger-system"
OPERATOR_SELECTOR = "app.kubernetes.io/name=modelledger"
VERSION_LABEL = "app.kubernetes.io/version"


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "version", help="print the client's version and, if reachable, the operator's", description=__doc__
    )
    parser.add_argument("--client", action="store_true", help="the client's version only (no cluster)")
    parser.add_argument(
        "--operator-namespace",
        default=os.environ.get("MODELLEDGER_OPERATOR_NAMESPACE", DEFAULT_OPERATOR_NAMESPACE),
        help="where the operator runs (default: $MODELLEDGER_OPERATOR_NAMESPACE or %(default)s)",
    )
    add_output_arg(parser, [f for f in OUTPUT_FORMATS if f != "wide"])
    add_cluster_args(parser)
    parser.set_defaults(handler=run)


def client_version() -> str:
    try:
        return metadata.version("modelledger")
    except metadata.PackageNotFoundError:
        from modelledger import __version__

        return __version__


def run(args: argparse.Namespace) -> int:
    one_namespace(args, "the version")
    document: dict[str, Any] = {
        "clientVersion": {
            "version": client_version(),
            "python": platform.python_version(),
            "platform": f"{platform.system().lower()}/{platform.machine()}",
        }
    }
    code = EXIT_OK
    unreachable = ""
    if not args.client:
        try:
            document.update(cluster_versions(Cluster(args), args.operator_namespace))
        except Exception as error:
            if not is_connection_error(error):
                raise
            unreachable = describe_unreachable(error)
            code = EXIT_UNREACHABLE
    if args.output in ("json", "yaml"):
        write_document(document, args.output)
    else:
        console.print(f"Client version: {document['clientVersion']['version']}", highlight=False)
        if "kubernetesVersion" in document:
            console.print(f"Kubernetes version: {document['kubernetesVersion']}", highlight=False)
        if "operatorVersion" in document:
            operator = document["operatorVersion"]
            reason = f" ({operator['reason']})" if operator.get("reason") else ""
            console.print(f"Operator version: {operator['version']}{reason}", highlight=False)
    if unreachable:
        errors.print(f"[bold red]error:[/] {escape(unreachable)}", highlight=False)
    return code


def cluster_versions(cluster: Cluster, operator_namespace: str) -> dict[str, Any]:
    import kubernetes
    from kubernetes.client.exceptions import ApiException

    try:
        info = kubernetes.client.VersionApi(cluster.client).get_code()
        kubernetes_version = str(info.git_version)
    except ApiException as error:
        kubernetes_version = f"unknown ({error.status} {error.reason})"
    return {
        "kubernetesVersion": kubernetes_version,
        "operatorVersion": operator_version(cluster, operator_namespace),
    }


def operator_version(cluster: Cluster, namespace: str) -> dict[str, str]:
    import kubernetes
    from kubernetes.client.exceptions import ApiException

    try:
        found = kubernetes.client.AppsV1Api(cluster.client).list_namespaced_deployment(
            namespace, label_selector=OPERATOR_SELECTOR
        )
    except ApiException as error:
        why = "not allowed to read" if error.status in (401, 403) else f"{error.status} {error.reason}:"
        return {
            "version": "unknown",
            "reason": f"{why} Deployments in {namespace} ({OPERATOR_SELECTOR})",
        }
    versions = sorted(
        {
            (deployment.metadata.labels or {}).get(VERSION_LABEL, "")
            for deployment in found.items
            if deployment.metadata is not None
        }
        - {""}
    )
    if not versions:
        return {
            "version": "unknown",
            "reason": f"no Deployment labelled {OPERATOR_SELECTOR} with {VERSION_LABEL} in {namespace} "
            "(not installed with the chart there? see --operator-namespace)",
        }
    names = ", ".join(sorted(str(d.metadata.name) for d in found.items if d.metadata is not None))
    return {"version": ", ".join(versions), "source": f"Deployment {namespace}/{names}"}
