"""The one decision function: from spec, status and what the cluster shows, the next status.

Level-triggered and idempotent: the same situation gives the same plan, and a plan applied gives a
situation whose plan changes nothing. The workload is derived from the status (the serving revision),
so the status is written first and the workload follows; a crash in between converges on restart.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from modelledger.api import (
    Condition,
    ConditionStatus,
    DeploymentPhase,
    Evidence,
    HandledRequest,
    HistoryEntry,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    ModelVersion,
    RequestAction,
    RequestPhase,
    RevisionCause,
    RuleState,
    RuleStatus,
    StableMark,
    Watermark,
    format_duration,
)
from modelledger.api.modeldeploymentrequest import REASON_LENGTH
from modelledger.core import history, promql, trust
from modelledger.core.actors import NOBODY_VERIFIED, OPERATOR, UNVERIFIED, Identity
from modelledger.core.rules import Breach, verdict
from modelledger.core.trust import HistoryCheck, Verdict
from modelledger.core.workload import WorkloadState, pinned_pipeline, selector_string

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


class _Hold(Exception):
    """Stop deciding: something the decision would act on does not verify."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _working_copy(status: ModelDeploymentStatus) -> ModelDeploymentStatus:
    """A copy whose lists the decision may replace. Entries and conditions are never changed in place
    (always `model_copy`), so they are shared: a deep copy of a long history is most of a decision's
    time."""
    lists = ("history", "quarantined", "rules", "handled_requests", "conditions")
    return status.model_copy(update={name: list(getattr(status, name)) for name in lists})


def reconcile(s: Situation) -> Plan:
    if (refused := _refuse_unverifiable(s)) is not None:
        return refused
    try:
        return _decide(s)
    except _Hold as hold:
        return _held(s, hold.reason, hold.message, sealable=True)


def _decide(s: Situation) -> Plan:
    plan = Plan(_working_copy(s.status))
    st = plan.status
    _require_pinned(s, plan.serving)
    adopted = plan.adopted = _adopt(s, plan)
    retried_by = _handle_requests(s, plan)
    _handle_revocation(s, plan)
    problem = _deploy_desired(s, plan, retried_by)
    if s.rules is not None:
        st.rules = list(s.rules)
    _forget_rules_of_a_replaced_revision(s, plan)
    degraded = _automatic_rollback(s, plan) or _revoked_without_target(s, plan)
    _forget_rules_of_a_replaced_revision(s, plan)
    _mark_stable_after_bake(s, plan)
    _summarise(s, plan, problem, degraded)
    _verified_condition(s, plan, adopted)
    st.history = history.prune(st.history, s.spec.revision_history_limit, st.current_revision)
    _set_watermark(plan)
    # Quarantine only what history still names (and the desired version: lifting it would serve it).
    named = {e.version for e in st.history} | {s.spec.version}
    st.quarantined = [v for v in st.quarantined if v in named]
    return plan


# --- trust: act only on a status the operator can verify as its own ---------------------------------


def _refuse_unverifiable(s: Situation) -> Plan | None:
    check = s.trust
    if check is None:
        return None
    if check.verdict is Verdict.TAMPERED:
        return _held(s, "HistoryTampered", f"history does not verify: {check.describe()}", sealable=False)
    if (check.signed or s.status.seal is not None) and not s.signing:
        message = "the history is signed but this operator has no signing key, so it cannot extend it"
        return _held(s, "SigningKeyUnavailable", message, sealable=False)
    if check.verdict is Verdict.UNSIGNED and s.signing and not s.adopt_unsigned:
        message = (
            f"the history is unsigned ({check.describe()}); the operator signs every entry it writes, so "
            "an unsigned history was written before signing or by someone else. See docs/security.md "
            "(repair) and docs/upgrade.md (--adopt-unsigned-history)"
        )
        return _held(s, "HistoryUnsigned", message, sealable=False)
    return None


