"""Reading a model from an MLflow tracking server: the registered version (or run), its run's params,
metrics and tags, and the model directory, downloaded to digest it.

Imports mlflow, which only the `mlflow` extra installs (`pip install 'modelledger[mlflow]'`): the CLI
imports this module inside `register`, never at start-up, so the core install stays light."""

from __future__ import annotations

import os
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from modelledger.adapters import file_digests
from modelledger.core.registration import MlflowRef, ModelSource, TrainingRun

# What the MLflow client writes into a model directory it downloads through `models:/` (the version's
# name and number): not part of the stored model, so not part of its digest.
ADDED_ON_DOWNLOAD = frozenset({"registered_model_meta"})

# MLflow retries a failed request 7 times with back-off (minutes on a refused connection); a command
# line wants the answer sooner. Set only where the user has not set them.
RETRY_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
PYFUNC = "python_function"


class SourceNotFound(LookupError):
    """The registered model, version, alias, run or artifact path does not exist (exit 3)."""


class SourceUnreachable(ConnectionError):
    """The tracking server did not answer (exit 4)."""


class SourceFailed(RuntimeError):
    """The server answered with another error (exit 1)."""


def read(ref: MlflowRef, tracking_uri: str, *, request_timeout: float | None = None) -> ModelSource:
    """The model `ref` names, its run, and its artifact's digest (modelledger-tree/v1)."""
    for variable, value in RETRY_DEFAULTS.items():
        os.environ.setdefault(variable, value)
    if request_timeout:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, int(request_timeout))))
    # One tracking server for runs, the registry and artifact downloads (models:/ URIs resolve through
    # the registry URI, which would otherwise be MLflow's default).
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    with _errors(tracking_uri):
        if ref.run_id is not None:
            return _from_run(client, ref, tracking_uri)
        return _from_registry(client, ref, tracking_uri)


def _from_registry(client: MlflowClient, ref: MlflowRef, tracking_uri: str) -> ModelSource:
    name = str(ref.name)
    _lookup(lambda: client.get_registered_model(name), f"registered model {name!r}", tracking_uri)
    if ref.alias is not None:
        model_version = _lookup(
            lambda: client.get_model_version_by_alias(name, str(ref.alias)),
            f"alias {ref.alias!r} of registered model {name!r}",
            tracking_uri,
        )
    else:
        model_version = _lookup(
            lambda: client.get_model_version(name, str(ref.version)),
            f"version {ref.version} of registered model {name!r}",
            tracking_uri,
        )
    version = str(model_version.version)
    pinned = f"models:/{name}/{version}"  # an alias moves; the version it resolved to does not
    run_id = model_version.run_id or None
    run, experiment = _run(client, run_id, tracking_uri) if run_id else (None, "")
    digest, flavor = _digest(pinned, tracking_uri, what=f"version {version} of registered model {name!r}")
    return ModelSource(
        uri=ref.uri,
        registered_name=name,
        registered_version=version,
        artifact_uri=pinned,
        artifact_digest=digest,
        artifact_format=flavor,
        training_run=_training_run(client, model_version.source or "", run_id) if run_id else pinned,
        run=run,
        version_tags=dict(model_version.tags or {}),
        run_url=_run_url(tracking_uri, experiment, run_id),
    )


def _from_run(client: MlflowClient, ref: MlflowRef, tracking_uri: str) -> ModelSource:
    run_id = str(ref.run_id)
    run, experiment = _run(client, run_id, tracking_uri)
    uri = f"runs:/{run_id}/{ref.path}"
    digest, flavor = _digest(uri, tracking_uri, what=f"artifact path {ref.path!r} of run {run_id}")
    return ModelSource(
        uri=ref.uri,
        registered_name=None,
        registered_version=None,
        artifact_uri=uri,
        artifact_digest=digest,
        artifact_format=flavor,
        training_run=uri,
        run=run,
        run_url=_run_url(tracking_uri, experiment, run_id),
    )


def _run(client: MlflowClient, run_id: str, tracking_uri: str) -> tuple[TrainingRun, str]:
    """The run's params, metrics (each one's latest value) and tags; and its experiment's id."""
    run = _lookup(lambda: client.get_run(run_id), f"run {run_id}", tracking_uri)
    training = TrainingRun(
        run_id=run_id,
        params=dict(run.data.params),
        metrics={key: float(value) for key, value in run.data.metrics.items()},
        tags=dict(run.data.tags),
    )
    return training, str(run.info.experiment_id)


