"""`modelledger register`'s pure mapping (core.registration): MLflow URIs, DNS names, what a run's params,
metrics and tags become, and that the manifest is a valid ModelVersion."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelledger.api import ModelVersion
from modelledger.api.common import DNS_LABEL_PATTERN
from modelledger.core import registration
from modelledger.core.registration import (
    DataReference,
    MlflowRef,
    ModelSource,
    Options,
    RegistrationError,
    TrainingRun,
)

IMAGE = "ghcr.io/acme/fraud-server@sha256:" + "a" * 64
DIGEST = "sha256:" + "b" * 64
COMMIT = "262724ad61c53d445389d5b46eb4825efd6ba05d"


def source(**changes: object) -> ModelSource:
    values: dict[str, object] = {
        "uri": "models:/Fraud Detector@champion",
        "registered_name": "Fraud Detector",
        "registered_version": "3",
        "artifact_uri": "models:/Fraud Detector/3",
        "artifact_digest": DIGEST,
        "artifact_format": "mlflow/sklearn",
        "training_run": "runs:/8d1f/model",
        "run": TrainingRun(
            run_id="8d1f",
            params={"learning_rate": "0.01", "huge": "x" * 2000},
            metrics={"auc": 0.94, "loss": float("nan")},
            tags={
                "mlflow.source.git.commit": COMMIT,
                "mlflow.source.git.repoURL": "https://git.example.com/fraud",
                "mlflow.user": "ana",
                "team": "risk",
                "compliant": "true",
                "long": "y" * 80,
            },
        ),
        "version_tags": {"team": "fraud"},
        "run_url": "http://mlflow:5000/#/experiments/1/runs/8d1f",
    }
    values.update(changes)
    return ModelSource(**values)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/fraud/3", MlflowRef("models:/fraud/3", name="fraud", version="3")),
        ("models:/Fraud Detector@champion", MlflowRef("models:/Fraud Detector@champion", name="Fraud Detector", alias="champion")),  # noqa: E501
        ("runs:/8d1f/model/sub", MlflowRef("runs:/8d1f/model/sub", run_id="8d1f", path="model/sub")),
    ],
)  # fmt: skip
def test_mlflow_uris_are_parsed(uri: str, expected: MlflowRef) -> None:
    assert registration.parse_mlflow_uri(uri) == expected


@pytest.mark.parametrize(
    "uri",
    ["models:/fraud", "models:/fraud/latest", "models:/fraud/0", "models:/@x", "runs:/8d1f", "s3://x/y"],
)
def test_malformed_mlflow_uris_are_refused_naming_the_flag(uri: str) -> None:
    with pytest.raises(RegistrationError, match="--from-mlflow"):
        registration.parse_mlflow_uri(uri)


@given(st.text(min_size=1, max_size=200))
def test_dns_label_always_gives_a_label_or_refuses(text: str) -> None:
    try:
        label = registration.dns_label(text)
    except RegistrationError:
        assert not re.search(r"[a-z0-9]", text.lower())
        return
    assert re.fullmatch(DNS_LABEL_PATTERN, label)
    assert len(label) <= 63
    assert registration.dns_label(label) == label or len(label) == 63


def test_dns_label_examples_and_long_names_stay_distinct() -> None:
    assert registration.dns_label("Fraud Detector") == "fraud-detector"
    assert registration.dns_label("fraud-detector-1.4.0") == "fraud-detector-1-4-0"
    long_a, long_b = "m" * 70 + "a", "m" * 70 + "b"
    assert registration.dns_label(long_a) != registration.dns_label(long_b)
    assert len(registration.dns_label(long_a)) == 63


def test_the_manifest_maps_run_and_version_and_is_a_valid_model_version() -> None:
    data = [
        DataReference("data/train.csv", "sha256:" + "c" * 64),
        DataReference("data/img", "md5:" + "d" * 32 + ".dir"),
    ]
    made = registration.build(source(), data, Options(image=IMAGE, port=9000, data_source="dvc.lock"))
    manifest = made.manifest
    version = ModelVersion.model_validate(manifest)
    assert manifest["metadata"]["name"] == "fraud-detector-3"
    assert manifest["metadata"]["annotations"] == {
        registration.SOURCE_ANNOTATION: "models:/Fraud Detector@champion, dvc.lock",
        registration.RUN_URL_ANNOTATION: "http://mlflow:5000/#/experiments/1/runs/8d1f",
    }
    spec = version.spec
    assert (spec.model_name, spec.version) == ("fraud-detector", "3")
    assert (spec.artifact.uri, spec.artifact.digest, spec.artifact.format) == (
        "models:/Fraud Detector/3",
        DIGEST,
        "mlflow/sklearn",
    )
    assert (spec.serving.image, spec.serving.port) == (IMAGE, 9000)
    assert spec.hyperparameters == {"learning_rate": "0.01"}
    assert spec.metrics == {"auc": 0.94}
    # The version's own tag wins over the run's; system tags are provenance, not tags.
    assert spec.tags == ["compliant", "team=fraud"]
    assert spec.provenance is not None
    assert spec.provenance.code is not None
    assert (spec.provenance.code.repository, spec.provenance.code.commit) == (
        "https://git.example.com/fraud",
        COMMIT,
    )
    assert spec.provenance.training_run == "runs:/8d1f/model"
    assert [(d.name, d.uri, d.digest) for d in spec.provenance.data] == [
        ("data-train-csv", "data/train.csv", "sha256:" + "c" * 64),
        ("data-img", "data/img", "md5:" + "d" * 32 + ".dir"),
    ]
    assert sorted(made.warnings) == [
        "metric 'loss' left out: nan is not a finite number",
        "param 'huge' left out: longer than 1024 characters",
        f"tag 'long' left out: long={'y' * 80} is longer than 63 characters",
    ]  # fmt: skip


def test_overrides_and_a_run_without_registry_or_git() -> None:
    bare = source(
        uri="runs:/8d1f/model",
        registered_name=None,
        registered_version=None,
        artifact_uri="runs:/8d1f/model",
        run=TrainingRun(run_id="8d1f", tags={"mlflow.source.git.commit": COMMIT}),
        version_tags={},
        run_url=None,
    )
    with pytest.raises(RegistrationError, match="--model-name"):
        registration.build(bare, [], Options(image=IMAGE))
    with pytest.raises(RegistrationError, match="--version"):
        registration.build(bare, [], Options(image=IMAGE, model_name="fraud"))
    made = registration.build(
        bare, [], Options(image=IMAGE, model_name="fraud", version="1.4.0", name="custom")
    )
    assert made.manifest["metadata"]["name"] == "custom"
    assert made.manifest["spec"]["version"] == "1.4.0"
    assert "code" not in made.manifest["spec"]["provenance"]
    assert made.warnings == [
        f"no code provenance: commit {COMMIT} has no repository (mlflow.source.git.repoURL tag); "
        "pass --code-repository URL"
    ]
    with_repo = registration.build(
        bare, [], Options(image=IMAGE, model_name="fraud", version="1", code_repository="https://g/x")
    )
    assert with_repo.manifest["spec"]["provenance"]["code"] == {"repository": "https://g/x", "commit": COMMIT}
    assert with_repo.warnings == []


def test_data_paths_that_sanitise_alike_get_distinct_names() -> None:
    found, warnings = registration.datasets(
        [DataReference("data/a.csv", DIGEST), DataReference("data/a-csv", DIGEST)]
    )
    names = [d["name"] for d in found]
    assert names[0] == "data-a-csv"
    assert names[1].startswith("data-a-csv-")
    assert len(set(names)) == 2
    assert warnings == []


@pytest.mark.parametrize(
    ("digest", "valid"),
    [
        ("md5:" + "d" * 32, True),
        ("md5:" + "d" * 32 + ".dir", True),
        ("sha256:" + "c" * 64, True),
        ("md5:" + "d" * 31, False),
        ("md5:" + "D" * 32, False),
        ("md5:" + "d" * 32 + ".tar", False),
        ("sha1:" + "d" * 40, False),
    ],
)
def test_data_references_accept_dvcs_md5_but_artifacts_stay_sha256(digest: str, valid: bool) -> None:
    made = registration.build(source(), [DataReference("data/x", digest)], Options(image=IMAGE)).manifest
    if valid:
        ModelVersion.model_validate(made)
    else:
        with pytest.raises(ValueError, match="digest"):
            ModelVersion.model_validate(made)
    made["spec"]["provenance"]["data"] = []
    made["spec"]["artifact"]["digest"] = "md5:" + "d" * 32
    with pytest.raises(ValueError, match="artifact"):
        ModelVersion.model_validate(made)
