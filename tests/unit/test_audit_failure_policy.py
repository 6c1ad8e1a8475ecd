"""The audit sink in the decision (core): AuditSinkHealthy, its Events, and `--audit-failure=block`
holding people's decisions while automatic rollbacks and revocations go ahead."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

from modelledger.api import ConditionStatus, RequestAction, RevisionCause, RuleState, RuleStatus
from modelledger.core.decision import AuditSink, Plan, Situation, condition
from tests.unit.test_reconcile import (
    PASSING,
    RULE,
    World,
    healthy_and_stable,
    stable_then_upgraded_with_rules,
    world,
)

FULL = AuditSink(healthy=False, problem="/var/log/audit.jsonl: No space left on device (ENOSPC)")


@dataclass
class AuditedWorld(World):
    sink: AuditSink | None = None

    def situation(self, rules: list[RuleStatus] | None = None) -> Situation:
        return replace(super().situation(rules), audit_sink=self.sink)


def audited(**spec: object) -> AuditedWorld:
    base = world(**spec)
    return AuditedWorld(spec=base.spec, versions=base.versions)


def sink_condition(w: World) -> tuple[ConditionStatus, str] | None:
    found = condition(w.status, "AuditSinkHealthy")
    return (found.status, found.reason) if found else None


def test_no_condition_until_the_sink_first_fails_then_false_then_true_with_one_event_each() -> None:
    w = audited()
    healthy_and_stable(w)
    w.sink = AuditSink()
    w.step()
    assert sink_condition(w) is None, "nothing to say while it never failed"
    w.sink = FULL
    plan = w.step()
    assert sink_condition(w) == (ConditionStatus.FALSE, "SinkUnwritable")
    [event] = [d for d in plan.decisions if d.reason == "AuditSinkUnhealthy"]
    assert event.warning
    assert "No space left on device" in event.message
    assert "wait" in event.message
    assert w.step().decisions == [], "said once, not on every pass"
    w.sink = AuditSink()
    plan = w.step()
    assert sink_condition(w) == (ConditionStatus.TRUE, "SinkWritable")
    assert [(d.reason, d.warning) for d in plan.decisions] == [("AuditSinkHealthy", False)]
    assert w.step().decisions == []


def test_block_holds_requests_and_deploys_until_the_sink_returns() -> None:
    w = audited()
    healthy_and_stable(w)
    w.sink = FULL
    w.set_version("fraud-detector-1-4-0")
    w.step()
    assert [e.revision for e in w.status.history] == [1], "the deploy waits"
    w.sink = AuditSink()
    w.step()
    assert w.revisions()[0] == (2, "fraud-detector-1-4-0", RevisionCause.DEPLOY)
    w.roll_out()
    w.step()
    w.sink = FULL
    name = w.request(RequestAction.ROLLBACK, reason="latency")
    for _ in range(3):
        w.now += timedelta(minutes=1)
        w.step()
    assert name not in w.outcomes, "the request is not answered: it waits"
    assert len(w.status.history) == 2
    w.sink = AuditSink()
    w.step()
    assert w.outcomes[name] == "Applied"
    assert w.revisions()[0][2] is RevisionCause.MANUAL_ROLLBACK


def test_continue_lets_people_decide_with_the_sink_down() -> None:
    w = audited()
    healthy_and_stable(w)
    w.sink = replace(FULL, blocks=False)
    name = w.request(RequestAction.MARK_STABLE)
    w.set_version("fraud-detector-1-4-0")
    plan = w.step()
    assert w.revisions()[0] == (2, "fraud-detector-1-4-0", RevisionCause.DEPLOY)
    assert name in w.outcomes
    [event] = [d for d in plan.decisions if d.reason == "AuditSinkUnhealthy"]
    assert "go ahead" in event.message


def test_automatic_rollbacks_and_revocations_never_wait_for_the_sink() -> None:
    w = audited(rollback={"cooldown": "5m", "rules": [RULE]})
    stable_then_upgraded_with_rules(w)
    w.roll_out()
    w.step(rules=PASSING)
    w.sink = FULL
    breached = [RuleStatus(name="error-rate", state=RuleState.BREACHED, value=0.12, since=w.now)]
    plan: Plan = w.step(rules=breached)
    assert w.revisions()[0] == (3, "fraud-detector-1-3-2", RevisionCause.AUTOMATIC_ROLLBACK)
    assert {"RolledBack", "AuditSinkUnhealthy"} <= {d.reason for d in plan.decisions}

    r = audited()
    healthy_and_stable(r)
    r.set_version("fraud-detector-1-4-0")
    r.step()
    r.roll_out()
    r.step()
    r.sink = FULL
    r.versions["fraud-detector-1-4-0"] = r.versions["fraud-detector-1-4-0"].model_copy(
        update={"spec": r.versions["fraud-detector-1-4-0"].spec.model_copy(update={"revoked": True})}
    )
    r.step()
    assert r.revisions()[0] == (3, "fraud-detector-1-3-2", RevisionCause.REVOCATION)
