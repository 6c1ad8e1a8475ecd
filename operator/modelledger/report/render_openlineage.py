"""`modelledger report --format openlineage`: the report's lineage as OpenLineage run events, one JSON
object per line (docs/lineage.md#openlineage says why this shape and how each field maps).

Two kinds of run, linked by the model artifact as a dataset:

- training: job `train/<model>`, the ModelVersion's training run (MLflow's `runs:/…`) as the run, its
  datasets as inputs and the model artifact (with its digest as the dataset version) as the output;
  the code repository and commit as the job's `sourceCodeLocation`; params and metrics in a custom
  facet. `eventType` is `OTHER`: the run's own start and end are MLflow's to report, not ours.
- serving: job `serve/<deployment>`, one run per served interval (a revision), the model artifact as
  its input, `nominalTime` from when it started serving to when it stopped; `COMPLETE` once it stopped,
  `RUNNING` while it serves. The Deploy's GitOps commit, where recorded, is in a custom facet.

Run ids are UUIDv5 of what identifies the run, so the same report gives the same events and a
catalogue that ingests them twice updates instead of duplicating.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from modelledger import __version__
from modelledger.report.schema import Change, DeploymentReport, Report, ServedInterval, VersionRecord

SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
PRODUCER = f"https://github.com/modelledger/modelledger/tree/v{__version__}"
FACETS = "https://openlineage.io/spec/facets"
REPORT_SCHEMA = "https://github.com/modelledger/modelledger/blob/main/docs/report-schema.json"
NAMESPACE = uuid.UUID("6b1c3f2e-0d4a-5e8f-9a7b-3c2d1e0f4a5b")  # of the UUIDv5 run ids


def render(report: Report) -> str:
    return "".join(json.dumps(event, sort_keys=True) + "\n" for event in events(report))


def events(report: Report) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    seen_training: set[str] = set()
    for deployment in report.deployments:
        for version in deployment.versions:
            if version.found and version.training_run and version.training_run not in seen_training:
                seen_training.add(version.training_run)
                found.append(_training(report, deployment, version))
        versions = {v.name: v for v in deployment.versions}
        changes = {c.revision: c for c in deployment.changes}
        for interval in deployment.timeline:
            found.append(
                _serving(deployment, interval, versions.get(interval.version), changes.get(interval.revision))
            )
    return found


def _training(report: Report, deployment: DeploymentReport, version: VersionRecord) -> dict[str, Any]:
    job_facets: dict[str, Any] = {}
    if version.code_repository and version.code_commit:
        job_facets["sourceCodeLocation"] = _facet(
            "SourceCodeLocationJobFacet",
            "1-0-1",
            type="git",
            url=version.code_repository,
            repoUrl=version.code_repository,
            version=version.code_commit,
        )
    return {
        "eventType": "OTHER",
        "eventTime": _time(report.generated_at),
        "run": {
            "runId": _run_id("training", str(version.training_run)),
            "facets": {
                "modelledger_training": _custom(
                    "VersionRecord",
                    trainingRun=version.training_run,
                    trainingRunUrl=version.training_run_url,
                    hyperparameters=version.hyperparameters,
                    metrics=version.metrics,
                    tags=version.tags,
                )
            },
        },
        "job": {
            "namespace": _job_namespace(deployment),
            "name": f"train/{version.model_name}",
            "facets": job_facets,
        },
        "inputs": [_dataset(d.uri, d.digest, version.code_repository, name=d.name) for d in version.datasets],
        "outputs": [_model(version)],
        "producer": PRODUCER,
        "schemaURL": SCHEMA_URL,
    }


def _serving(
    deployment: DeploymentReport,
    interval: ServedInterval,
    version: VersionRecord | None,
    change: Change | None,
) -> dict[str, Any]:
    nominal = {"nominalStartTime": _time(interval.start)}
    if interval.end is not None:
        nominal["nominalEndTime"] = _time(interval.end)
    revision: dict[str, Any] = {
        "revision": interval.revision,
        "version": interval.version,
        "cause": interval.cause,
        "actor": interval.actor,
        "stable": interval.stable,
        "endKnown": interval.end_known,
    }
    gitops = getattr(change, "gitops", None) if change else None
    if gitops is not None and getattr(gitops, "revision", None):
        revision["gitRepository"] = getattr(gitops, "repository", None)
        revision["gitRevision"] = gitops.revision
    serving = version if version is not None and version.found else None
    return {
        "eventType": "COMPLETE" if interval.end is not None else "RUNNING",
        "eventTime": _time(interval.end or interval.start),
        "run": {
            "runId": _run_id(
                "serving",
                deployment.uid or f"{deployment.namespace}/{deployment.name}",
                str(interval.revision),
            ),
            "facets": {
                "nominalTime": _facet("NominalTimeRunFacet", "1-0-1", **nominal),
                "modelledger_revision": _custom("ServedInterval", **revision),
            },
        },
        "job": {"namespace": _job_namespace(deployment), "name": f"serve/{deployment.name}", "facets": {}},
        "inputs": [_model(serving)] if serving else [],
        "outputs": [],
        "producer": PRODUCER,
        "schemaURL": SCHEMA_URL,
    }


def _model(version: VersionRecord) -> dict[str, Any]:
    """The model artifact as a dataset: the output of its training, the input of its serving."""
    dataset = _dataset(str(version.artifact_uri), str(version.artifact_digest), None)
    dataset["facets"]["modelledger_model"] = _custom(
        "VersionRecord",
        modelVersion=version.name,
        modelName=version.model_name,
        version=version.version,
        format=version.artifact_format,
        image=version.image,
    )
    return dataset


def _dataset(uri: str, digest: str, repository: str | None, *, name: str | None = None) -> dict[str, Any]:
    """OpenLineage's dataset naming: the namespace is where it lives (`s3://bucket`, `models:` for an
    MLflow registry URI, the code repository for a repository-relative path as in dvc.lock), the name
    the URI; the digest is the dataset version."""
    scheme, sep, rest = uri.partition(":")
    if sep and "/" not in scheme:
        authority = rest.removeprefix("//").split("/", 1)[0] if rest.startswith("//") else ""
        namespace = f"{scheme}://{authority}" if authority else f"{scheme}:"
    else:
        namespace = repository or "file:"
    facets: dict[str, Any] = {"version": _facet("DatasetVersionDatasetFacet", "1-0-1", datasetVersion=digest)}
    if name:
        facets["modelledger_dataset"] = _custom("DatasetRef", name=name)
    return {"namespace": namespace, "name": uri, "facets": facets}


def _job_namespace(deployment: DeploymentReport) -> str:
    return f"modelledger://{deployment.namespace}"


def _facet(kind: str, spec: str, **fields: Any) -> dict[str, Any]:
    """A standard facet `kind` of facet spec version `spec`."""
    return {"_producer": PRODUCER, "_schemaURL": f"{FACETS}/{spec}/{kind}.json#/$defs/{kind}", **fields}


def _custom(definition: str, **fields: Any) -> dict[str, Any]:
    """A modelledger facet: its fields are the report's (docs/report-schema.json's `definition`)."""
    kept = {key: value for key, value in fields.items() if value is not None}
    return {"_producer": PRODUCER, "_schemaURL": f"{REPORT_SCHEMA}#/$defs/{definition}", **kept}


def _run_id(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "\n".join(parts)))


def _time(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
