"""The one decision function: from spec, status and what the cluster shows, the next status.

Level-triggered and idempotent: the same situation gives the same plan, and a plan applied gives a
situation whose plan changes nothing. The workload is derived from the status (the serving revision),
so the status is written first and the workload follows; a crash in between converges on restart.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from modelledger.api import (
    Condition,
    ConditionStatus,
    DeploymentPhase,
    Evidence,
    HandledRequest,
    HistoryEntry,
    HumanRequest,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    ModelVersion,
    RequestKind,
    RequestOutcome,
    RevisionCause,
    RuleState,
    RuleStatus,
    format_duration,
)
from modelledger.core import history, promql
from modelledger.core.rules import Breach, verdict
from modelledger.core.workload import WorkloadState, pinned_pipeline, selector_string

HANDLED_REQUESTS_KEPT = 20
BAKE_ACTOR = "modelledger/bake"
REVOCATION_ACTOR = "modelledger/revocation"


def rule_actor(rule: str) -> str:
    return f"modelledger/rule:{rule}"


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
    spec_actor: str = "unknown"  # who last set spec.version (its managedFields manager)
    rules: Sequence[RuleStatus] | None = (
        None  # a fresh evaluation of the serving revision; None keeps the recorded
    )
    query_errors: Mapping[str, str] | None = None  # rule -> why its query failed, in the fresh evaluation


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


@dataclass
class Plan:
    status: ModelDeploymentStatus
    decisions: list[Decision] = field(default_factory=list)

    @property
    def serving(self) -> HistoryEntry | None:
        return history.current(self.status.history, self.status.current_revision)


def reconcile(s: Situation) -> Plan:
    plan = Plan(s.status.model_copy(deep=True))
    st = plan.status
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
    st.history = history.prune(st.history, s.spec.revision_history_limit, st.current_revision)
    return plan


def _forget_rules_of_a_replaced_revision(s: Situation, plan: Plan) -> None:
    """Rules judge the serving revision: a new one starts without the old one's states."""
    if plan.status.current_revision != s.status.current_revision:
        plan.status.rules = []


# --- requests from people (CLI → status.requests), each consumed exactly once ---------------------


def _handle_requests(s: Situation, plan: Plan) -> str | None:
    """Apply pending requests in order; returns who asked for a retry, if someone did."""
    st = plan.status
    done = {h.id for h in st.handled_requests}
    retried_by: str | None = None
    handled: list[HandledRequest] = []
    for request in sorted(st.requests, key=lambda r: (r.at, r.id)):
        if request.id in done:
            continue
        if request.kind is RequestKind.ROLLBACK:
            outcome, message = _manual_rollback(s, plan, request)
        elif request.kind is RequestKind.MARK_STABLE:
            outcome, message = _manual_mark_stable(s, plan, request)
        else:
            outcome, message = _retry(s, plan, request)
            retried_by = request.requested_by if outcome is RequestOutcome.APPLIED else retried_by
        handled.append(
            HandledRequest(id=request.id, kind=request.kind, outcome=outcome, message=message, at=s.now)
        )
        if outcome is RequestOutcome.REJECTED:
            plan.decisions.append(
                Decision(
                    "RequestRejected",
                    f"{request.kind.value} request {request.id} "
                    f"by {request.requested_by} rejected: {message}",
                    warning=True,
                    actor=request.requested_by,
                )
            )
    st.requests = []
    st.handled_requests = [*reversed(handled), *st.handled_requests][:HANDLED_REQUESTS_KEPT]
    return retried_by


def _usable(s: Situation, version: str) -> bool:
    found = s.versions.get(version)
    return found is not None and not found.spec.revoked


def _manual_rollback(s: Situation, plan: Plan, request: HumanRequest) -> tuple[RequestOutcome, str]:
    st = plan.status
    serving = plan.serving
    if serving is None:
        return RequestOutcome.REJECTED, "nothing is serving yet"
    if request.to_revision is not None:
        target = history.current(st.history, request.to_revision)
        if target is None:
            return RequestOutcome.REJECTED, f"no revision {request.to_revision} in the history"
        if target.revision == serving.revision:
            return RequestOutcome.REJECTED, f"revision {target.revision} is already serving"
        if not _usable(s, target.version):
            return RequestOutcome.REJECTED, f"version {target.version} is revoked or gone"
    else:
        target = history.newest_stable(
            st.history, other_than=serving.revision, usable=lambda v: _usable(s, v)
        )
        if target is None:
            return RequestOutcome.REJECTED, "no stable revision to roll back to"
    entry = _revision(
        s,
        plan,
        target.version,
        RevisionCause.MANUAL_ROLLBACK,
        request.requested_by,
        reason=request.reason,
        request_id=request.id,
    )
    _quarantine(plan, serving.version)
    plan.decisions.append(
        Decision(
            "RolledBack",
            f"revision {entry.revision}: rolled back by {request.requested_by} from {serving.version} "
            f"(revision {serving.revision}) to {target.version} (revision {target.revision}): "
            f"{request.reason}",
            warning=True,
            actor=request.requested_by,
            revision=entry.revision,
            version=target.version,
            cause=RevisionCause.MANUAL_ROLLBACK,
        )
    )
    return RequestOutcome.APPLIED, f"revision {entry.revision} serves {target.version}"