def _held(s: Situation, reason: str, message: str, *, sealable: bool) -> Plan:
    """Touch nothing that serves: say why, once (an Event and an audit record), and wait for a person."""
    plan = Plan(_working_copy(s.status), hold=reason, sealable=sealable)
    if _set_condition(s, plan, "HistoryVerified", False, reason, message):
        plan.decisions.append(Decision(reason, message[:MESSAGE_LIMIT], warning=True))
    _set_condition(s, plan, "Ready", False, reason, message)
    plan.status.phase = DeploymentPhase.FAILED
    plan.status.observed_generation = s.generation
    return plan


def _adopt(s: Situation, plan: Plan) -> bool:
    """An unsigned history taken on with --adopt-unsigned-history: said once, then signed from here on."""
    adopting = s.trust is not None and s.trust.verdict is Verdict.UNSIGNED and s.signing
    if adopting:
        # Marked stable before signing: the mark says it is taken on as it was, by nobody verified.
        plan.status.history = [
            e.model_copy(update={"stable_mark": StableMark(at=s.now, actor=UNVERIFIED)})
            if e.stable and e.stable_mark is None
            else e
            for e in plan.status.history
        ]
        plan.decisions.append(
            Decision(
                "HistoryAdopted",
                f"unsigned history adopted as it is ({s.trust.describe() if s.trust else ''}); "
                "the operator signs it from now on",
                warning=True,
            )
        )
    return adopting


def _verified_condition(s: Situation, plan: Plan, adopted: bool) -> None:
    if s.trust is None:
        return
    if not s.signing:
        _set_condition(
            s, plan, "HistoryVerified", False, "Unsigned",
            "the operator has no signing key: its entries are unsigned and verify as such",
        )  # fmt: skip
        return
    reason = "Adopted" if adopted else "Signed"
    _set_condition(s, plan, "HistoryVerified", True, reason, "chain, signatures and status seal verify")


def _pin_problem(s: Situation, entry: HistoryEntry) -> str | None:
    version = s.versions.get(entry.version)
    if version is None:
        return None
    problem = trust.pipeline_mismatch(entry, version, str(version.metadata.get("uid") or ""))
    return f"revision {entry.revision}: {problem}" if problem else None


def _require_pinned(s: Situation, entry: HistoryEntry | None) -> None:
    """Serve a revision only as it was pinned: the same ModelVersion object with the same digests."""
    if entry is not None and (problem := _pin_problem(s, entry)):
        raise _Hold("PipelineMismatch", problem)


def _set_watermark(plan: Plan) -> None:
    """After pruning, record (signed, later) below which revision gaps are pruning and not tampering."""
    st = plan.status
    start = history.unbroken_from(st.history)
    if start is None or start <= 1:
        return
    if st.history_watermark is None or st.history_watermark.revision != start:
        st.history_watermark = Watermark(revision=start)


def _forget_rules_of_a_replaced_revision(s: Situation, plan: Plan) -> None:
    """Rules judge the serving revision: a new one starts without the old one's states."""
    if plan.status.current_revision != s.status.current_revision:
        plan.status.rules = []


# --- requests from people (ModelDeploymentRequest objects), each decided exactly once ---------------


def _handled(plan: Plan, request: Request) -> HandledRequest | None:
    return next(
        (h for h in plan.status.handled_requests if h.name == request.name and h.uid == request.uid), None
    )


def _record(s: Situation, plan: Plan, request: Request, outcome: RequestOutcome) -> None:
    """Keep the decision in status (never carried out twice) and report it on the request."""
    plan.outcomes[request.name] = outcome
    if outcome.phase is RequestPhase.PENDING:
        return
    handled = HandledRequest(
        name=request.name,
        uid=request.uid,
        action=request.action,
        phase=outcome.phase,
        message=outcome.message[:REASON_LENGTH],
        revision=outcome.revision,
        approvers=list(outcome.approvers),
        at=s.now,
    )
    plan.status.handled_requests = [handled, *plan.status.handled_requests][:HANDLED_REQUESTS_KEPT]
    if outcome.phase is not RequestPhase.APPLIED:
        plan.decisions.append(
            Decision(
                "RequestRejected" if outcome.phase is RequestPhase.REJECTED else "RequestExpired",
                f"{request.action.value} request {request.name} by {request.requester.name}: "
                f"{outcome.phase.value}: {outcome.message}",
                warning=True,
                actor=request.requester.name,
                request=request.name,
            )
        )


