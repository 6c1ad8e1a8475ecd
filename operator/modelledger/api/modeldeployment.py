"""ModelDeployment: which ModelVersion serves, how it rolls back, and the audited history of what served."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from modelledger.api.common import (
    CONDITIONS_LIST,
    LONG_TEXT,
    NAME_KEYED_LIST,
    SET_LIST,
    SHORT_TEXT,
    URI_LENGTH,
    ApiModel,
    Condition,
    Digest,
    DnsLabel,
    ObjectName,
    Timestamp,
    require_unique,
)
from modelledger.api.duration import Duration, Interval
from modelledger.api.modeldeploymentrequest import (
    REASON_LENGTH,
    USERNAME_LENGTH,
    RequestAction,
    RequestPhase,
)
from modelledger.api.podtemplate import PodTemplate

# One model's serving fleet stays well under this; a typo (`replicas: 20000`, or an autoscaler
# misconfigured through the scale subresource, which the same schema validates) would otherwise ask
# the scheduler for pods by the thousand before a ResourceQuota, if any, stopped it.
MAX_REPLICAS = 1000
REVISION_KEYED_LIST = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["revision"]}
PROMQL_LENGTH = 4096
HISTORY_REASON_LENGTH = 2048  # a 1024-character reason, and room for what the operator adds to it


class Comparator(StrEnum):
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    EQ = "=="
    NE = "!="


class Aggregate(StrEnum):
    MAX = "max"
    MIN = "min"
    SUM = "sum"
    AVG = "avg"


class Outcome(StrEnum):
    """What a rule counts as when Prometheus returns no data or fails."""

    HOLD = "Hold"
    BREACH = "Breach"
    PASS = "Pass"


class ApprovableAction(StrEnum):
    """The request actions that four-eyes rules can hold for approval."""

    ROLLBACK = "Rollback"
    MARK_STABLE = "MarkStable"
    RETRY = "Retry"


class Stability(ApiModel):
    """When a revision is marked stable automatically."""

    bake_time: Duration = timedelta(minutes=10)
    """How long the revision must serve fully available with every rule passing before it is marked stable."""


class Prometheus(ApiModel):
    """The Prometheus the rules query: a source the admins defined, or (where they allow it) a URL."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.source) != has(self.url)",
                    "message": "name exactly one of source (an admin-defined Prometheus) and url",
                }
            ]
        }
    )

    source: DnsLabel | None = None
    """The name of a Prometheus source defined by the operator's admins (`--prometheus-sources`)."""
    url: Annotated[str, Field(min_length=1, max_length=2048, pattern=r"^https?://[^\s]+$")] | None = None
    """A raw base URL, e.g. `http://prometheus.monitoring:9090`: accepted only where the admins allow
    raw URLs, and queried without the operator's credentials."""

    @model_validator(mode="after")
    def _one_of(self) -> Prometheus:
        if (self.source is None) == (self.url is None):
            raise ValueError("name exactly one of source (an admin-defined Prometheus) and url")
        return self


class RollbackRule(ApiModel):
    """A PromQL condition that, true for `for`, rolls the deployment back to its last stable revision."""

    name: DnsLabel
    """The rule's name, unique within the deployment; it appears in history, events and the actor."""
    query: Annotated[str, Field(min_length=1, max_length=PROMQL_LENGTH)]
    """PromQL; `{{namespace}}`, `{{deployment}}`, `{{model}}`, `{{version}}` (the ModelVersion's
    `spec.version`) and `{{versionName}}` (its object name) are substituted first."""
    aggregate: Annotated[Aggregate, Field(strict=False)] = Aggregate.MAX
    """How a vector result is reduced to one number: `max`, `min`, `sum` or `avg`."""
    comparator: Annotated[Comparator, Field(strict=False)]
    """How the value is compared with the threshold: `>`, `>=`, `<`, `<=`, `==` or `!=`; true means breach."""
    threshold: float
    """The number the aggregated value is compared with."""
    for_: Annotated[Duration, Field(alias="for")] = timedelta(minutes=1)
    """How long the breach must hold before the rollback happens."""
    on_no_data: Annotated[Outcome, Field(strict=False)] = Outcome.HOLD
    """What an empty result (or only NaN/±Inf) counts as: `Hold` (no evidence), `Breach` or `Pass`."""
    on_error: Annotated[Outcome, Field(strict=False)] = Outcome.HOLD
    """What a failed query (Prometheus down, timeout, bad query) counts as: `Hold`, `Breach` or `Pass`."""