def _training_run(client: MlflowClient, source: str, run_id: str) -> str:
    """`runs:/RUN_ID/PATH` for a version logged by a run: MLflow 2 keeps the model under the run's
    artifacts (`…/RUN_ID/artifacts/PATH`); MLflow 3 as a logged model (`models:/m-…`) whose name is the
    path `runs:/` resolves."""
    if source.startswith("runs:/"):
        return source
    path = ""
    marker = f"/{run_id}/artifacts/"
    if marker in source:
        path = source.split(marker, 1)[1].strip("/")
    elif source.startswith("models:/m-") and hasattr(client, "get_logged_model"):
        try:
            logged = client.get_logged_model(source.removeprefix("models:/"))
            if logged.source_run_id == run_id:
                path = logged.name
        except MlflowException:
            path = ""
    return f"runs:/{run_id}/{path}" if path else f"runs:/{run_id}"


def _digest(uri: str, tracking_uri: str, *, what: str) -> tuple[str, str]:
    """Download the model (directory or file) and digest it; its primary MLflow flavor as the format."""
    with tempfile.TemporaryDirectory(prefix="modelledger-register-") as work:
        local = _lookup(
            lambda: mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=work, tracking_uri=tracking_uri
            ),
            what,
            tracking_uri,
        )
        path = Path(local)
        leave_out = ADDED_ON_DOWNLOAD if path.is_dir() else frozenset()
        return file_digests.path_digest(path, leave_out=leave_out), _flavor(path)


def _flavor(path: Path) -> str:
    """`mlflow/sklearn`, `mlflow/python_function`: the MLmodel file's first flavor that is not the
    generic pyfunc wrapper; empty when the artifact is no MLflow model."""
    mlmodel = path / "MLmodel"
    if not mlmodel.is_file():
        return ""
    flavors = list((yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}).get("flavors") or {})
    chosen = next((f for f in flavors if f != PYFUNC), PYFUNC if PYFUNC in flavors else "")
    return f"mlflow/{chosen}"[:63] if chosen else ""


def _run_url(tracking_uri: str, experiment: str, run_id: str | None) -> str | None:
    """The run's page in the MLflow UI, for an http(s) tracking server (credentials left out)."""
    parsed = urllib.parse.urlsplit(tracking_uri)
    if not run_id or not experiment or parsed.scheme not in ("http", "https"):
        return None
    host = parsed.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parsed.port:
        netloc += f":{parsed.port}"
    base = urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path.rstrip("/"), "", ""))
    return f"{base}/#/experiments/{experiment}/runs/{run_id}"


def _lookup(call: Any, what: str, tracking_uri: str) -> Any:
    """Call the client; a missing object becomes SourceNotFound naming `what`."""
    try:
        return call()
    except MlflowException as error:
        if _unreachable(error):
            raise SourceUnreachable(_unreachable_message(tracking_uri, error)) from error
        # A missing alias is INVALID_PARAMETER_VALUE ("alias … not found"), the rest RESOURCE_DOES_NOT_EXIST.
        if error.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in error.message.lower():
            raise SourceNotFound(f"{what} not found at {_safe(tracking_uri)}") from error
        raise


class _errors:
    """Any other MlflowException as SourceFailed (one line), a dropped connection as SourceUnreachable."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _tb: Any) -> None:
        if error is None or isinstance(error, SourceNotFound | SourceUnreachable):
            return
        if isinstance(error, MlflowException | OSError) and _unreachable(error):
            raise SourceUnreachable(_unreachable_message(self.tracking_uri, error)) from error
        if isinstance(error, MlflowException):
            first = (error.message or str(error)).strip().splitlines()[0][:300]
            raise SourceFailed(f"MLflow at {_safe(self.tracking_uri)}: {first}") from error


def _unreachable(error: BaseException) -> bool:
    """A refused connection, DNS failure or timeout anywhere in the chain (MLflow wraps requests')."""
    import requests

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, requests.ConnectionError | requests.Timeout | ConnectionError | TimeoutError):
            return True
        seen = seen.__cause__ or seen.__context__
    text = str(error)
    return "Max retries exceeded" in text or "Connection refused" in text


def _unreachable_message(tracking_uri: str, error: BaseException) -> str:
    text = str(error)
    reason = "Connection refused" if "Connection refused" in text else "no answer"
    return f"cannot reach the MLflow tracking server at {_safe(tracking_uri)}: {reason}"


def _safe(uri: str) -> str:
    """The URI without user and password, for messages."""
    parsed = urllib.parse.urlsplit(uri)
    if parsed.username is None and parsed.password is None:
        return uri
    netloc = parsed.hostname or ""
    if parsed.port:
        netloc += f":{parsed.port}"
    return urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path, parsed.query, parsed.fragment))