def _handle_requests(s: Situation, plan: Plan) -> Identity | None:
    """Decide pending requests in order; returns who retried (and their approvers), if someone did."""
    retried_by: Identity | None = None
    ordered = sorted(s.requests, key=lambda r: (r.created, r.name))
    approvals = [r for r in ordered if r.action is RequestAction.APPROVE]
    for request in ordered:
        if (done := _handled(plan, request)) is not None:
            plan.outcomes[request.name] = RequestOutcome(
                done.phase, done.message, done.revision, tuple(done.approvers)
            )
            continue
        if request.action is RequestAction.APPROVE:
            continue  # decided with the request it approves, below
        outcome = _gate(s, request, approvals)
        if outcome is None:
            approvers = _counted_approvers(s, request, approvals)
            outcome = _carry_out(s, plan, request, approvers)
            if request.action is RequestAction.RETRY and outcome.phase is RequestPhase.APPLIED:
                retried_by = replace(request.requester, approvers=approvers, request=request.name)
        _record(s, plan, request, outcome)
    for approval in approvals:
        if _handled(plan, approval) is None:
            _record(s, plan, approval, _approval_outcome(s, plan, approval))
    return retried_by


def _needs_approval(s: Situation, request: Request) -> bool:
    return any(action.value == request.action.value for action in s.spec.approval.required_for)


def _approval_problem(s: Situation, target: Request, approval: Request) -> str | None:
    """Why an approval does not count, or None when it does."""
    who = approval.requester
    if not who.verified:
        return "the approver's identity is not verified (are the admission policies installed?)"
    if who.name == target.requester.name:
        return "the requester's own approval does not count"
    groups = s.spec.approval.approver_groups
    if groups and not set(groups) & set(who.groups):
        return f"{who.name} is in none of the approver groups ({', '.join(groups)})"
    return None


def _counted_approvers(s: Situation, target: Request, approvals: Sequence[Request]) -> tuple[str, ...]:
    names = {
        a.requester.name
        for a in approvals
        if a.approves == target.name and _approval_problem(s, target, a) is None
    }
    return tuple(sorted(names))


def _gate(s: Situation, request: Request, approvals: Sequence[Request]) -> RequestOutcome | None:
    """Pending, Expired or Rejected while four-eyes holds the request; None when it may go ahead."""
    if not _needs_approval(s, request):
        return None
    if not request.requester.verified:
        return RequestOutcome(
            RequestPhase.REJECTED,
            "four-eyes needs verified identities, and this requester's is not (admission policies missing)",
        )
    counted = _counted_approvers(s, request, approvals)
    wanted = s.spec.approval.approvals
    if len(counted) >= wanted:
        return None
    if s.now - request.created >= s.spec.approval.timeout:
        return RequestOutcome(
            RequestPhase.EXPIRED,
            f"{len(counted)} of {wanted} approvals within {format_duration(s.spec.approval.timeout)}",
            approvers=counted,
        )
    groups = s.spec.approval.approver_groups
    return RequestOutcome(
        RequestPhase.PENDING,
        f"waiting for {wanted - len(counted)} more approval(s)"
        + (f" from {', '.join(groups)}" if groups else "")
        + f"; approve with `modelledger approve {request.name} -n {s.namespace}`",
        approvers=counted,
    )