class Rollback(ApiModel):
    """Automatic rollback: the rules, how often they run, and how often a rollback may happen."""

    automatic: bool = True
    """Roll back automatically when a rule breaches; when false, breaches are only reported."""
    interval: Interval = timedelta(seconds=15)
    """How often the rules are evaluated: at least 1s."""
    cooldown: Duration = timedelta(minutes=5)
    """The least time between two automatic rollbacks of this deployment."""
    prometheus: Prometheus | None = None
    """The Prometheus to query; the operator's default when left out."""
    rules: Annotated[list[RollbackRule], Field(max_length=32, json_schema_extra=NAME_KEYED_LIST)] = Field(
        default_factory=list
    )
    """The rollback rules; names are unique."""

    @field_validator("rules")
    @classmethod
    def _rule_names_unique(cls, rules: list[RollbackRule]) -> list[RollbackRule]:
        require_unique([rule.name for rule in rules], "rule name")
        return rules


class Approval(ApiModel):
    """Four-eyes: which requests need approvals, how many, from whom, and for how long they wait."""

    required_for: Annotated[
        list[Annotated[ApprovableAction, Field(strict=False)]],
        Field(max_length=3, json_schema_extra=SET_LIST),
    ] = Field(default_factory=list)
    """The actions that wait for approvals: any of `Rollback`, `MarkStable` and `Retry`."""
    approvals: Annotated[int, Field(ge=1, le=10)] = 1
    """How many distinct users other than the requester must approve."""
    approver_groups: Annotated[list[Annotated[str, Field(max_length=SHORT_TEXT)]], Field(max_length=32)] = (
        Field(default_factory=list)
    )
    """Only approvals from members of these groups count; any user allowed to approve when empty."""
    timeout: Duration = timedelta(hours=1)
    """How long a request waits for its approvals before it is `Expired`."""

    @field_validator("required_for")
    @classmethod
    def _actions_unique(cls, actions: list[ApprovableAction]) -> list[ApprovableAction]:
        require_unique([action.value for action in actions], "action")
        return actions


class ModelDeploymentSpec(ApiModel):
    """The desired state, owned by Git: which version serves and how it is watched."""

    model_name: DnsLabel
    """The model deployed; every version served must have this `spec.modelName`."""
    version: ObjectName
    """The name of the ModelVersion to serve (in this namespace)."""
    replicas: Annotated[int, Field(ge=0, le=MAX_REPLICAS)] = 1
    """How many serving pods (at most 1000); scalable through the scale subresource."""
    template: PodTemplate = Field(default_factory=PodTemplate)
    """Overrides of the serving pod, allowlisted to stay within Pod Security restricted.

    The model container's resources, env, envFrom, volumeMounts, probes, imagePullPolicy and (tightened)
    securityContext; the pod's nodeSelector, tolerations, affinity, topologySpreadConstraints,
    priorityClassName, configMap/secret/emptyDir/projected volumes and (tightened) podSecurityContext.
    Any other pod or container field is rejected, naming it.
    """
    revision_history_limit: Annotated[int, Field(ge=1, le=100)] = 10
    """How many revisions the history keeps; the stable and the serving revision are never pruned."""
    stability: Stability = Field(default_factory=Stability)
    """When a revision is marked stable automatically."""
    rollback: Rollback = Field(default_factory=Rollback)
    """Automatic rollback rules."""
    approval: Approval = Field(default_factory=Approval)
    """Four-eyes rules for people's requests; automatic rollbacks never wait for approval."""


