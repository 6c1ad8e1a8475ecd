"""ModelVersion: a trained model, its pinned serving pipeline and provenance; immutable but for revocation."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from modelledger.api.common import (
    CONDITIONS_LIST,
    NAME_KEYED_LIST,
    SET_LIST,
    SHORT_TEXT,
    ApiModel,
    Condition,
    DataDigest,
    Digest,
    DnsLabel,
    ObjectName,
    Uri,
    require_unique,
)
from modelledger.api.modeldeploymentrequest import REASON_LENGTH

# `registry[:port]/path[:tag]@sha256:<64 hex>`: a tag alone can be moved to other content, so an image
# named without its digest would make neither a rollback nor the audit's pinned pipeline exact.
PINNED_IMAGE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/:-]*@sha256:[0-9a-f]{64}$"

USED_BY_SHOWN = 100  # usedBy lists this many names; usedByCount counts them all

IMMUTABLE_MESSAGE = (
    "ModelVersion spec is immutable except revoked and revocationReason: create a new ModelVersion instead"
)
MUTABLE_SPEC_FIELDS = frozenset({"revoked", "revocationReason"})


def immutable() -> dict[str, Any]:
    """Schema extension for a spec field that must not change once the object exists."""
    return {"x-kubernetes-validations": [{"rule": "self == oldSelf", "message": IMMUTABLE_MESSAGE}]}


class Artifact(ApiModel):
    """The trained model file, addressed by content so what was evaluated is what serves."""

    uri: Uri
    """Where the artifact is stored, e.g. `s3://models/fraud/1.4.0/model.onnx`."""
    digest: Digest
    """The artifact's content digest, `sha256:` followed by 64 lower-case hex digits."""
    format: Annotated[str, Field(max_length=63)] = ""
    """The serialisation format, e.g. `onnx`, `pickle`, `safetensors`, `savedmodel`."""


class EnvVar(ApiModel):
    """One environment variable of the serving container."""

    name: Annotated[str, Field(min_length=1, max_length=SHORT_TEXT)]
    """The variable's name."""
    value: Annotated[str, Field(max_length=4096)] = ""
    """The variable's value."""


class Component(ApiModel):
    """A part of the inference pipeline besides the model (preprocessor, tokenizer, feature view)."""

    name: DnsLabel
    """The component's name, unique within the pipeline."""
    uri: Uri
    """Where the component is stored."""
    digest: Digest
    """The component's content digest, `sha256:` followed by 64 lower-case hex digits."""


class Serving(ApiModel):
    """The whole inference pipeline; a rollback restores all of it together."""

    image: Annotated[str, Field(min_length=1, max_length=1024, pattern=PINNED_IMAGE_PATTERN)]
    """The serving container image, pinned by digest (`repo@sha256:` and 64 hex digits, a tag
    optional before it) so a rollback is exact."""
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    """The port the server listens on for inference requests."""
    command: Annotated[list[Annotated[str, Field(max_length=4096)]], Field(max_length=64)] | None = None
    """Overrides the image's entrypoint."""
    args: Annotated[list[Annotated[str, Field(max_length=4096)]], Field(max_length=64)] = Field(
        default_factory=list
    )
    """Arguments to the server."""
    env: Annotated[list[EnvVar], Field(max_length=128, json_schema_extra=NAME_KEYED_LIST)] = Field(
        default_factory=list
    )
    """Environment variables of the serving container; names are unique."""
    components: Annotated[list[Component], Field(max_length=32, json_schema_extra=NAME_KEYED_LIST)] = Field(
        default_factory=list
    )
    """Preprocessors, tokenizers and feature views, pinned like the model; names are unique."""

    @field_validator("env")
    @classmethod
    def _env_names_unique(cls, env: list[EnvVar]) -> list[EnvVar]:
        require_unique([variable.name for variable in env], "env name")
        return env

    @field_validator("components")
    @classmethod
    def _component_names_unique(cls, components: list[Component]) -> list[Component]:
        require_unique([component.name for component in components], "component name")
        return components


class CodeProvenance(ApiModel):
    """The training code."""

    repository: Uri
    """The source repository, e.g. `https://git.example.com/fraud`."""
    commit: Annotated[str, Field(pattern=r"^[0-9a-f]{40}([0-9a-f]{24})?$", max_length=64)]
    """The full commit id (40 hex digits, or 64 for SHA-256 repositories)."""


class Dataset(ApiModel):
    """A dataset the model was trained or evaluated on."""

    name: DnsLabel
    """The dataset's name, unique within the provenance."""
    uri: Uri
    """Where the dataset is stored."""
    digest: DataDigest
    """The dataset's content digest: `sha256:` followed by 64 lower-case hex digits, or DVC's own
    `md5:` and 32 (`.dir` after it for a directory) where the content was not at hand to hash."""


class Provenance(ApiModel):
    """Where the model came from: code, data and the training run."""

    code: CodeProvenance | None = None
    """The training code and its exact commit."""
    data: Annotated[list[Dataset], Field(max_length=64, json_schema_extra=NAME_KEYED_LIST)] = Field(
        default_factory=list
    )
    """The datasets used; names are unique."""
    training_run: Uri | None = None
    """A link to the training run: MLflow's URI form (`runs:/8d1f.../model`, `models:/fraud/3`) or
    another system's link, such as a Kubeflow run URL."""

    @field_validator("data")
    @classmethod
    def _dataset_names_unique(cls, data: list[Dataset]) -> list[Dataset]:
        require_unique([dataset.name for dataset in data], "dataset name")
        return data