def _approval_outcome(s: Situation, plan: Plan, approval: Request) -> RequestOutcome:
    target = next((r for r in s.requests if r.name == approval.approves), None)
    if target is None:
        return RequestOutcome(
            RequestPhase.REJECTED, f"no request {approval.approves} on ModelDeployment {s.name}"
        )
    if problem := _approval_problem(s, target, approval):
        return RequestOutcome(RequestPhase.REJECTED, problem)
    decided = plan.outcomes.get(target.name)
    if not _needs_approval(s, target):
        return RequestOutcome(RequestPhase.REJECTED, f"{target.name} needs no approval")
    if decided is None or decided.phase is RequestPhase.PENDING:
        return RequestOutcome(RequestPhase.PENDING, f"counted for {target.name}, which still waits")
    if decided.phase is RequestPhase.APPLIED:
        return RequestOutcome(RequestPhase.APPLIED, f"counted: {target.name} was applied", decided.revision)
    return RequestOutcome(RequestPhase.REJECTED, f"{target.name} was {decided.phase.value.lower()}")


def _carry_out(s: Situation, plan: Plan, request: Request, approvers: tuple[str, ...]) -> RequestOutcome:
    if request.action is RequestAction.ROLLBACK:
        return _manual_rollback(s, plan, request, approvers)
    if request.action is RequestAction.MARK_STABLE:
        return _manual_mark_stable(s, plan, request, approvers)
    return _retry(s, plan, request, approvers)


def _usable(s: Situation, version: str) -> bool:
    found = s.versions.get(version)
    return found is not None and not found.spec.revoked


def _manual_rollback(
    s: Situation, plan: Plan, request: Request, approvers: tuple[str, ...]
) -> RequestOutcome:
    st = plan.status
    serving = plan.serving
    rejected = RequestPhase.REJECTED
    if serving is None:
        return RequestOutcome(rejected, "nothing is serving yet")
    if request.revision is not None:
        target = history.current(st.history, request.revision)
        if target is None:
            return RequestOutcome(rejected, f"no revision {request.revision} in the history")
        if target.revision == serving.revision:
            return RequestOutcome(rejected, f"revision {target.revision} is already serving")
        if not _usable(s, target.version):
            return RequestOutcome(rejected, f"version {target.version} is revoked or gone")
    else:
        target = history.newest_stable(
            st.history, other_than=serving.revision, usable=lambda v: _usable(s, v)
        )
        if target is None:
            return RequestOutcome(rejected, "no stable revision to roll back to")
    if mismatch := _pin_problem(s, target):
        plan.decisions.append(Decision("PipelineMismatch", mismatch, warning=True, request=request.name))
        return RequestOutcome(rejected, f"not served as pinned: {mismatch}")
    who = request.requester
    entry = _revision(
        s,
        plan,
        target.version,
        RevisionCause.MANUAL_ROLLBACK,
        who,
        reason=request.reason,
        approvers=approvers,
        request_name=request.name,
    )
    _quarantine(plan, serving.version)
    plan.decisions.append(
        Decision(
            "RolledBack",
            f"revision {entry.revision}: rolled back by {who.name}{_approved_by(approvers)} from "
            f"{serving.version} (revision {serving.revision}) to {target.version} "
            f"(revision {target.revision}): {request.reason}",
            warning=True,
            actor=who.name,
            revision=entry.revision,
            version=target.version,
            cause=RevisionCause.MANUAL_ROLLBACK,
            request=request.name,
        )
    )
    return RequestOutcome(
        RequestPhase.APPLIED, f"revision {entry.revision} serves {target.version}", entry.revision, approvers
    )


def _approved_by(approvers: Sequence[str]) -> str:
    return f" (approved by {', '.join(approvers)})" if approvers else ""


def _manual_mark_stable(
    s: Situation, plan: Plan, request: Request, approvers: tuple[str, ...]
) -> RequestOutcome:
    st = plan.status
    revision = request.revision or st.current_revision
    entry = history.current(st.history, revision)
    if entry is None:
        return RequestOutcome(RequestPhase.REJECTED, f"no revision {revision} in the history")
    if not entry.stable:
        who = request.requester
        mark = StableMark(
            at=s.now,
            actor=who.name,
            actor_verified=who.verified,
            approvers=list(approvers),
            request_name=request.name,
        )
        st.history = history.mark_stable(st.history, entry.revision, mark)
        plan.decisions.append(
            Decision(
                "MarkedStable",
                f"revision {entry.revision} ({entry.version}) marked stable by {who.name}"
                + _approved_by(approvers)
                + (f": {request.reason}" if request.reason else ""),
                actor=who.name,
                revision=entry.revision,
                version=entry.version,
                request=request.name,
            )
        )
    return RequestOutcome(
        RequestPhase.APPLIED, f"revision {entry.revision} is stable", entry.revision, approvers
    )