class DeploymentPhase(StrEnum):
    PROGRESSING = "Progressing"
    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


class RevisionCause(StrEnum):
    DEPLOY = "Deploy"
    AUTOMATIC_ROLLBACK = "AutomaticRollback"
    MANUAL_ROLLBACK = "ManualRollback"
    REVOCATION = "Revocation"


class RuleState(StrEnum):
    PASS = "Pass"
    PENDING = "Pending"
    BREACHED = "Breached"
    NO_DATA = "NoData"
    ERROR = "Error"


class Evidence(ApiModel):
    """Why a rule fired: the resolved query, the value seen and what it was compared with."""

    query: Annotated[str, Field(max_length=PROMQL_LENGTH * 2)]
    """The PromQL as run, placeholders substituted."""
    value: float | None = None
    """The aggregated value; absent when there was no data."""
    threshold: float
    """The rule's threshold at the time."""
    comparator: Annotated[Comparator, Field(strict=False)]
    """The rule's comparator at the time."""


class PinnedComponent(ApiModel):
    """A pipeline component as it served."""

    name: DnsLabel
    """The component's name."""
    digest: Digest
    """The component's content digest."""


class PinnedPipeline(ApiModel):
    """The exact serving pipeline of a revision, so a rollback restores and an audit proves what served."""

    artifact_digest: Digest
    """The model artifact's digest."""
    image: Annotated[str, Field(min_length=1, max_length=1024)]
    """The serving image, as pinned in the ModelVersion."""
    components: Annotated[list[PinnedComponent], Field(max_length=32, json_schema_extra=NAME_KEYED_LIST)] = (
        Field(default_factory=list)
    )
    """The pipeline components' digests."""
    version_uid: Annotated[str, Field(max_length=128)] | None = None
    """The ModelVersion object's UID: a version deleted and re-created under the same name differs."""


SIGNATURE_PATTERN = r"^[A-Za-z0-9+/]{86}==$"
Signature = Annotated[str, Field(pattern=SIGNATURE_PATTERN, max_length=88)]
"""An Ed25519 signature, base64 (88 characters)."""


class StableMark(ApiModel):
    """Who marked a revision stable and when, signed by the operator (flipping `stable` by hand fails)."""

    at: Timestamp
    """When the revision was marked stable."""
    actor: Annotated[str, Field(min_length=1, max_length=USERNAME_LENGTH)]
    """`modelledger/bake` after a healthy bake time, or the person who asked."""
    actor_verified: bool = False
    """Whether the actor is an authenticated identity (or the operator itself)."""
    approvers: Annotated[list[Annotated[str, Field(max_length=USERNAME_LENGTH)]], Field(max_length=32)] = (
        Field(default_factory=list)
    )
    """The users who approved the marking (four-eyes)."""
    request_name: ObjectName | None = None
    """The ModelDeploymentRequest carried out, if any."""
    key_id: Digest | None = None
    """The signing key's id (sha256 of its public key, DER SubjectPublicKeyInfo)."""
    signature: Signature | None = None
    """Ed25519 over the entry's hash and this marking; absent when the operator had no key."""


class Watermark(ApiModel):
    """Revisions below `revision` may have been pruned; every revision from it on must be present."""

    revision: Annotated[int, Field(ge=1)]
    """The oldest revision of the unbroken newest run kept in the history."""
    key_id: Digest | None = None
    """The signing key's id."""
    signature: Signature | None = None
    """Ed25519 over the deployment and `revision`."""


class Seal(ApiModel):
    """The operator's signature over its whole status, so no field of it is trusted unless it wrote it."""

    key_id: Digest
    """The signing key's id."""
    signature: Signature
    """Ed25519 over the deployment's UID and the sha256 of the status's canonical JSON (seal left out)."""


class GitOpsTool(StrEnum):
    ARGOCD = "ArgoCD"


class LineageTracking(StrEnum):
    """Which of ArgoCD's tracking marks named the Application."""

    ANNOTATION = "annotation"  # argocd.argoproj.io/tracking-id
    LABEL = "label"  # app.kubernetes.io/instance (ArgoCD's legacy label tracking)


