"""`modelledger register`: what a training run and a dvc.lock say, mapped to a ModelVersion manifest.

Pure: the adapters (adapters.mlflow_source, adapters.dvc_lock) read MLflow and the DVC cache and hand
over plain values; this decides names, what fits the API's bounds, and what is left out, with a warning
for each thing left out so nothing is dropped silently (docs/lineage.md says what maps to what).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelledger.api.common import API_VERSION

# MLflow's system tags (`mlflow.user`, `mlflow.source.*`, `mlflow.runName`, ...) are lineage it records
# by itself; the ones worth keeping become provenance, the rest stay in MLflow.
SYSTEM_TAG_PREFIX = "mlflow."
GIT_COMMIT_TAG = "mlflow.source.git.commit"
GIT_REPOSITORY_TAG = "mlflow.source.git.repoURL"
COMMIT_PATTERN = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")

DNS_LABEL_LENGTH = 63
TAG_LENGTH = 63
TAGS_MAX = 64
HYPERPARAMETER_LENGTH = 1024
MAP_MAX = 256
DATASETS_MAX = 64

SOURCE_ANNOTATION = "modelledger.io/registered-from"
"""Where `register` read the version from (`models:/fraud/3`, the dvc.lock): for people, not evidence."""
RUN_URL_ANNOTATION = "modelledger.io/training-run-url"
"""The training run's page on the MLflow server, when it has one: a link for the report's readers."""


@dataclass(frozen=True)
class TrainingRun:
    """An MLflow run as its API returns it."""

    run_id: str
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSource:
    """A model read from MLflow: the registered version (if any), its run and its artifact."""

    uri: str
    """What was asked for: `models:/NAME/VERSION`, `models:/NAME@alias` or `runs:/RUN_ID/PATH`."""
    registered_name: str | None
    """The registered model's name; None for a `runs:/` URI."""
    registered_version: str | None
    artifact_uri: str
    """`models:/NAME/VERSION` (an alias resolved: aliases move) or the `runs:/` URI."""
    artifact_digest: str
    artifact_format: str
    training_run: str
    """MLflow's URI of the run: `runs:/RUN_ID/PATH`, or `models:/NAME/VERSION` without a run."""
    run: TrainingRun | None
    version_tags: Mapping[str, str] = field(default_factory=dict)
    """The registered model version's own tags (they win over the run's of the same key)."""
    run_url: str | None = None


@dataclass(frozen=True)
class DataReference:
    """One dependency of a dvc.lock: its path and digest (`sha256:` from the cache, else DVC's `md5:`)."""

    path: str
    digest: str


@dataclass(frozen=True)
class Options:
    image: str
    port: int = 8080
    name: str | None = None
    model_name: str | None = None
    version: str | None = None
    code_repository: str | None = None
    data_source: str | None = None


@dataclass
class Registration:
    manifest: dict[str, Any]
    warnings: list[str]


class RegistrationError(ValueError):
    """The inputs cannot make a valid ModelVersion (the CLI's usage error)."""


@dataclass(frozen=True)
class MlflowRef:
    """A parsed `--from-mlflow` URI: exactly one of version, alias and run_id is set."""

    uri: str
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    path: str | None = None


_VERSION = re.compile(r"^[1-9][0-9]*$")
_RUN_ID = re.compile(r"^[0-9A-Za-z_-]+$")


def parse_mlflow_uri(uri: str) -> MlflowRef:
    """`models:/NAME/VERSION`, `models:/NAME@ALIAS` or `runs:/RUN_ID/PATH`, as MLflow writes them
    (a model's name may hold spaces; the version or alias follows its last `/` or `@`)."""
    if uri.startswith("models:/"):
        rest = uri.removeprefix("models:/").strip("/")
        name, at, alias = rest.rpartition("@")
        if at and name and alias and "/" not in alias:
            return MlflowRef(uri, name=name, alias=alias)
        name, slash, version = rest.rpartition("/")
        if slash and name and _VERSION.fullmatch(version):
            return MlflowRef(uri, name=name, version=version)
        raise RegistrationError(
            f"--from-mlflow {uri!r}: write models:/NAME/VERSION (a version number) or models:/NAME@ALIAS"
        )
    if uri.startswith("runs:/"):
        run_id, _, path = uri.removeprefix("runs:/").strip("/").partition("/")
        if _RUN_ID.fullmatch(run_id) and path:
            return MlflowRef(uri, run_id=run_id, path=path)
        raise RegistrationError(
            f"--from-mlflow {uri!r}: write runs:/RUN_ID/PATH, PATH the model's in the run"
        )
    raise RegistrationError(
        f"--from-mlflow {uri!r}: use models:/NAME/VERSION, models:/NAME@ALIAS or runs:/ID/PATH"
    )


_NOT_LABEL = re.compile(r"[^a-z0-9]+")


def dns_label(text: str, what: str = "name") -> str:
    """`Fraud Detector` → `fraud-detector`; `fraud-detector-1.4.0` → `fraud-detector-1-4-0`.

    Lower case, every run of other characters one `-`, no `-` at either end. Longer than 63: cut to 54
    and 8 hex digits of the original's sha256 appended, so two long names stay two names."""
    label = _NOT_LABEL.sub("-", text.lower()).strip("-")
    if not label:
        raise RegistrationError(f"{what} {text!r} has no letter or digit to make a DNS name from")
    if len(label) > DNS_LABEL_LENGTH:
        suffix = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
        label = label[: DNS_LABEL_LENGTH - 9].rstrip("-") + "-" + suffix
    return label