def _retry(s: Situation, plan: Plan, request: Request, approvers: tuple[str, ...]) -> RequestOutcome:
    st = plan.status
    desired = s.spec.version
    if desired not in st.quarantined:
        return RequestOutcome(RequestPhase.REJECTED, f"{desired} is not quarantined")
    if not _usable(s, desired):
        return RequestOutcome(
            RequestPhase.REJECTED, f"{desired} is revoked or gone: it cannot be served again"
        )
    st.quarantined = [v for v in st.quarantined if v != desired]
    who = request.requester
    plan.decisions.append(
        Decision(
            "QuarantineLifted",
            f"{desired} lifted from quarantine by {who.name}{_approved_by(approvers)}: it deploys again"
            + (f": {request.reason}" if request.reason else ""),
            actor=who.name,
            version=desired,
            request=request.name,
        )
    )
    return RequestOutcome(RequestPhase.APPLIED, f"{desired} deploys again", None, approvers)


# --- what serves -------------------------------------------------------------------------------------


def _revision(
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
        reason=reason[:REASON_LENGTH],
        rule=rule,
        evidence=evidence,
        approvers=approvers,
        request_name=request_name,
    )
    st.current_revision = st.history[0].revision
    return st.history[0]


def _quarantine(plan: Plan, version: str) -> None:
    if version not in plan.status.quarantined:
        plan.status.quarantined = [*plan.status.quarantined, version]


def _handle_revocation(s: Situation, plan: Plan) -> None:
    serving = plan.serving
    if serving is None or serving.version not in s.versions or not s.versions[serving.version].spec.revoked:
        return
    target = history.newest_stable(
        plan.status.history, other_than=serving.revision, usable=lambda v: _usable(s, v)
    )
    if target is None:
        return  # reported as Degraded by _revoked_without_target
    _require_pinned(s, target)
    revoked = s.versions[serving.version].spec
    entry = _revision(
        s,
        plan,
        target.version,
        RevisionCause.REVOCATION,
        replace(OPERATOR, username=REVOCATION_ACTOR),
        reason=f"{serving.version} revoked: {revoked.revocation_reason}",
    )
    _quarantine(plan, serving.version)
    plan.decisions.append(
        Decision(
            "VersionRevoked",
            f"revision {entry.revision}: {serving.version} was revoked ({revoked.revocation_reason[:200]}); "
            f"rolled back to {target.version} (revision {target.revision})",
            warning=True,
            actor=REVOCATION_ACTOR,
            revision=entry.revision,
            version=target.version,
            cause=RevisionCause.REVOCATION,
        )
    )


def _deploy_desired(s: Situation, plan: Plan, retried_by: Identity | None) -> tuple[str, str] | None:
    """Deploy spec.version unless it serves or is quarantined; returns (reason, message) if it cannot."""
    desired = s.spec.version
    serving = plan.serving
    if serving is not None and serving.version == desired:
        return None
    if desired in plan.status.quarantined:
        return None
    version = s.versions.get(desired)
    if version is None:
        return "VersionNotFound", f"ModelVersion {desired} not found in namespace {s.namespace}"
    if version.spec.revoked:
        return "VersionRevoked", f"ModelVersion {desired} is revoked: {version.spec.revocation_reason}"
    if version.spec.model_name != s.spec.model_name:
        return "ModelMismatch", (
            f"ModelVersion {desired} is a version of {version.spec.model_name}, not of {s.spec.model_name}"
        )
    actor = retried_by or s.spec_actor
    approvers = actor.approvers if retried_by else ()
    entry = _revision(
        s, plan, desired, RevisionCause.DEPLOY, actor, approvers=approvers, request_name=actor.request
    )
    plan.decisions.append(
        Decision(
            "Deployed",
            f"revision {entry.revision}: deploying {desired} "
            f"({version.spec.model_name} {version.spec.version}) for {actor.name}"
            + (f", replacing {serving.version} (revision {serving.revision})" if serving else ""),
            actor=actor.name,
            revision=entry.revision,
            version=desired,
            cause=RevisionCause.DEPLOY,
        )
    )
    return None