class GitSource(ApiModel):
    """One source of a multi-source Application, as synced."""

    repository: Annotated[str, Field(max_length=URI_LENGTH)]
    """The source's `repoURL`."""
    revision: Annotated[str, Field(max_length=SHORT_TEXT)] | None = None
    """The Git commit (or chart version) synced from it."""


class GitOpsLineage(ApiModel):
    """The GitOps change behind a Deploy: the Application that synced it, its repository, the synced
    commit and who started the sync. Recorded only when the Application proves it manages this object."""

    tool: Annotated[GitOpsTool, Field(strict=False)] = GitOpsTool.ARGOCD
    """The GitOps controller: `ArgoCD`."""
    tracked_by: Annotated[LineageTracking, Field(strict=False)]
    """`annotation` (`argocd.argoproj.io/tracking-id`) or `label` (`app.kubernetes.io/instance`)."""
    application: Annotated[str, Field(max_length=SHORT_TEXT * 2 + 1)] = ""
    """The Application looked up, `namespace/name` (empty when the tracking mark could not be parsed)."""
    trusted: bool = False
    """Whether the Application lists this very object in `status.resources` (and lives in a namespace
    the operator's admins allow): only then are the fields below recorded."""
    reason: Annotated[str, Field(max_length=64)] | None = None
    """Why the lineage is not recorded, e.g. `Forbidden`, `NotFound`, `Unreachable`, `NotListed`,
    `NamespaceNotAllowed`, `InvalidTrackingId`, `TrackingIdMismatch`."""
    message: Annotated[str, Field(max_length=1024)] | None = None
    """Detail of `reason`."""
    repository: Annotated[str, Field(max_length=URI_LENGTH)] | None = None
    """The Git repository synced (`repoURL` of the sync's source, or of the first of its sources)."""
    revision: Annotated[str, Field(max_length=SHORT_TEXT)] | None = None
    """The Git commit synced (the sync result's revision, else `status.sync.revision`)."""
    sources: Annotated[list[GitSource], Field(max_length=16)] | None = None
    """Every source of a multi-source Application with its synced revision."""
    initiated_by: Annotated[str, Field(max_length=USERNAME_LENGTH)] | None = None
    """The ArgoCD user who started the sync (`operation.initiatedBy.username`), as ArgoCD recorded it."""
    automated: bool | None = None
    """Whether the sync was started by ArgoCD's automated sync policy."""
    sync_started_at: Timestamp | None = None
    """When the sync operation started (`status.operationState.startedAt`)."""


