"""`modelledger register --from-mlflow URI [--from-dvc dvc.lock] --image IMAGE@sha256:…`: a ModelVersion
manifest from a registered MLflow model (or a run), with the data digests of a dvc.lock; printed as
YAML, or applied with `--apply` (server-side apply, field manager `modelledger-register`).

MLflow support is the `mlflow` extra (`pip install 'modelledger[mlflow]'`), imported only here, once
the arguments are checked. Exit codes: 0 printed or applied; 1 the server or apiserver refused; 2 bad
arguments, an unreadable dvc.lock, or the extra missing; 3 the model, version, alias, run or artifact
path not found (or the namespace, or RBAC said no); 4 MLflow or the cluster unreachable."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError
from rich.markup import escape

from modelledger.api import ModelVersion
from modelledger.api.common import GROUP, VERSION
from modelledger.api.modelversion import PINNED_IMAGE_PATTERN
from modelledger.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_UNREACHABLE,
    Cluster,
    CommandTimeout,
    add_cluster_args,
    api_error,
    errors,
    fail,
    one_namespace,
    plain_table,
    write_document,
)
from modelledger.core import registration
from modelledger.core.registration import DataReference, Options, RegistrationError

FIELD_MANAGER = "modelledger-register"
PLURAL = "modelversions"
EXTRA_MISSING = (
    "--from-mlflow needs the MLflow client, which the core install leaves out: "
    "pip install 'modelledger[mlflow]'"
)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "register", help="a ModelVersion from an MLflow model (and a dvc.lock): print it, or --apply it"
    )
    parser.description = __doc__
    source = parser.add_argument_group("where the version comes from")
    source.add_argument(
        "--from-mlflow",
        required=True,
        metavar="URI",
        help="models:/NAME/VERSION, models:/NAME@ALIAS or runs:/RUN_ID/PATH",
    )
    source.add_argument("--tracking-uri", help="the MLflow tracking server (default: $MLFLOW_TRACKING_URI)")
    source.add_argument(
        "--from-dvc", type=Path, metavar="DVC_LOCK", help="add each stage dependency of this dvc.lock as data"
    )
    source.add_argument(
        "--dvc-stage", action="append", metavar="STAGE", help="only this stage's dependencies (repeatable)"
    )
    source.add_argument(
        "--dvc-cache",
        type=Path,
        metavar="DIR",
        help="the DVC cache (default: the repository's, as DVC finds it)",
    )
    made = parser.add_argument_group("the ModelVersion")
    made.add_argument(
        "--image", required=True, help="the serving image, pinned by digest: REPO@sha256:<64 hex>"
    )
    made.add_argument("--port", type=int, default=8080, help="the serving port (default: 8080)")
    made.add_argument("--name", help="the object's name (default: <model>-<version>, as a DNS label)")
    made.add_argument(
        "--model-name", help="spec.modelName (default: the registered model's name, as a DNS label)"
    )
    made.add_argument("--version", help="spec.version (default: the MLflow model version)")
    made.add_argument(
        "--code-repository",
        metavar="URL",
        help="the training code's repository (default: the run's mlflow.source.git.repoURL tag)",
    )
    parser.add_argument("--apply", action="store_true", help="apply it to the cluster (server-side apply)")
    parser.add_argument(
        "-o",
        "--output",
        choices=("yaml", "json"),
        default="yaml",
        help="the manifest's format (default: yaml)",
    )
    add_cluster_args(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    one_namespace(args, "a ModelVersion")
    if not re.fullmatch(PINNED_IMAGE_PATTERN, args.image):
        fail(escape(f"--image {args.image!r} is not pinned by digest: write REPO@sha256:<64 hex digits>"))
    if not 1 <= args.port <= 65535:
        fail(f"--port {args.port}: not a port (1-65535)")
    tracking_uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not tracking_uri:
        fail("no MLflow tracking server: pass --tracking-uri URI or set MLFLOW_TRACKING_URI")
    try:
        ref = registration.parse_mlflow_uri(args.from_mlflow)
    except RegistrationError as error:
        fail(escape(str(error)))
    if ref.run_id is not None and not args.model_name:
        fail(escape(f"{args.from_mlflow} is a run, not a registered model: pass --model-name and --version"))
    data, data_warnings = _dvc(args)
    source = _mlflow(ref, tracking_uri, args)
    options = Options(
        image=args.image,
        port=args.port,
        name=args.name,
        model_name=args.model_name,
        version=args.version,
        code_repository=args.code_repository,
        data_source=str(args.from_dvc) if args.from_dvc else None,
    )
    try:
        made = registration.build(source, data, options)
        ModelVersion.model_validate(made.manifest)
    except RegistrationError as error:
        fail(escape(str(error)))
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        fail(escape(f"the ModelVersion would be invalid: {where}: {problem['msg']}"))
    for warning in [*data_warnings, *made.warnings]:
        errors.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    if not args.apply:
        if args.namespace:
            made.manifest["metadata"]["namespace"] = args.namespace
        write_document(made.manifest, args.output)
        return 0
    return _apply(Cluster(args), made.manifest)


def _dvc(args: argparse.Namespace) -> tuple[list[DataReference], list[str]]:
    if args.from_dvc is None:
        if args.dvc_stage or args.dvc_cache:
            fail("--dvc-stage and --dvc-cache go with --from-dvc")
        return [], []
    from modelledger.adapters import dvc_lock

    if not args.from_dvc.is_file():
        fail(escape(f"--from-dvc {args.from_dvc}: no such file"))
    try:
        found = dvc_lock.read(args.from_dvc, cache=args.dvc_cache, stages=args.dvc_stage)
    except dvc_lock.LockError as error:
        fail(escape(str(error)))
    return found.references, found.warnings


def _mlflow(
    ref: registration.MlflowRef, tracking_uri: str, args: argparse.Namespace
) -> registration.ModelSource:
    try:
        from modelledger.adapters import mlflow_source
    except ImportError as error:
        if (error.name or "").split(".")[0] != "mlflow":
            raise
        fail(escape(EXTRA_MISSING))
    try:
        return mlflow_source.read(ref, tracking_uri, request_timeout=args.timeout or None)
    except mlflow_source.SourceNotFound as error:
        fail(escape(str(error)), EXIT_NOT_FOUND)
    except mlflow_source.SourceUnreachable as error:
        fail(escape(str(error)), EXIT_UNREACHABLE)
    except mlflow_source.SourceFailed as error:
        _reraise_timeout(error)
        fail(escape(str(error)), EXIT_FAILED)


def _reraise_timeout(error: BaseException) -> None:
    """`--timeout` ran out inside the MLflow client, which wrapped it: main reports it (exit 4)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, CommandTimeout):
            raise seen
        seen = seen.__cause__ or seen.__context__