def _automatic_rollback(s: Situation, plan: Plan) -> bool:
    """Roll back on a breach; returns True when a rollback was due but had no stable target."""
    serving = plan.serving
    breach = _breach(s, plan)
    if breach is None or serving is None or not s.spec.rollback.automatic:
        return False
    if serving.version != s.spec.version or serving.version in plan.status.quarantined:
        return False  # already rolled back from the desired version: one rollback per version, no cascade
    last = next((e for e in plan.status.history if e.cause is RevisionCause.AUTOMATIC_ROLLBACK), None)
    if last is not None and s.now - last.at < s.spec.rollback.cooldown:
        return False
    target = history.newest_stable(
        plan.status.history, other_than=serving.revision, usable=lambda v: _usable(s, v)
    )
    if target is None:
        return True
    if s.rules is None:
        return False  # a rollback needs a fresh evaluation, never only the states recorded in status
    _require_pinned(s, target)
    actor = rule_actor(breach.rule)
    entry = _revision(
        s,
        plan,
        target.version,
        RevisionCause.AUTOMATIC_ROLLBACK,
        replace(OPERATOR, username=actor),
        rule=breach.rule,
        evidence=breach.evidence,
        reason=f"rule {breach.rule} breached",
    )
    _quarantine(plan, serving.version)
    ev = breach.evidence
    plan.decisions.append(
        Decision(
            "RolledBack",
            f"revision {entry.revision}: rule {breach.rule} breached ({ev.value} {ev.comparator.value} "
            f"{ev.threshold}); rolled back from {serving.version} to {target.version} "
            f"(revision {target.revision}); query: {ev.query}",
            warning=True,
            actor=actor,
            revision=entry.revision,
            version=target.version,
            cause=RevisionCause.AUTOMATIC_ROLLBACK,
            evidence=ev,
        )
    )
    return False


def _breach(s: Situation, plan: Plan) -> Breach | None:
    """The first Breached rule of the serving revision, with its evidence (the query as it ran)."""
    serving = plan.serving
    if serving is None or not plan.status.rules:
        return None
    values = {
        "namespace": s.namespace,
        "deployment": s.name,
        "model": s.spec.model_name,
        "version": serving.version,
    }
    queries = dict(s.queries or {})
    for rule in s.spec.rollback.rules:
        if rule.name not in queries:
            with contextlib.suppress(ValueError):  # a bad template never breaches: its rule is in Error
                queries[rule.name] = promql.render(rule.query, values)
    return verdict(s.spec.rollback.rules, plan.status.rules, queries).breach


def _revoked_without_target(s: Situation, plan: Plan) -> bool:
    serving = plan.serving
    return serving is not None and serving.version in s.versions and s.versions[serving.version].spec.revoked


# --- stability ---------------------------------------------------------------------------------------


def _condition(status: ModelDeploymentStatus, kind: str) -> Condition | None:
    return next((c for c in status.conditions if c.type == kind), None)