class HistoryEntry(ApiModel):
    """One revision: a change of what serves, with its cause, actor, evidence and hash-chain link."""

    revision: Annotated[int, Field(ge=1)]
    """The revision number, increasing by one per change."""
    version: ObjectName
    """The ModelVersion served from this revision on."""
    cause: Annotated[RevisionCause, Field(strict=False)]
    """`Deploy`, `AutomaticRollback`, `ManualRollback` or `Revocation`."""
    rule: DnsLabel | None = None
    """The rule that triggered an automatic rollback."""
    reason: Annotated[str, Field(max_length=LONG_TEXT)] = ""
    """A human-readable reason (the person's words for a manual rollback). The operator writes at most
    `HISTORY_REASON_LENGTH` characters (a revocation's reason names the version too); longer ones
    are read, for histories written before the bound."""
    evidence: Evidence | None = None
    """The measurement behind an automatic rollback."""
    at: Timestamp
    """When the revision was decided."""
    actor: Annotated[str, Field(min_length=1, max_length=USERNAME_LENGTH)]
    """Who decided: the authenticated user, `modelledger/rule:<name>` (and the like) for the operator's
    own decisions, or `unverified` when the identity could not be captured."""
    actor_groups: Annotated[list[Annotated[str, Field(max_length=SHORT_TEXT)]], Field(max_length=128)] = (
        Field(default_factory=list)
    )
    """The authenticated user's groups."""
    actor_verified: bool | None = None
    """Whether `actor` was authenticated by the apiserver (or is the operator); absent on old entries."""
    approvers: Annotated[list[Annotated[str, Field(max_length=USERNAME_LENGTH)]], Field(max_length=32)] = (
        Field(default_factory=list)
    )
    """The users whose approvals let a request through (four-eyes)."""
    request_name: ObjectName | None = None
    """The ModelDeploymentRequest this revision carried out, if any."""
    request_id: Annotated[str, Field(max_length=64)] | None = None
    """Legacy: the status request this revision carried out (entries written before requests were objects)."""
    stable: bool = False
    """Whether this revision has been marked stable (automatically after bakeTime, or by a person)."""
    stable_mark: StableMark | None = None
    """Who marked it stable, signed; required whenever `stable` is true on a signed entry."""
    pipeline: PinnedPipeline | None = None
    """The pinned pipeline of the served version."""
    gitops: GitOpsLineage | None = None
    """Deploy entries of an object ArgoCD tracks: the Application, repository, commit and sync initiator
    (or why they are unavailable). Hashed and signed with the rest of the entry."""
    prev_hash: Annotated[str, Field(max_length=71, pattern=r"^(sha256:[0-9a-f]{64})?$")] = ""
    """The previous revision's `hash` (empty for the first): kept so a pruned history still verifies."""
    hash: Digest
    """sha256 over `prevHash` and this entry's canonical JSON (every field but `hash`, `stable`,
    `stableMark`, `signature` and `keyId`)."""
    key_id: Digest | None = None
    """The signing key's id (sha256 of its public key, DER SubjectPublicKeyInfo)."""
    signature: Signature | None = None
    """Ed25519 over the deployment and `hash`; absent when the operator had no signing key."""


class RuleStatus(ApiModel):
    """The last evaluation of one rollback rule."""

    name: DnsLabel
    """The rule's name."""
    state: Annotated[RuleState, Field(strict=False)]
    """`Pass`, `Pending` (breaching, not yet for `for`), `Breached`, `NoData` or `Error`."""
    value: float | None = None
    """The last aggregated value; absent when there was none."""
    since: Timestamp | None = None
    """When the rule entered this state."""
    message: Annotated[str, Field(max_length=LONG_TEXT)] = ""
    """Detail, e.g. the query error."""


class HandledRequest(ApiModel):
    """A decided request, kept in the status so it is never carried out twice (its object may go)."""

    name: ObjectName
    """The ModelDeploymentRequest's name."""
    action: Annotated[RequestAction, Field(strict=False)]
    """The request's action."""
    phase: Annotated[RequestPhase, Field(strict=False)]
    """`Applied`, `Rejected` or `Expired`."""
    message: Annotated[str, Field(max_length=REASON_LENGTH)] = ""
    """What happened, e.g. the revision created or why it was refused."""
    revision: Annotated[int, Field(ge=1)] | None = None
    """The revision the request created or marked, if any."""
    approvers: Annotated[list[Annotated[str, Field(max_length=USERNAME_LENGTH)]], Field(max_length=32)] = (
        Field(default_factory=list)
    )
    """The users whose approvals counted."""
    uid: Annotated[str, Field(max_length=128)] = ""
    """The request object's UID (a request re-created under the same name is a new request)."""
    at: Timestamp
    """When the operator decided it."""