def _manual_mark_stable(s: Situation, plan: Plan, request: HumanRequest) -> tuple[RequestOutcome, str]:
    st = plan.status
    revision = request.revision or st.current_revision
    entry = history.current(st.history, revision)
    if entry is None:
        return RequestOutcome.REJECTED, f"no revision {revision} in the history"
    if not entry.stable:
        st.history = history.mark_stable(st.history, entry.revision)
        plan.decisions.append(
            Decision(
                "MarkedStable",
                f"revision {entry.revision} ({entry.version}) marked stable by {request.requested_by}"
                + (f": {request.reason}" if request.reason else ""),
                actor=request.requested_by,
                revision=entry.revision,
                version=entry.version,
            )
        )
    return RequestOutcome.APPLIED, f"revision {entry.revision} is stable"


def _retry(s: Situation, plan: Plan, request: HumanRequest) -> tuple[RequestOutcome, str]:
    st = plan.status
    desired = s.spec.version
    if desired not in st.quarantined:
        return RequestOutcome.REJECTED, f"{desired} is not quarantined"
    if not _usable(s, desired):
        return RequestOutcome.REJECTED, f"{desired} is revoked or gone: it cannot be served again"
    st.quarantined = [v for v in st.quarantined if v != desired]
    plan.decisions.append(
        Decision(
            "QuarantineLifted",
            f"{desired} lifted from quarantine by {request.requested_by}: it deploys again",
            actor=request.requested_by,
            version=desired,
        )
    )
    return RequestOutcome.APPLIED, f"{desired} deploys again"


# --- what serves -------------------------------------------------------------------------------------


def _revision(
    s: Situation,
    plan: Plan,
    version: str,
    cause: RevisionCause,
    actor: str,
    *,
    reason: str = "",
    rule: str | None = None,
    evidence: Evidence | None = None,
    request_id: str | None = None,
) -> HistoryEntry:
    """Append a revision serving `version` and make it current."""
    st = plan.status
    st.history = history.append(
        st.history,
        version=version,
        cause=cause,
        actor=actor,
        at=s.now,
        pipeline=pinned_pipeline(s.versions[version]),
        reason=reason,
        rule=rule,
        evidence=evidence,
        request_id=request_id,
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
    revoked = s.versions[serving.version].spec
    entry = _revision(
        s,
        plan,
        target.version,
        RevisionCause.REVOCATION,
        REVOCATION_ACTOR,
        reason=f"{serving.version} revoked: {revoked.revocation_reason}",
    )
    _quarantine(plan, serving.version)
    plan.decisions.append(
        Decision(
            "VersionRevoked",
            f"revision {entry.revision}: {serving.version} was revoked ({revoked.revocation_reason}); "
            f"rolled back to {target.version} (revision {target.revision})",
            warning=True,
            actor=REVOCATION_ACTOR,
            revision=entry.revision,
            version=target.version,
            cause=RevisionCause.REVOCATION,
        )
    )


def _deploy_desired(s: Situation, plan: Plan, retried_by: str | None) -> tuple[str, str] | None:
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
    entry = _revision(s, plan, desired, RevisionCause.DEPLOY, actor)
    plan.decisions.append(
        Decision(
            "Deployed",
            f"revision {entry.revision}: deploying {desired} "
            f"({version.spec.model_name} {version.spec.version})"
            + (f", replacing {serving.version} (revision {serving.revision})" if serving else ""),
            actor=actor,
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
    actor = rule_actor(breach.rule)
    entry = _revision(
        s,
        plan,
        target.version,
        RevisionCause.AUTOMATIC_ROLLBACK,
        actor,
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
    queries = {}
    for rule in s.spec.rollback.rules:
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
    plan.status.history = history.mark_stable(plan.status.history, serving.revision)
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
