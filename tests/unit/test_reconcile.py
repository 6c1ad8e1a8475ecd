"""The decision function, step by step and as a property: idempotent, chained, never losing a revision."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from modelledger.api import (
    Comparator,
    DeploymentPhase,
    Evidence,
    HumanRequest,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    ModelVersion,
    RequestKind,
    RevisionCause,
    RuleState,
    RuleStatus,
)
from modelledger.core import history
from modelledger.core.reconcile import Plan, Situation, reconcile
from modelledger.core.workload import WorkloadState

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def example_version(version: str) -> ModelVersion:
    return ModelVersion.model_validate(
        yaml.safe_load((EXAMPLES / f"fraud-detector-{version}.yaml").read_text())
    )


def with_name(base: ModelVersion, name: str, revoked: bool = False) -> ModelVersion:
    spec = base.spec.model_copy(update={"revoked": revoked, "revocation_reason": "audit" if revoked else ""})
    return base.model_copy(update={"metadata": {"name": name}, "spec": spec})


V132 = example_version("1-3-2")
V140 = example_version("1-4-0")
RULE = {
    "name": "error-rate",
    "query": 'sum(rate(errors{deployment="{{deployment}}"}[1m]))',
    "comparator": ">",
    "threshold": 0.05,
    "for": "1m",
}
EVIDENCE = Evidence(
    query='sum(rate(errors{deployment="fraud-detector"}[1m]))',
    value=0.12,
    threshold=0.05,
    comparator=Comparator.GT,
)


@dataclass
class World:
    """A ModelDeployment and a cluster that rolls out whatever the status says serves."""

    spec: ModelDeploymentSpec
    versions: dict[str, ModelVersion]
    status: ModelDeploymentStatus = field(default_factory=ModelDeploymentStatus)
    workload: WorkloadState | None = None
    now: datetime = T0
    generation: int = 1
    writes: int = 0
    decisions: list[str] = field(default_factory=list)

    def situation(self, rules: list[RuleStatus] | None = None) -> Situation:
        return Situation(
            namespace="ml-prod",
            name="fraud-detector",
            generation=self.generation,
            spec=self.spec,
            status=self.status,
            versions=self.versions,
            workload=self.workload,
            now=self.now,
            spec_actor="argocd-controller",
            rules=rules,
        )

    def step(self, rules: list[RuleStatus] | None = None) -> Plan:
        plan = reconcile(self.situation(rules))
        if plan.status != self.status:
            self.writes += 1
        self.status = plan.status
        self.decisions += [d.reason for d in plan.decisions]
        return plan

    def roll_out(self) -> None:
        revision = self.status.current_revision
        replicas = self.spec.replicas
        self.workload = WorkloadState(
            revision=revision,
            replicas=replicas,
            generation=2,
            observed_generation=2,
            updated=replicas,
            available=replicas,
            total=replicas,
        )

    def set_version(self, version: str) -> None:
        self.spec = self.spec.model_copy(update={"version": version})
        self.generation += 1

    def request(self, kind: RequestKind, **details: Any) -> None:
        request = HumanRequest(
            id=f"r{len(self.status.requests) + len(self.status.handled_requests)}",
            kind=kind,
            requested_by="alice@example.com",
            at=self.now,
            **details,
        )
        self.status = self.status.model_copy(update={"requests": [*self.status.requests, request]})

    def revisions(self) -> list[tuple[int, str, RevisionCause]]:
        return [(e.revision, e.version, e.cause) for e in self.status.history]


def world(version: str = "fraud-detector-1-3-2", **spec: Any) -> World:
    base = {
        "modelName": "fraud-detector",
        "version": version,
        "replicas": 2,
        "stability": {"bakeTime": "10m"},
        **spec,
    }
    return World(
        spec=ModelDeploymentSpec.model_validate(base),
        versions={
            "fraud-detector-1-3-2": with_name(V132, "fraud-detector-1-3-2"),
            "fraud-detector-1-4-0": with_name(V140, "fraud-detector-1-4-0"),
        },
    )


def phase_of(w: World) -> DeploymentPhase | None:
    return w.status.phase


def healthy_and_stable(w: World) -> None:
    w.step()
    w.roll_out()
    w.step()
    w.now += timedelta(minutes=11)
    w.step()


def test_first_deploy_progresses_then_becomes_healthy_once() -> None:
    w = world()
    plan = w.step()
    assert w.revisions() == [(1, "fraud-detector-1-3-2", RevisionCause.DEPLOY)]
    assert plan.status.history[0].actor == "argocd-controller"
    assert plan.status.history[0].pipeline is not None
    assert plan.status.history[0].pipeline.artifact_digest == V132.spec.artifact.digest
    assert phase_of(w) is DeploymentPhase.PROGRESSING
    w.roll_out()
    w.step()
    assert phase_of(w) is DeploymentPhase.HEALTHY
    assert w.decisions == ["Deployed", "RolloutComplete"]
    writes = w.writes
    assert w.step().decisions == []
    assert w.writes == writes, "nothing changed, so nothing is written"


def test_bake_time_marks_the_revision_stable_once() -> None:
    w = world()
    w.step()
    w.roll_out()
    w.step()
    w.now += timedelta(minutes=9)
    w.step()
    assert w.status.stable_revision is None
    w.now += timedelta(minutes=2)
    w.step()
    assert w.status.stable_revision == 1
    assert w.decisions.count("MarkedStable") == 1
    w.step()
    assert w.decisions.count("MarkedStable") == 1


def test_upgrade_manual_rollback_and_retry() -> None:
    w = world()
    healthy_and_stable(w)
    w.set_version("fraud-detector-1-4-0")
    w.step()
    assert w.revisions()[0] == (2, "fraud-detector-1-4-0", RevisionCause.DEPLOY)
    w.roll_out()
    w.step()
    w.request(RequestKind.ROLLBACK, reason="latency complaints")
    w.step()
    top = w.status.history[0]
    assert (top.revision, top.version, top.cause) == (
        3,
        "fraud-detector-1-3-2",
        RevisionCause.MANUAL_ROLLBACK,
    )
    assert (top.actor, top.reason, top.request_id) == ("alice@example.com", "latency complaints", "r0")
    assert w.status.quarantined == ["fraud-detector-1-4-0"]
    assert phase_of(w) is DeploymentPhase.ROLLED_BACK
    assert [h.id for h in w.status.handled_requests] == ["r0"]
    # The request is consumed exactly once; the same spec (an ArgoCD sync) changes nothing.
    w.roll_out()
    w.step()
    w.step()
    assert len(w.status.history) == 3
    w.request(RequestKind.RETRY)
    w.step()
    assert w.revisions()[0] == (4, "fraud-detector-1-4-0", RevisionCause.DEPLOY)
    assert w.status.history[0].actor == "alice@example.com"
    assert w.status.quarantined == []
    assert history.verify(w.status.history, limit=10) is None


def test_rollback_to_a_named_revision_and_rejections() -> None:
    w = world()
    healthy_and_stable(w)
    w.request(RequestKind.ROLLBACK, reason="x", to_revision=7)
    w.step()
    assert w.status.handled_requests[0].outcome.value == "Rejected"
    assert "no revision 7" in w.status.handled_requests[0].message
    assert "RequestRejected" in w.decisions
    w.request(RequestKind.ROLLBACK, reason="x")
    w.step()
    assert "no stable revision" in w.status.handled_requests[0].message
    assert len(w.status.history) == 1


def test_mark_stable_by_hand() -> None:
    w = world()
    w.step()
    w.request(RequestKind.MARK_STABLE, revision=1, reason="validated offline")
    w.step()
    assert w.status.stable_revision == 1
    assert w.status.handled_requests[0].outcome.value == "Applied"


def test_missing_version_fails_then_recovers() -> None:
    w = world("fraud-detector-9-9-9")
    w.step()
    assert phase_of(w) is DeploymentPhase.FAILED
    assert w.status.history == []
    w.step()
    assert w.decisions == ["VersionNotFound"], "the Event is posted once, on the transition"
    ready = next(c for c in w.status.conditions if c.type == "Ready")
    assert ready.reason == "VersionNotFound"
    assert "fraud-detector-9-9-9" in ready.message
    w.versions["fraud-detector-9-9-9"] = with_name(V140, "fraud-detector-9-9-9")
    w.step()
    assert w.revisions() == [(1, "fraud-detector-9-9-9", RevisionCause.DEPLOY)]
    assert phase_of(w) is DeploymentPhase.PROGRESSING


def test_revocation_rolls_back_to_stable_or_degrades() -> None:
    w = world()
    healthy_and_stable(w)
    w.set_version("fraud-detector-1-4-0")
    w.step()
    w.versions["fraud-detector-1-4-0"] = with_name(V140, "fraud-detector-1-4-0", revoked=True)
    w.step()
    top = w.status.history[0]
    assert (top.version, top.cause, top.actor) == (
        "fraud-detector-1-3-2",
        RevisionCause.REVOCATION,
        "modelledger/revocation",
    )
    assert "VersionRevoked" in w.decisions
    # Now revoke the stable one too: nothing left to serve, so Degraded and the workload stays.
    w.versions["fraud-detector-1-3-2"] = with_name(V132, "fraud-detector-1-3-2", revoked=True)
    before = w.status.current_revision
    w.step()
    w.step()
    assert phase_of(w) is DeploymentPhase.DEGRADED
    assert w.status.current_revision == before
    assert w.decisions.count("NoStableRevision") == 1


def test_automatic_rollback_once_with_evidence_and_no_cascade() -> None:
    w = world(
        rollback={
            "cooldown": "5m",
            "rules": [RULE],
        }
    )
    passing = [RuleStatus(name="error-rate", state=RuleState.PASS, value=0.0, since=T0)]
    w.step(rules=passing)
    w.roll_out()
    w.step(rules=passing)
    w.now += timedelta(minutes=11)
    w.step(rules=passing)
    assert w.status.stable_revision == 1
    w.set_version("fraud-detector-1-4-0")
    w.step(rules=passing)
    w.roll_out()
    w.step(rules=passing)
    breached = [RuleStatus(name="error-rate", state=RuleState.BREACHED, value=0.12, since=w.now)]
    w.step(rules=breached)
    top = w.status.history[0]
    assert (top.revision, top.version, top.cause) == (
        3,
        "fraud-detector-1-3-2",
        RevisionCause.AUTOMATIC_ROLLBACK,
    )
    assert (top.rule, top.actor, top.evidence) == ("error-rate", "modelledger/rule:error-rate", EVIDENCE)
    assert w.status.rules == [], "the stable revision is judged afresh"
    assert phase_of(w) is DeploymentPhase.ROLLED_BACK
    assert w.status.quarantined == ["fraud-detector-1-4-0"]
    # Still breaching on the stable version: no cascade, no second rollback.
    w.now += timedelta(minutes=10)
    w.step(rules=breached)
    assert len(w.status.history) == 3
    assert w.decisions.count("RolledBack") == 1


def test_breach_without_a_stable_revision_degrades_and_leaves_the_workload() -> None:
    w = world(rollback={"rules": [{"name": "error-rate", "query": "q", "comparator": ">", "threshold": 1}]})
    w.step()
    w.roll_out()
    breached = [RuleStatus(name="error-rate", state=RuleState.BREACHED, value=2.0, since=w.now)]
    w.step(rules=breached)
    assert phase_of(w) is DeploymentPhase.DEGRADED
    assert len(w.status.history) == 1
    assert "NoStableRevision" in w.decisions


def test_stable_marking_waits_for_every_rule_to_pass_for_the_bake_time() -> None:
    w = world(rollback={"rules": [{"name": "error-rate", "query": "q", "comparator": ">", "threshold": 1}]})
    w.step()
    w.roll_out()
    w.step(rules=[RuleStatus(name="error-rate", state=RuleState.PENDING, value=2.0, since=w.now)])
    w.now += timedelta(minutes=11)
    w.step(rules=[RuleStatus(name="error-rate", state=RuleState.PASS, value=0.0, since=w.now)])
    assert w.status.stable_revision is None, "passing only since now: the bake starts over"
    w.now += timedelta(minutes=10)
    w.step(rules=None)  # keeps the recorded rule states
    assert w.status.stable_revision == 1


ACTIONS = st.sampled_from(
    [
        "step",
        "roll_out",
        "upgrade",
        "downgrade",
        "missing",
        "rollback",
        "stable",
        "retry",
        "wait",
        "revoke",
        "unrevoke",
        "breach",
        "pass",
    ]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(ACTIONS, max_size=25))
def test_any_sequence_is_idempotent_chained_and_bounded(actions: list[str]) -> None:
    w = world(revisionHistoryLimit=3, rollback={"rules": [RULE]})
    for action in actions:
        rules = None
        if action == "roll_out":
            w.roll_out()
        elif action in ("upgrade", "downgrade", "missing"):
            w.set_version(
                {
                    "upgrade": "fraud-detector-1-4-0",
                    "downgrade": "fraud-detector-1-3-2",
                    "missing": "fraud-detector-0-0-1",
                }[action]
            )
        elif action == "rollback":
            w.request(RequestKind.ROLLBACK, reason="test")
        elif action == "stable":
            w.request(RequestKind.MARK_STABLE)
        elif action == "retry":
            w.request(RequestKind.RETRY)
        elif action == "wait":
            w.now += timedelta(minutes=7)
        elif action in ("revoke", "unrevoke"):
            w.versions["fraud-detector-1-4-0"] = with_name(V140, "fraud-detector-1-4-0", action == "revoke")
        elif action in ("breach", "pass"):
            state = RuleState.BREACHED if action == "breach" else RuleState.PASS
            rules = [RuleStatus(name="error-rate", state=state, value=0.12, since=w.now)]
        before = len(w.status.history)
        w.step(rules=rules)
        assert len(w.status.history) <= max(before + 2, 3 + 2)
        # Level-triggered: the same situation again decides nothing and changes nothing.
        again = reconcile(w.situation())
        assert again.decisions == []
        assert again.status == w.status
        assert history.verify(w.status.history, limit=3) is None
        revisions = [e.revision for e in w.status.history]
        assert revisions == sorted(set(revisions), reverse=True)
        if w.status.current_revision is not None:
            assert w.status.current_revision in revisions, "the serving revision is never pruned"
        assert len(w.status.requests) == 0, "every request is consumed"


def test_prometheus_reachability_follows_the_queries_whatever_on_error_says() -> None:
    w = world(rollback={"rules": [RULE]})
    w.step()
    breaching = [RuleStatus(name="error-rate", state=RuleState.PENDING, since=w.now, message="down")]
    plan = reconcile(replace(w.situation(breaching), query_errors={"error-rate": "connection refused"}))
    reachable = next(c for c in plan.status.conditions if c.type == "PrometheusReachable")
    assert (reachable.status.value, reachable.reason) == ("False", "QueryFailed")
    assert "connection refused" in reachable.message
    assert "PrometheusUnreachable" in [d.reason for d in plan.decisions]
    w.status = plan.status
    passing = [RuleStatus(name="error-rate", state=RuleState.PASS, value=0.0, since=w.now)]
    plan = reconcile(replace(w.situation(passing), query_errors={}))
    assert "PrometheusReachable" in [d.reason for d in plan.decisions]
    w.status = plan.status
    assert reconcile(w.situation()).status == w.status, "no queries: reachability stays as last seen"