def mlflow_tags(run_tags: Mapping[str, str], version_tags: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """MLflow's key → value tags as ModelVersion tags: `key=value` (`key` alone when the value is empty
    or `true`), system tags left out. Returns the tags and a warning per tag that does not fit."""
    merged = {k: v for k, v in {**run_tags, **version_tags}.items() if not k.startswith(SYSTEM_TAG_PREFIX)}
    tags: list[str] = []
    warnings: list[str] = []
    for key in sorted(merged):
        value = merged[key]
        tag = key if value in ("", "true", "True") else f"{key}={value}"
        if len(tag) > TAG_LENGTH:
            warnings.append(f"tag {key!r} left out: {key}={value} is longer than {TAG_LENGTH} characters")
        elif len(tags) >= TAGS_MAX:
            warnings.append(f"tag {key!r} left out: a ModelVersion holds at most {TAGS_MAX} tags")
        else:
            tags.append(tag)
    return tags, warnings


def hyperparameters(params: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    kept: dict[str, str] = {}
    warnings: list[str] = []
    for key in sorted(params):
        if len(params[key]) > HYPERPARAMETER_LENGTH:
            warnings.append(f"param {key!r} left out: longer than {HYPERPARAMETER_LENGTH} characters")
        elif len(kept) >= MAP_MAX:
            warnings.append(f"param {key!r} left out: a ModelVersion holds at most {MAP_MAX}")
        else:
            kept[key] = params[key]
    return kept, warnings


def metrics(values: Mapping[str, float]) -> tuple[dict[str, float], list[str]]:
    kept: dict[str, float] = {}
    warnings: list[str] = []
    for key in sorted(values):
        value = float(values[key])
        if not math.isfinite(value):
            warnings.append(f"metric {key!r} left out: {value} is not a finite number")
        elif len(kept) >= MAP_MAX:
            warnings.append(f"metric {key!r} left out: a ModelVersion holds at most {MAP_MAX}")
        else:
            kept[key] = value
    return kept, warnings


def code_provenance(
    tags: Mapping[str, str], repository: str | None
) -> tuple[dict[str, str] | None, list[str]]:
    """`mlflow.source.git.commit` and the repository (`--code-repository`, else MLflow's repoURL tag)."""
    commit = tags.get(GIT_COMMIT_TAG, "").strip().lower()
    repository = repository or tags.get(GIT_REPOSITORY_TAG, "").strip() or None
    if not commit:
        return None, [f"no code provenance: the run has no {GIT_COMMIT_TAG} tag"]
    if not COMMIT_PATTERN.fullmatch(commit):
        return None, [f"no code provenance: {GIT_COMMIT_TAG} {commit!r} is not a full commit id"]
    if repository is None:
        return None, [
            f"no code provenance: commit {commit} has no repository "
            f"({GIT_REPOSITORY_TAG} tag); pass --code-repository URL"
        ]
    return {"repository": repository, "commit": commit}, []


def datasets(references: Sequence[DataReference]) -> tuple[list[dict[str, str]], list[str]]:
    """Each dependency a dataset named after its path (a DNS label, unique), its uri the path."""
    found: list[dict[str, str]] = []
    warnings: list[str] = []
    names: set[str] = set()
    for reference in references:
        name = dns_label(reference.path, "data path")
        if name in names:  # `data/a.csv` and `data/a-csv` both give `data-a-csv`
            name = dns_label(f"{name}-{hashlib.sha256(reference.path.encode()).hexdigest()[:8]}")
        if len(found) >= DATASETS_MAX:
            warnings.append(f"data {reference.path!r} left out: a ModelVersion holds at most {DATASETS_MAX}")
            continue
        names.add(name)
        found.append({"name": name, "uri": reference.path, "digest": reference.digest})
    return found, warnings


def build(source: ModelSource, data: Sequence[DataReference], options: Options) -> Registration:
    """The ModelVersion manifest (a dict as `kubectl apply` takes it) and what was left out."""
    warnings: list[str] = []
    model_name = options.model_name or source.registered_name
    if not model_name:
        raise RegistrationError(f"{source.uri} is not a registered model: pass --model-name")
    model_label = dns_label(model_name, "model name")
    version = options.version or source.registered_version
    if not version:
        raise RegistrationError(f"{source.uri} has no registered version: pass --version")
    name = options.name or dns_label(f"{model_label}-{version}", "name")

    run = source.run or TrainingRun(run_id="")
    params, dropped = hyperparameters(run.params)
    warnings += dropped
    measured, dropped = metrics(run.metrics)
    warnings += dropped
    tags, dropped = mlflow_tags(run.tags, source.version_tags)
    warnings += dropped
    code, dropped = code_provenance(run.tags, options.code_repository) if source.run else (None, [])
    warnings += dropped
    data_sets, dropped = datasets(data)
    warnings += dropped

    provenance: dict[str, Any] = {}
    if code:
        provenance["code"] = code
    if data_sets:
        provenance["data"] = data_sets
    provenance["trainingRun"] = source.training_run
    annotations = {SOURCE_ANNOTATION: source.uri}
    if options.data_source:
        annotations[SOURCE_ANNOTATION] += f", {options.data_source}"
    if source.run_url:
        annotations[RUN_URL_ANNOTATION] = source.run_url
    spec: dict[str, Any] = {
        "modelName": model_label,
        "version": version,
        "artifact": {"uri": source.artifact_uri, "digest": source.artifact_digest},
        "serving": {"image": options.image, "port": options.port},
        "provenance": provenance,
        "hyperparameters": params,
        "metrics": measured,
        "tags": tags,
    }
    if source.artifact_format:
        spec["artifact"]["format"] = source.artifact_format
    manifest = {
        "apiVersion": API_VERSION,
        "kind": "ModelVersion",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/name": model_label},
            "annotations": annotations,
        },
        "spec": spec,
    }
    return Registration(manifest, warnings)