def _mark_stable_after_bake(s: Situation, plan: Plan) -> None:
    """Stable = fully available, every rule passing, for bakeTime. Uses the *previous* conditions."""
    serving = plan.serving
    if serving is None or serving.stable or s.workload is None:
        return
    if serving.revision != s.status.current_revision or not s.workload.rolled_out(serving.revision):
        return
    available = _condition(s.status, "Available")
    if available is None or available.status is not ConditionStatus.TRUE:
        return
    healthy_since = available.last_transition_time
    if s.spec.rollback.rules:
        rules = plan.status.rules
        names = {r.name for r in s.spec.rollback.rules}
        passing = [r for r in rules if r.name in names and r.state is RuleState.PASS and r.since]
        if len(passing) != len(names):
            return
        healthy_since = max([healthy_since, *(r.since for r in passing if r.since)])
    if s.now - healthy_since < s.spec.stability.bake_time:
        return
    mark = StableMark(at=s.now, actor=BAKE_ACTOR, actor_verified=True)
    plan.status.history = history.mark_stable(plan.status.history, serving.revision, mark)
    plan.decisions.append(
        Decision(
            "MarkedStable",
            f"revision {serving.revision} ({serving.version}) marked stable: healthy since "
            f"{healthy_since.isoformat()} (bake time {format_duration(s.spec.stability.bake_time)})",
            actor=BAKE_ACTOR,
            revision=serving.revision,
            version=serving.version,
        )
    )


# --- phase, conditions and the summary fields -------------------------------------------------------


def _set_condition(s: Situation, plan: Plan, kind: str, true: bool, reason: str, message: str) -> bool:
    """Set a condition; returns True when its status or reason changed (a transition worth an Event)."""
    st = plan.status
    status = ConditionStatus.TRUE if true else ConditionStatus.FALSE
    old = _condition(s.status, kind)
    changed = old is None or old.status is not status or old.reason != reason
    condition = Condition(
        type=kind,
        status=status,
        reason=reason,
        message=message[:1024],
        last_transition_time=s.now if old is None or old.status is not status else old.last_transition_time,
        observed_generation=s.generation,
    )
    st.conditions = [c for c in st.conditions if c.type != kind] + [condition]
    st.conditions.sort(key=lambda c: c.type)
    return changed


def _summarise(s: Situation, plan: Plan, problem: tuple[str, str] | None, degraded: bool) -> None:
    st = plan.status
    serving = plan.serving
    rolled_out = serving is not None and s.workload is not None and s.workload.rolled_out(serving.revision)
    rolled_back = s.spec.version in st.quarantined
    rollback_entry = next((e for e in st.history if e.cause is not RevisionCause.DEPLOY), None)

    if problem is not None:
        phase, reason, message = DeploymentPhase.FAILED, *problem
    elif degraded:
        phase, reason = DeploymentPhase.DEGRADED, "NoStableRevision"
        message = (
            f"{serving.version if serving else 'nothing'} must be rolled back but no stable, "
            "non-revoked revision exists; the workload is left as it is"
        )
    elif rolled_back:
        phase, reason = DeploymentPhase.ROLLED_BACK, "RolledBack"
        message = (
            f"{s.spec.version} is quarantined; serving {serving.version if serving else 'nothing'} "
            "until Git names another version or someone runs `modelledger retry`"
        )
    elif not rolled_out:
        phase, reason = DeploymentPhase.PROGRESSING, "RolloutInProgress"
        message = f"rolling out revision {st.current_revision}"
    else:
        phase, reason, message = (
            DeploymentPhase.HEALTHY,
            "Healthy",
            f"serving {serving.version if serving else ''}",
        )

    available_changed = _set_condition(
        s,
        plan,
        "Available",
        rolled_out,
        "RolloutComplete" if rolled_out else "RolloutInProgress",
        f"revision {st.current_revision} fully available"
        if rolled_out
        else f"revision {st.current_revision} rolling out",
    )
    _set_condition(
        s,
        plan,
        "Progressing",
        not rolled_out and serving is not None,
        "RolloutInProgress" if not rolled_out else "RolloutComplete",
        f"revision {st.current_revision}",
    )
    _set_condition(
        s,
        plan,
        "RolledBack",
        rolled_back,
        rollback_entry.cause.value if rolled_back and rollback_entry else "ServingDesired",
        f"{s.spec.version} quarantined" if rolled_back else f"{s.spec.version} is served as desired",
    )
    ready_changed = _set_condition(s, plan, "Ready", phase is DeploymentPhase.HEALTHY, reason, message)
    _summarise_rules(s, plan)

    if rolled_out and available_changed and serving is not None:
        plan.decisions.append(
            Decision(
                "RolloutComplete",
                f"revision {serving.revision} ({serving.version}) fully available",
                revision=serving.revision,
                version=serving.version,
            )
        )
    if ready_changed and reason in ("VersionNotFound", "VersionRevoked", "ModelMismatch", "NoStableRevision"):
        plan.decisions.append(
            Decision(reason, message, warning=True, revision=st.current_revision, version=s.spec.version)
        )

    st.phase = phase
    st.observed_generation = s.generation
    st.desired_version = s.spec.version
    st.serving_version = serving.version if serving else None
    stable = next((e for e in st.history if e.stable), None)
    st.stable_revision = stable.revision if stable else None
    st.replicas = s.workload.available if s.workload else 0
    st.selector = selector_string(s.name)