def _apply(cluster: Cluster, manifest: dict[str, Any]) -> int:
    """Server-side apply: creates the ModelVersion, or leaves an identical one as it is. A different
    one of that name is refused (its spec is immutable): the apiserver's message says so."""
    from kubernetes.client.exceptions import ApiException

    name = manifest["metadata"]["name"]
    manifest["metadata"]["namespace"] = cluster.namespace
    try:
        answer: Any = cluster.objects.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            cluster.namespace,
            PLURAL,
            name,
            manifest,
            field_manager=FIELD_MANAGER,
            _content_type="application/apply-patch+yaml",
        )
    except ApiException as error:
        if error.status in (409, 422):
            _refused(error, name, cluster.namespace)
        api_error(error, f"ModelVersion {name} in namespace {cluster.namespace}")
    # The client does not decode every apply answer (None): then read the object back.
    applied = answer if isinstance(answer, dict) else cluster.get_object(PLURAL, name, "ModelVersion")
    spec = applied.get("spec") or {}
    run = (spec.get("provenance") or {}).get("trainingRun", "")
    digest = str((spec.get("artifact") or {}).get("digest", "")).removeprefix("sha256:")[:12]
    row = plain_table(
        ["NAMESPACE", "MODELVERSION", "MODEL", "VERSION", "DIGEST", "TRAINING RUN", "RESULT"],
        [
            [
                cluster.namespace,
                name,
                spec.get("modelName", ""),
                spec.get("version", ""),
                digest,
                run,
                "applied",
            ]
        ],
    )
    sys.stdout.write(row)
    return 0


def _refused(error: Any, name: str, namespace: str) -> NoReturn:
    try:
        message = str(json.loads(error.body).get("message") or error.reason)
    except (TypeError, ValueError):
        message = str(error.reason)
    fail(escape(f"ModelVersion {name} in namespace {namespace} not applied: {message}"), EXIT_FAILED)