class ModelVersionSpec(ApiModel):
    """What a data scientist registers: the model, its pinned serving pipeline, provenance and evaluation."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                # A per-field `self == oldSelf` rule only runs when the field exists on both sides,
                # so adding or removing an optional field is caught here.
                {
                    "rule": "has(self.provenance) == has(oldSelf.provenance)",
                    "message": IMMUTABLE_MESSAGE,
                    "fieldPath": ".provenance",
                },
                {
                    "rule": "!self.revoked || size(self.revocationReason) > 0",
                    "message": "revocationReason is required when revoked is true",
                    "fieldPath": ".revoked",
                },
            ]
        }
    )

    model_name: Annotated[DnsLabel, Field(json_schema_extra=immutable())]
    """The model this is a version of; groups the versions of one model (a DNS label: `fraud-detector`)."""
    version: Annotated[str, Field(min_length=1, max_length=128, json_schema_extra=immutable())]
    """The version as the team names it, e.g. `1.4.0`."""
    artifact: Annotated[Artifact, Field(json_schema_extra=immutable())]
    """The trained model file, pinned by digest."""
    serving: Annotated[Serving, Field(json_schema_extra=immutable())]
    """The serving pipeline (image, port, args, env, components), rolled back together with the model."""
    provenance: Annotated[Provenance | None, Field(json_schema_extra=immutable())] = None
    """Where the model came from: training code, data and run."""
    hyperparameters: Annotated[
        dict[str, Annotated[str, Field(max_length=1024)]],
        Field(max_length=256, json_schema_extra=immutable()),
    ] = Field(default_factory=dict)
    """Training hyper-parameters, as strings, e.g. `learning_rate: "0.01"`."""
    metrics: Annotated[dict[str, float], Field(max_length=256, json_schema_extra=immutable())] = Field(
        default_factory=dict
    )
    """Evaluation metrics, as numbers, e.g. `auc: 0.941`."""
    tags: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=63)]],
        Field(max_length=64, json_schema_extra={**SET_LIST, **immutable()}),
    ] = Field(default_factory=list)
    """Free-form labels such as `compliant`; each at most once."""
    # revocationReason comes first so the check on `revoked` can see it (and name `revoked`, as the CRD does).
    revocation_reason: Annotated[str, Field(max_length=REASON_LENGTH)] = ""
    """Why the version was revoked (at most 1024 characters); required when `revoked` is true."""
    revoked: bool = False
    """Set to true when a failed audit revokes this version: every deployment serving it rolls back."""

    @field_validator("tags")
    @classmethod
    def _tags_unique(cls, tags: list[str]) -> list[str]:
        require_unique(tags, "tag")
        return tags

    @field_validator("revoked")
    @classmethod
    def _revocation_has_reason(cls, revoked: bool, info: ValidationInfo) -> bool:
        if revoked and not info.data.get("revocation_reason"):
            raise ValueError("revocationReason is required when revoked is true")
        return revoked


def changed_immutable_fields(old: ModelVersionSpec, new: ModelVersionSpec) -> list[str]:
    """The wire names of spec fields that differ between two versions of one object (should be none)."""
    old_wire, new_wire = old.to_wire(), new.to_wire()
    names = (old_wire.keys() | new_wire.keys()) - MUTABLE_SPEC_FIELDS
    return sorted(name for name in names if old_wire.get(name) != new_wire.get(name))


class ModelVersionPhase(StrEnum):
    AVAILABLE = "Available"
    REVOKED = "Revoked"


class ModelVersionStatus(ApiModel):
    """What the operator observes about a ModelVersion."""

    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The `.metadata.generation` this status was computed from."""
    phase: Annotated[ModelVersionPhase, Field(strict=False)] | None = None
    """`Available`, or `Revoked` once `spec.revoked` is true."""
    short_digest: Annotated[str, Field(max_length=12, pattern=r"^[0-9a-f]{0,12}$")] | None = None
    """The first 12 hex digits of the artifact digest, for `kubectl get` (the full digest is in spec)."""
    used_by: Annotated[list[ObjectName], Field(max_length=USED_BY_SHOWN, json_schema_extra=SET_LIST)] = Field(
        default_factory=list
    )
    """The first (by name) of the ModelDeployments in this namespace whose history references this
    version; `usedByCount` says how many there are in all."""
    used_by_count: Annotated[int, Field(ge=0)] | None = None
    """How many ModelDeployments in this namespace reference this version (any number)."""
    conditions: Annotated[list[Condition], Field(max_length=32, json_schema_extra=CONDITIONS_LIST)] = Field(
        default_factory=list
    )
    """Standard conditions."""

    @field_validator("used_by")
    @classmethod
    def _used_by_unique(cls, used_by: list[str]) -> list[str]:
        require_unique(used_by, "deployment")
        return used_by

    @field_validator("conditions")
    @classmethod
    def _condition_types_unique(cls, conditions: list[Condition]) -> list[Condition]:
        require_unique([condition.type for condition in conditions], "condition type")
        return conditions


def short_digest(digest: str) -> str:
    """`sha256:0123456789abcdef...` → `0123456789ab`, as shown in the DIGEST column."""
    return digest.removeprefix("sha256:")[:12]


class ModelVersion(ApiModel):
    """A registered, trained model version: artifact, pinned serving pipeline, provenance, evaluation."""

    api_version: Literal["modelledger.io/v1alpha1"] = "modelledger.io/v1alpha1"
    """`modelledger.io/v1alpha1`."""
    kind: Literal["ModelVersion"] = "ModelVersion"
    """`ModelVersion`."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Standard object metadata."""
    spec: ModelVersionSpec
    """The version's content; immutable except `revoked` and `revocationReason`."""
    status: ModelVersionStatus | None = None
    """Observed state, written by the operator."""
