"""What a decision is made of and what it produces: the situation, the plan, and the few steps every
part of a decision shares (append a revision, quarantine, conditions, the pin check). Pure: no I/O,
time injected through the situation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from modelledger.api import (
    Condition,
    ConditionStatus,
    Evidence,
    GitOpsLineage,
    HistoryEntry,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    ModelVersion,
    RequestAction,
    RequestPhase,
    RevisionCause,
    RuleStatus,
)
from modelledger.api.modeldeployment import HISTORY_REASON_LENGTH
from modelledger.core import history, trust
from modelledger.core.actors import NOBODY_VERIFIED, Identity
from modelledger.core.trust import HistoryCheck
from modelledger.core.workload import WorkloadState, pinned_pipeline

HANDLED_REQUESTS_KEPT = 64
BAKE_ACTOR = "modelledger/bake"
REVOCATION_ACTOR = "modelledger/revocation"
MESSAGE_LIMIT = 1024


def rule_actor(rule: str) -> str:
    return f"modelledger/rule:{rule}"


@dataclass(frozen=True)
class Request:
    """A ModelDeploymentRequest as the decisions see it (parsed and checked by the handler)."""

    name: str
    uid: str
    action: RequestAction
    requester: Identity
    created: datetime  # metadata.creationTimestamp: set by the apiserver
    reason: str = ""
    revision: int | None = None
    approves: str | None = None


@dataclass(frozen=True)
class RequestOutcome:
    phase: RequestPhase
    message: str
    revision: int | None = None
    approvers: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuditSink:
    """The audit log file as the pass found it: taking records, or not (they wait in memory)."""

    healthy: bool = True
    problem: str = ""  # why it cannot be written (the OS error), when unhealthy
    blocks: bool = True  # --audit-failure=block: people's decisions wait while it is unhealthy


@dataclass(frozen=True)
class Situation:
    """Everything one reconcile decides from. `now` is injected: the core never reads the clock."""

    namespace: str
    name: str
    generation: int
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus
    versions: Mapping[str, ModelVersion]  # the namespace's ModelVersions by name
    workload: WorkloadState | None
    now: datetime
    spec_actor: Identity = NOBODY_VERIFIED  # who last set spec.version, as admission stamped it
    rules: Sequence[RuleStatus] | None = (
        None  # a fresh evaluation of the serving revision; None keeps the recorded
    )
    query_errors: Mapping[str, str] | None = None  # rule -> why its query failed, in the fresh evaluation
    queries: Mapping[str, str] | None = None  # rule -> the query as sent (printed, tenancy enforced)
    requests: Sequence[Request] = ()  # this deployment's undecided requests (and their approvals)
    trust: HistoryCheck | None = None  # the status's verification; None: not checked (tests of the rest)
    signing: bool = True  # whether the operator holds a signing key
    adopt_unsigned: bool = False  # take an unsigned (pre-signing) history as it is, once, and sign on
    audit_sink: AuditSink | None = None  # None: no audit file (the log stream only), nothing to report
    lineage: GitOpsLineage | None = None  # the GitOps lineage of spec.version (core/gitops.py), if tracked


@dataclass(frozen=True)
class Decision:
    """One auditable decision: a Kubernetes Event, an audit log line, and (often) a revision."""

    reason: str
    message: str
    warning: bool = False
    actor: str = "modelledger"
    revision: int | None = None
    version: str | None = None
    cause: RevisionCause | None = None
    evidence: Evidence | None = None
    rule: str | None = None
    request: str | None = None


@dataclass
class Plan:
    status: ModelDeploymentStatus
    decisions: list[Decision] = field(default_factory=list)
    outcomes: dict[str, RequestOutcome] = field(default_factory=dict)  # request name -> its answer
    hold: str | None = None  # why the workload must be left as it is (HistoryTampered, ...)
    sealable: bool = True  # False: the status is not the operator's, so it must not be signed as such
    adopted: bool = False  # an unsigned history taken on: sign every entry of it from now on

    @property
    def serving(self) -> HistoryEntry | None:
        return history.current(self.status.history, self.status.current_revision)


class Hold(Exception):
    """Stop deciding: something the decision would act on does not verify."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def working_copy(status: ModelDeploymentStatus) -> ModelDeploymentStatus:
    """A copy whose lists the decision may replace. Entries and conditions are never changed in place
    (always `model_copy`), so they are shared: a deep copy of a long history is most of a decision's
    time."""
    lists = ("history", "quarantined", "rules", "handled_requests", "conditions")
    return status.model_copy(update={name: list(getattr(status, name)) for name in lists})


def usable(s: Situation, version: str) -> bool:
    found = s.versions.get(version)
    return found is not None and not found.spec.revoked


def pin_problem(s: Situation, entry: HistoryEntry) -> str | None:
    version = s.versions.get(entry.version)
    if version is None:
        return None
    problem = trust.pipeline_mismatch(entry, version, str(version.metadata.get("uid") or ""))
    return f"revision {entry.revision}: {problem}" if problem else None


def require_pinned(s: Situation, entry: HistoryEntry | None) -> None:
    """Serve a revision only as it was pinned: the same ModelVersion object with the same digests."""
    if entry is not None and (problem := pin_problem(s, entry)):
        raise Hold("PipelineMismatch", problem)


def revision(
    s: Situation,
    plan: Plan,
    version: str,
    cause: RevisionCause,
    actor: Identity,
    *,
    reason: str = "",
    rule: str | None = None,
    evidence: Evidence | None = None,
    approvers: Sequence[str] = (),
    request_name: str | None = None,
    gitops: GitOpsLineage | None = None,
) -> HistoryEntry:
    """Append a revision serving `version` and make it current."""
    st = plan.status
    st.history = history.append(
        st.history,
        version=version,
        cause=cause,
        actor=actor.name,
        actor_verified=actor.verified,
        actor_groups=actor.groups if actor.verified else (),
        at=s.now,
        pipeline=pinned_pipeline(s.versions[version]),
        reason=reason[:HISTORY_REASON_LENGTH],
        rule=rule,
        evidence=evidence,
        approvers=approvers,
        request_name=request_name,
        gitops=gitops,
    )
    st.current_revision = st.history[0].revision
    return st.history[0]


def quarantine(plan: Plan, version: str) -> None:
    if version not in plan.status.quarantined:
        plan.status.quarantined = [*plan.status.quarantined, version]


def condition(status: ModelDeploymentStatus, kind: str) -> Condition | None:
    return next((c for c in status.conditions if c.type == kind), None)


def set_condition(s: Situation, plan: Plan, kind: str, true: bool, reason: str, message: str) -> bool:
    """Set a condition; returns True when its status or reason changed (a transition worth an Event)."""
    st = plan.status
    status = ConditionStatus.TRUE if true else ConditionStatus.FALSE
    old = condition(s.status, kind)
    changed = old is None or old.status is not status or old.reason != reason
    new = Condition(
        type=kind,
        status=status,
        reason=reason,
        message=message[:1024],
        last_transition_time=s.now if old is None or old.status is not status else old.last_transition_time,
        observed_generation=s.generation,
    )
    st.conditions = [c for c in st.conditions if c.type != kind] + [new]
    st.conditions.sort(key=lambda c: c.type)
    return changed
