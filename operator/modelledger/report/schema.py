"""The compliance report's JSON schema (`modelledger.report/v2`), as pydantic models.

This is a published contract for catalogue ingestion (Collibra, Alation): fields are only added within
a major version; a removal or change of meaning bumps `schema`. `modelledger report --json-schema`
prints the JSON Schema generated from these models, and docs/report-schema.json holds a copy.

v2 embeds each deployment's signed history entries verbatim (`history`, `auditLogHistory`,
`historyWatermark`), so `modelledger audit verify --report FILE --public-key KEY` checks the report
offline: the signatures, and that every fact derived from the history agrees with the signed entries.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

SchemaVersion = Literal["modelledger.report/v2"]
REPORT_SCHEMA: SchemaVersion = "modelledger.report/v2"

Source = Literal["status", "auditLog", "event"]
SignatureState = Literal["valid", "invalid", "unknownKey", "unsigned", "notChecked"]
"""One signature: `valid`; `invalid` (does not verify); `unknownKey` (a key the verifier does not trust);
`unsigned`; `notChecked` (no public keys were available when the report was made)."""
Verdict = Literal["Signed", "Unsigned", "Tampered", "NotChecked"]
"""A whole history: `Signed` (every entry signed and verified), `Unsigned` (a consistent chain, but not
every entry signed), `Tampered` (something does not verify) or `NotChecked` (the chain holds; no public
keys were available to check the signatures)."""


class ReportModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
        use_attribute_docstrings=True,
        extra="forbid",
    )


class Window(ReportModel):
    since: datetime | None = None
    """The start of the reported range; null: from the first known revision."""
    until: datetime
    """The end of the reported range (the report's time when not given)."""


class PinnedDigests(ReportModel):
    artifact_digest: str
    image: str
    components: dict[str, str] = Field(default_factory=dict)
    """Component name → digest."""


class DatasetRef(ReportModel):
    name: str
    uri: str
    digest: str


class ComponentRef(ReportModel):
    name: str
    uri: str
    digest: str


class VersionRecord(ReportModel):
    """A ModelVersion named by the deployment: what was served, and where it came from."""

    name: str
    found: bool
    """False when the ModelVersion no longer exists; only its pinned digests (from history) remain."""
    model_name: str | None = None
    version: str | None = None
    artifact_uri: str | None = None
    artifact_digest: str | None = None
    artifact_format: str | None = None
    image: str | None = None
    components: list[ComponentRef] = Field(default_factory=list)
    code_repository: str | None = None
    code_commit: str | None = None
    datasets: list[DatasetRef] = Field(default_factory=list)
    training_run: str | None = None
    """The training run in MLflow's URI form (`runs:/RUN_ID/PATH`, `models:/NAME/VERSION`) or another
    system's link, from the version's immutable spec."""
    training_run_url: str | None = None
    """The run's page on the MLflow server, from the annotation `modelledger.io/training-run-url` that
    `modelledger register` writes: a link for readers, not evidence (annotations can change)."""
    metrics: dict[str, float] = Field(default_factory=dict)
    hyperparameters: dict[str, str] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    revoked: bool = False
    revocation_reason: str | None = None


class ServedInterval(ReportModel):
    """Revision `revision` served `version` from `start` until `end` (null: still serving, or unknown)."""

    revision: int
    version: str
    start: datetime
    end: datetime | None = None
    end_known: bool = True
    """False when the next revision was pruned from the status and no audit log supplied it."""
    cause: str
    actor: str
    stable: bool
    digests: PinnedDigests | None = None
    source: Source


class GitSourceRecord(ReportModel):
    """One source of a multi-source ArgoCD Application, with the revision synced from it."""

    repository: str
    revision: str | None = None


class GitOpsRecord(ReportModel):
    """The GitOps change behind a Deploy, as its signed entry records it (docs/gitops.md#lineage)."""

    tool: str
    """`ArgoCD`."""
    tracked_by: str
    """`annotation` (`argocd.argoproj.io/tracking-id`) or `label` (`app.kubernetes.io/instance`)."""
    application: str = ""
    """The Application looked up, `namespace/name`."""
    trusted: bool
    """Whether the Application listed the object (in a namespace the admins allow): only then are the
    repository, revision and initiator recorded."""
    reason: str | None = None
    """Why not, e.g. `Forbidden`, `NotFound`, `NotListed`, `NamespaceNotAllowed`."""
    message: str | None = None
    repository: str | None = None
    revision: str | None = None
    """The Git commit synced: the commit behind the change."""
    sources: list[GitSourceRecord] | None = None
    initiated_by: str | None = None
    """The ArgoCD user who started the sync."""
    automated: bool | None = None
    """Whether ArgoCD's automated sync started it."""
    sync_started_at: datetime | None = None


class Change(ReportModel):
    """One revision: a change of what serves, with who, why and the evidence."""

    revision: int
    at: datetime
    version: str
    previous_version: str | None = None
    previous_revision: int | None = None
    cause: str
    actor: str
    reason: str = ""
    rule: str | None = None
    evidence: dict[str, Any] | None = None
    request_id: str | None = None
    """Legacy: the status request carried out (entries written before requests were objects)."""
    request_name: str | None = None
    """The ModelDeploymentRequest carried out, if any."""
    actor_verified: bool | None = None
    """Whether the apiserver authenticated the actor (or it is the operator); null on old entries."""
    actor_groups: list[str] = Field(default_factory=list)
    approvers: list[str] = Field(default_factory=list)
    """The users whose approvals let the request through (four-eyes)."""
    digests: PinnedDigests | None = None
    gitops: GitOpsRecord | None = None
    """Deploys of an object ArgoCD tracks: the Application, repository, commit and sync initiator."""
    hash: str
    prev_hash: str
    key_id: str | None = None
    """The key that signed the entry (sha256 of its DER SubjectPublicKeyInfo)."""
    signature_state: SignatureState
    """The entry's signature as checked when the report was made."""
    source: Source


class StableMarking(ReportModel):
    revision: int
    version: str | None = None
    at: datetime | None = None
    """When it was marked; null when only the status's `stable` flag says so."""
    actor: str | None = None
    """`modelledger/bake` after the bake time, or the person who ran `mark-stable`."""
    actor_verified: bool | None = None
    approvers: list[str] = Field(default_factory=list)
    request_name: str | None = None
    message: str = ""
    key_id: str | None = None
    signature_state: SignatureState = "unsigned"
    """The signed stable mark's signature (`unsigned` for markings from the audit log or Events)."""
    source: Source


class Quarantine(ReportModel):
    version: str
    at: datetime
    revision: int
    """The revision that rolled back from it."""
    cause: str
    actor: str
    lifted_at: datetime | None = None
    lifted_by: str | None = None
    current: bool
    """Still quarantined now."""


class Revocation(ReportModel):
    version: str
    reason: str
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    """The field manager that set `spec.revoked`."""
    rollback_revision: int | None = None
    """The Revocation revision that rolled this deployment back, if it was serving."""


class EventRecord(ReportModel):
    object_kind: str
    object_name: str
    reason: str
    type: str
    message: str
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    count: int = 1


class ChainCheck(ReportModel):
    ok: bool
    revision: int | None = None
    line: int | None = None
    problem: str | None = None


class HistoryCheck(ReportModel):
    """The embedded history's hash chain, signatures, stable marks and pruning watermark."""

    verdict: Verdict
    ok: bool
    """False only when `Tampered`."""
    revision: int | None = None
    """The first bad revision."""
    problem: str | None = None
    signed: int = 0
    unsigned: int = 0


class Verification(ReportModel):
    history: HistoryCheck
    """The embedded history (`history`, `auditLogHistory`, `historyWatermark`) verified."""
    audit_log: ChainCheck | None = None
    """The status history against the entries the audit log recorded (null without a log)."""


class ServedAt(ReportModel):
    """The answer to `--at T`: what served at that instant."""

    at: datetime
    known: bool
    """False when T falls where revisions were pruned (pass the audit log) or before any record."""
    revision: int | None = None
    version: str | None = None
    stable: bool | None = None


class DeploymentReport(ReportModel):
    namespace: str
    name: str
    uid: str | None = None
    """The ModelDeployment's UID (a deployment deleted and re-created under its name has another)."""
    model_name: str
    phase: str | None = None
    desired_version: str
    serving_version: str | None = None
    current_revision: int | None = None
    stable_revision: int | None = None
    quarantined: list[str] = Field(default_factory=list)
    history_complete: bool
    """True when every revision since the first is known (from the status or the audit log)."""
    served_at: ServedAt | None = None
    timeline: list[ServedInterval]
    changes: list[Change]
    stable_markings: list[StableMarking]
    quarantines: list[Quarantine]
    revocations: list[Revocation]
    versions: list[VersionRecord]
    events: list[EventRecord]
    revision_history_limit: int | None = None
    """The deployment's `spec.revisionHistoryLimit`: how far back an unsigned history must be complete."""
    history: list[dict[str, Any]] = Field(default_factory=list)
    """The status history verbatim (newest first, camelCase, with hashes and signatures): what the
    derived facts above are checked against offline."""
    history_watermark: dict[str, Any] | None = None
    """The status's signed pruning watermark, verbatim: no revision from it on may be missing."""
    audit_log_history: list[dict[str, Any]] = Field(default_factory=list)
    """Entries of revisions pruned from the status, verbatim as the audit log recorded them (newest
    first): each carries its own signature."""
    verification: Verification


class AuditLogCheck(ReportModel):
    path: str
    records: int
    ok: bool
    line: int | None = None
    problem: str | None = None
    signed: int = 0
    unsigned: int = 0
    signatures_checked: bool = False
    """False when no public keys were available: signatures were counted, not verified."""


class Report(ReportModel):
    schema_: SchemaVersion = Field(default=REPORT_SCHEMA, alias="schema")
    generated_at: datetime
    generated_by: str
    namespace: str
    deployment: str | None = None
    """The one deployment reported, or null for every deployment in the namespace."""
    window: Window
    at: datetime | None = None
    deployments: list[DeploymentReport]
    audit_log: AuditLogCheck | None = None
    keys: list[str] | None = None
    """The key ids the report's signatures were checked against; null when none were available."""

    @property
    def ok(self) -> bool:
        chains = [d.verification.history.ok for d in self.deployments]
        chains += [d.verification.audit_log.ok for d in self.deployments if d.verification.audit_log]
        return all(chains) and (self.audit_log is None or self.audit_log.ok)
