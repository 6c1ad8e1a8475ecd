"""The one decision function: from spec, status and what the cluster shows, the next status.

Level-triggered and idempotent: the same situation gives the same plan, and a plan applied gives a
situation whose plan changes nothing. The workload is derived from the status (the serving revision),
so the status is written first and the workload follows; a crash in between converges on restart.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import datetime

from modelledger.api import (
    ConditionStatus,
    DeploymentPhase,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    RevisionCause,
    RuleState,
    StableMark,
    Watermark,
    format_duration,
)
from modelledger.core import history, promql
from modelledger.core.actors import OPERATOR, UNVERIFIED, Identity
from modelledger.core.decision import (
    BAKE_ACTOR,
    MESSAGE_LIMIT,
    REVOCATION_ACTOR,
    Decision,
    Hold,
    Plan,
    Situation,
    condition,
    quarantine,
    require_pinned,
    revision,
    rule_actor,
    set_condition,
    usable,
    working_copy,
)
from modelledger.core.requests import handle_requests
from modelledger.core.rules import Breach, verdict
from modelledger.core.trust import Verdict
from modelledger.core.workload import selector_string


def reconcile(s: Situation) -> Plan:
    if (refused := _refuse_unverifiable(s)) is not None:
        return refused
    try:
        return _decide(s)
    except Hold as hold:
        return _held(s, hold.reason, hold.message, sealable=True)


def _decide(s: Situation) -> Plan:
    plan = Plan(working_copy(s.status))
    st = plan.status
    require_pinned(s, plan.serving)
    adopted = plan.adopted = _adopt(s, plan)
    people_wait = _people_wait_for_the_audit_sink(s)
    retried_by = None if people_wait else handle_requests(s, plan)
    _handle_revocation(s, plan)
    problem = None if people_wait else _deploy_desired(s, plan, retried_by)
    if s.rules is not None:
        st.rules = list(s.rules)
    _forget_rules_of_a_replaced_revision(s, plan)
    degraded = _automatic_rollback(s, plan) or _revoked_without_target(s, plan)
    _forget_rules_of_a_replaced_revision(s, plan)
    _mark_stable_after_bake(s, plan)
    _summarise(s, plan, problem, degraded)
    _verified_condition(s, plan, adopted)
    _audit_sink_condition(s, plan, people_wait)
    st.history = history.prune(st.history, s.spec.revision_history_limit, st.current_revision)
    _set_watermark(plan)
    # Quarantine only what history still names (and the desired version: lifting it would serve it).
    named = {e.version for e in st.history} | {s.spec.version}
    st.quarantined = [v for v in st.quarantined if v in named]
    return plan


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
    plan = Plan(working_copy(s.status), hold=reason, sealable=sealable)
    if set_condition(s, plan, "HistoryVerified", False, reason, message):
        plan.decisions.append(Decision(reason, message[:MESSAGE_LIMIT], warning=True))
    set_condition(s, plan, "Ready", False, reason, message)
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
        set_condition(
            s, plan, "HistoryVerified", False, "Unsigned",
            "the operator has no signing key: its entries are unsigned and verify as such",
        )  # fmt: skip
        return
    reason = "Adopted" if adopted else "Signed"
    set_condition(s, plan, "HistoryVerified", True, reason, "chain, signatures and status seal verify")


def _people_wait_for_the_audit_sink(s: Situation) -> bool:
    """--audit-failure=block: while the audit file cannot be written, people's decisions (deploys of a
    new spec.version, requests) wait; automatic rollbacks and revocations never do."""
    return s.audit_sink is not None and not s.audit_sink.healthy and s.audit_sink.blocks


def _audit_sink_condition(s: Situation, plan: Plan, people_wait: bool) -> None:
    """AuditSinkHealthy=False while the audit file cannot be written; back to True once it can (the
    condition appears only after a first failure)."""
    sink = s.audit_sink
    if sink is None:
        return
    if not sink.healthy:
        effect = (
            "people's decisions (deploys, requests) wait until it can (--audit-failure=block)"
            if people_wait
            else "people's decisions go ahead (--audit-failure=continue)"
        )
        message = (
            f"audit records cannot be written ({sink.problem or 'unknown error'}): they are queued in "
            f"memory and on the operator's log; automatic rollbacks go ahead, {effect}"
        )
        if set_condition(s, plan, "AuditSinkHealthy", False, "SinkUnwritable", message):
            plan.decisions.append(Decision("AuditSinkUnhealthy", message[:MESSAGE_LIMIT], warning=True))
    elif (was := condition(s.status, "AuditSinkHealthy")) is not None:
        message = "audit records are written again; the queued ones were written in order"
        if set_condition(s, plan, "AuditSinkHealthy", True, "SinkWritable", message) and (
            was.status is not ConditionStatus.TRUE
        ):
            plan.decisions.append(Decision("AuditSinkHealthy", message))


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


def _handle_revocation(s: Situation, plan: Plan) -> None:
    serving = plan.serving
    if serving is None or serving.version not in s.versions or not s.versions[serving.version].spec.revoked:
        return
    target = history.newest_stable(
        plan.status.history, other_than=serving.revision, usable=lambda v: usable(s, v)
    )
    if target is None:
        return  # reported as Degraded by _revoked_without_target
    require_pinned(s, target)
    revoked = s.versions[serving.version].spec
    entry = revision(
        s,
        plan,
        target.version,
        RevisionCause.REVOCATION,
        replace(OPERATOR, username=REVOCATION_ACTOR),
        reason=f"{serving.version} revoked: {revoked.revocation_reason}",
    )
    quarantine(plan, serving.version)
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
    entry = revision(
        s,
        plan,
        desired,
        RevisionCause.DEPLOY,
        actor,
        approvers=approvers,
        request_name=actor.request,
        gitops=s.lineage,
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
        plan.status.history, other_than=serving.revision, usable=lambda v: usable(s, v)
    )
    if target is None:
        return True
    if s.rules is None:
        return False  # a rollback needs a fresh evaluation, never only the states recorded in status
    require_pinned(s, target)
    actor = rule_actor(breach.rule)
    entry = revision(
        s,
        plan,
        target.version,
        RevisionCause.AUTOMATIC_ROLLBACK,
        replace(OPERATOR, username=actor),
        rule=breach.rule,
        evidence=breach.evidence,
        reason=f"rule {breach.rule} breached",
    )
    quarantine(plan, serving.version)
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


def _mark_stable_after_bake(s: Situation, plan: Plan) -> None:
    """Stable = fully available, every rule passing, for bakeTime. Uses the *previous* conditions."""
    serving = plan.serving
    if serving is None or serving.revision != s.status.current_revision:
        return
    healthy_since = healthy_since_for_bake(s, s.status, plan)
    if healthy_since is None or s.now - healthy_since < s.spec.stability.bake_time:
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


def healthy_since_for_bake(s: Situation, conditions: ModelDeploymentStatus, plan: Plan) -> datetime | None:
    """Since when the serving revision has been fully available with every rule passing (its bake
    started), by the Available condition of `conditions`; None while it is not, or is stable already."""
    serving = plan.serving
    if serving is None or serving.stable or s.workload is None or not s.workload.rolled_out(serving.revision):
        return None
    available = condition(conditions, "Available")
    if available is None or available.status is not ConditionStatus.TRUE:
        return None
    healthy_since = available.last_transition_time
    if s.spec.rollback.rules:
        names = {r.name for r in s.spec.rollback.rules}
        passing = [r for r in plan.status.rules if r.name in names and r.state is RuleState.PASS and r.since]
        if len(passing) != len(names):
            return None
        healthy_since = max([healthy_since, *(r.since for r in passing if r.since)])
    return healthy_since


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

    available_changed = set_condition(
        s,
        plan,
        "Available",
        rolled_out,
        "RolloutComplete" if rolled_out else "RolloutInProgress",
        f"revision {st.current_revision} fully available"
        if rolled_out
        else f"revision {st.current_revision} rolling out",
    )
    set_condition(
        s,
        plan,
        "Progressing",
        not rolled_out and serving is not None,
        "RolloutInProgress" if not rolled_out else "RolloutComplete",
        f"revision {st.current_revision}",
    )
    set_condition(
        s,
        plan,
        "RolledBack",
        rolled_back,
        rollback_entry.cause.value if rolled_back and rollback_entry else "ServingDesired",
        f"{s.spec.version} quarantined" if rolled_back else f"{s.spec.version} is served as desired",
    )
    ready_changed = set_condition(s, plan, "Ready", phase is DeploymentPhase.HEALTHY, reason, message)
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
    set_condition(
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
    was = condition(s.status, "PrometheusReachable")
    message = "; ".join(f"{rule}: {error}" for rule, error in sorted(s.query_errors.items()))
    if set_condition(
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
    if set_condition(s, plan, "Ready", False, "InvalidSpec", message):
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