def _summarise_rules(s: Situation, plan: Plan) -> None:
    if not s.spec.rollback.rules:
        plan.status.conditions = [
            c for c in plan.status.conditions if c.type not in ("RulesHealthy", "PrometheusReachable")
        ]
        return
    rules = plan.status.rules
    if not rules:
        return  # not evaluated yet
    before = {r.name: r.state for r in s.status.rules}
    for rule in rules:
        if before.get(rule.name) is not rule.state:
            plan.decisions.append(
                Decision(
                    "RuleStateChanged",
                    f"rule {rule.name}: {before[rule.name].value if rule.name in before else 'new'} -> "
                    f"{rule.state.value} (value {rule.value}){': ' + rule.message if rule.message else ''}",
                    warning=rule.state in (RuleState.PENDING, RuleState.BREACHED, RuleState.ERROR),
                    actor=rule_actor(rule.name),
                    rule=rule.name,
                )
            )
    bad = [r for r in rules if r.state in (RuleState.BREACHED, RuleState.PENDING)]
    _set_condition(
        s,
        plan,
        "RulesHealthy",
        not bad,
        "RuleBreaching" if bad else "AllRulesPassing",
        ", ".join(f"{r.name}: {r.state.value} ({r.value})" for r in bad) or "every rule passes",
    )
    if s.query_errors is None:
        return  # no queries this time: reachability stays as last seen
    # Reachability is about the queries, whatever onError makes of a failure.
    was = _condition(s.status, "PrometheusReachable")
    message = "; ".join(f"{rule}: {error}" for rule, error in sorted(s.query_errors.items()))
    if _set_condition(
        s,
        plan,
        "PrometheusReachable",
        not s.query_errors,
        "QueryFailed" if s.query_errors else "QueriesSucceed",
        message or "every query succeeded",
    ):
        if s.query_errors:
            plan.decisions.append(Decision("PrometheusUnreachable", message, warning=True))
        elif was is not None:
            plan.decisions.append(Decision("PrometheusReachable", "every query succeeded"))


def reject_spec(status: ModelDeploymentStatus, error: Exception, now: datetime, generation: int) -> Plan:
    """A spec the models refuse (the CRD may be older than the operator): Failed, nothing else touched."""
    message = _first_error(error)
    plan = Plan(status.model_copy(deep=True))
    s = Situation(
        namespace="",
        name="",
        generation=generation,
        spec=ModelDeploymentSpec.model_construct(),
        status=status,
        versions={},
        workload=None,
        now=now,
    )
    if _set_condition(s, plan, "Ready", False, "InvalidSpec", message):
        plan.decisions.append(Decision("InvalidSpec", message, warning=True))
    plan.status.phase = DeploymentPhase.FAILED
    plan.status.observed_generation = generation
    return plan


def _first_error(error: Exception) -> str:
    """`spec.rollback.rules.0.for: ...`: the failing field first, as the apiserver words it."""
    errors = getattr(error, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        return f"invalid spec: spec.{where}: {first.get('msg', '')}"
    return f"invalid spec: {error}"