class ModelDeploymentStatus(ApiModel):
    """What serves, why, and the bounded history of every change (newest first)."""

    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The `.metadata.generation` this status was computed from."""
    phase: Annotated[DeploymentPhase, Field(strict=False)] | None = None
    """`Progressing`, `Healthy`, `Degraded`, `RolledBack` or `Failed`."""
    desired_version: ObjectName | None = None
    """The version Git asks for (`spec.version` as last seen)."""
    serving_version: ObjectName | None = None
    """The version actually serving."""
    current_revision: Annotated[int, Field(ge=1)] | None = None
    """The revision serving now."""
    stable_revision: Annotated[int, Field(ge=1)] | None = None
    """The newest revision marked stable: the target of an automatic rollback."""
    replicas: Annotated[int, Field(ge=0)] | None = None
    """Serving pods observed (the scale subresource's status replicas)."""
    selector: Annotated[str, Field(max_length=LONG_TEXT)] | None = None
    """The serving pods' label selector, for the scale subresource (HorizontalPodAutoscaler)."""
    quarantined: Annotated[list[ObjectName], Field(max_length=256, json_schema_extra=SET_LIST)] = Field(
        default_factory=list
    )
    """Versions rolled back from: not served again until Git names another version or a person retries."""
    history: Annotated[list[HistoryEntry], Field(max_length=128, json_schema_extra=REVISION_KEYED_LIST)] = (
        Field(default_factory=list)
    )
    """Revisions, newest first, bounded by revisionHistoryLimit (the stable and serving ones are kept)."""
    rules: Annotated[list[RuleStatus], Field(max_length=32, json_schema_extra=NAME_KEYED_LIST)] = Field(
        default_factory=list
    )
    """The last evaluation of each rollback rule."""
    handled_requests: Annotated[
        list[HandledRequest], Field(max_length=64, json_schema_extra=NAME_KEYED_LIST)
    ] = Field(default_factory=list)
    """The most recent decided ModelDeploymentRequests, so none is carried out twice."""
    history_watermark: Watermark | None = None
    """Set once history was pruned: revisions below it may be missing, none above it."""
    seal: Seal | None = None
    """The operator's signature over this status; the operator acts on no status it cannot verify."""
    conditions: Annotated[list[Condition], Field(max_length=32, json_schema_extra=CONDITIONS_LIST)] = Field(
        default_factory=list
    )
    """Available, Progressing, RolledBack, RulesHealthy, PrometheusReachable."""

    @field_validator("history")
    @classmethod
    def _revisions_unique(cls, history: list[HistoryEntry]) -> list[HistoryEntry]:
        require_unique([str(entry.revision) for entry in history], "history revision")
        return history

    @field_validator("quarantined")
    @classmethod
    def _quarantined_unique(cls, quarantined: list[str]) -> list[str]:
        require_unique(quarantined, "quarantined version")
        return quarantined

    @field_validator("rules")
    @classmethod
    def _rule_names_unique(cls, rules: list[RuleStatus]) -> list[RuleStatus]:
        require_unique([rule.name for rule in rules], "rule name")
        return rules

    @field_validator("handled_requests", mode="before")
    @classmethod
    def _drop_legacy_requests(cls, requests: Any) -> Any:
        # Version 0.1 kept outcomes of status requests here ({id, kind, outcome}); that path is gone,
        # and the history keeps their requestId. The apiserver prunes their fields to this schema's, so
        # they arrive without a `name`: they are not records of ModelDeploymentRequests.
        if isinstance(requests, list):
            return [r for r in requests if not (isinstance(r, dict) and "name" not in r)]
        return requests

    @field_validator("handled_requests")
    @classmethod
    def _request_names_unique(cls, requests: list[HandledRequest]) -> list[HandledRequest]:
        require_unique([request.name for request in requests], "request name")
        return requests

    @field_validator("conditions")
    @classmethod
    def _condition_types_unique(cls, conditions: list[Condition]) -> list[Condition]:
        require_unique([condition.type for condition in conditions], "condition type")
        return conditions


class ModelDeployment(ApiModel):
    """Serves one ModelVersion of a model and rolls back automatically when a rule breaches."""

    api_version: Literal["modelledger.io/v1alpha1"] = "modelledger.io/v1alpha1"
    """`modelledger.io/v1alpha1`."""
    kind: Literal["ModelDeployment"] = "ModelDeployment"
    """`ModelDeployment`."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Standard object metadata."""
    spec: ModelDeploymentSpec
    """The desired state, owned by Git; the operator never writes it."""
    status: ModelDeploymentStatus | None = None
    """Observed state and signed history, written by the operator only."""
