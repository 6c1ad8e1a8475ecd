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
    TERMINAL_PHASES,
    Comparator,
    DeploymentPhase,
    Evidence,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    ModelVersion,
    RequestAction,
    RevisionCause,
    RuleState,
    RuleStatus,
)
from modelledger.core import history, trust
from modelledger.core.actors import Identity
from modelledger.core.decision import HANDLED_REQUESTS_KEPT, Plan, Request, Situation
from modelledger.core.reconcile import reconcile
from modelledger.core.signing import Keyring, SigningKey
from modelledger.core.workload import WorkloadState

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
KEY = SigningKey.generate()
SUBJECT = trust.Subject("ml-prod", "fraud-detector", "uid-1")
ALICE = Identity("alice@example.com", "u-alice", ("ml-release-managers",), verified=True)
BOB = Identity("bob@example.com", "u-bob", ("ml-release-managers", "ml-approvers"), verified=True)
ARGOCD = Identity("system:serviceaccount:argocd:argocd-application-controller", verified=True)


def example_version(version: str) -> ModelVersion:
    return ModelVersion.model_validate(
        yaml.safe_load((EXAMPLES / f"fraud-detector-{version}.yaml").read_text())
    )


def with_name(base: ModelVersion, name: str, revoked: bool = False) -> ModelVersion:
    spec = base.spec.model_copy(update={"revoked": revoked, "revocation_reason": "audit" if revoked else ""})
    return base.model_copy(update={"metadata": {"name": name, "uid": f"uid-{name}"}, "spec": spec})


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
    requests: list[Request] = field(default_factory=list)  # undecided, as the operator's index holds them
    outcomes: dict[str, str] = field(default_factory=dict)  # request name -> phase
    messages: dict[str, str] = field(default_factory=dict)

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
            spec_actor=ARGOCD,
            rules=rules,
            requests=list(self.requests),
            trust=trust.check_status(self.status, Keyring.of(KEY.public), SUBJECT, limit=100),
        )

    def step(self, rules: list[RuleStatus] | None = None) -> Plan:
        """One reconcile as the operator does it: verify, decide, sign, write, answer the requests."""
        plan = reconcile(self.situation(rules))
        if plan.sealable:
            plan.status = trust.sign(plan.status, self.status, KEY, SUBJECT)
        if plan.status != self.status:
            self.writes += 1
        self.status = plan.status
        self.decisions += [d.reason for d in plan.decisions]
        for name, outcome in plan.outcomes.items():
            self.outcomes[name] = outcome.phase.value
            self.messages[name] = outcome.message
        self.requests = [r for r in self.requests if self.outcomes.get(r.name) not in TERMINAL_VALUES]
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

    def request(self, action: RequestAction, by: Identity = ALICE, **details: Any) -> str:
        name = f"r{len(self.outcomes) + len(self.requests)}"
        request = Request(name, f"uid-{name}", action, by, self.now, **details)
        self.requests.append(request)
        return name

    def revisions(self) -> list[tuple[int, str, RevisionCause]]:
        return [(e.revision, e.version, e.cause) for e in self.status.history]


TERMINAL_VALUES = {p.value for p in TERMINAL_PHASES}


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
    top = plan.status.history[0]
    assert (top.actor, top.actor_verified) == (ARGOCD.username, True)
    assert top.signature is not None
    assert top.key_id == KEY.key_id
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
    name = w.request(RequestAction.ROLLBACK, reason="latency complaints")
    w.step()
    top = w.status.history[0]
    assert (top.revision, top.version, top.cause) == (
        3,
        "fraud-detector-1-3-2",
        RevisionCause.MANUAL_ROLLBACK,
    )
    assert (top.actor, top.reason, top.request_name) == ("alice@example.com", "latency complaints", name)
    assert top.actor_verified is True
    assert w.status.quarantined == ["fraud-detector-1-4-0"]
    assert phase_of(w) is DeploymentPhase.ROLLED_BACK
    assert [h.name for h in w.status.handled_requests] == [name]
    assert w.outcomes[name] == "Applied"
    # The request is consumed exactly once; the same spec (an ArgoCD sync) changes nothing.
    w.roll_out()
    w.step()
    w.step()
    assert len(w.status.history) == 3
    w.request(RequestAction.RETRY)
    w.step()
    assert w.revisions()[0] == (4, "fraud-detector-1-4-0", RevisionCause.DEPLOY)
    assert w.status.history[0].actor == "alice@example.com"
    assert trust.check_status(w.status, Keyring.of(KEY.public), SUBJECT).verdict is trust.Verdict.SIGNED
    assert w.status.quarantined == []
    assert history.verify(w.status.history, limit=10) is None


def test_rollback_to_a_named_revision_and_rejections() -> None:
    w = world()
    healthy_and_stable(w)
    w.request(RequestAction.ROLLBACK, reason="x", revision=7)
    w.step()
    assert w.status.handled_requests[0].phase.value == "Rejected"
    assert "no revision 7" in w.status.handled_requests[0].message
    assert "RequestRejected" in w.decisions
    w.request(RequestAction.ROLLBACK, reason="x")
    w.step()
    assert "no stable revision" in w.status.handled_requests[0].message
    assert len(w.status.history) == 1


def test_mark_stable_by_hand() -> None:
    w = world()
    w.step()
    w.request(RequestAction.MARK_STABLE, revision=1, reason="validated offline")
    w.step()
    assert w.status.stable_revision == 1
    assert w.status.handled_requests[0].phase.value == "Applied"
    mark = w.status.history[0].stable_mark
    assert mark is not None
    assert (mark.actor, mark.actor_verified) == ("alice@example.com", True)
    assert mark.signature is not None


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


PASSING = [RuleStatus(name="error-rate", state=RuleState.PASS, value=0.0, since=T0)]


def stable_then_upgraded_with_rules(w: World) -> None:
    """1.3.2 baked to stable with its rule passing, then 1.4.0 deployed (rules still passing)."""
    w.step(rules=PASSING)
    w.roll_out()
    w.step(rules=PASSING)
    w.now += timedelta(minutes=11)
    w.step(rules=PASSING)
    assert w.status.stable_revision == 1
    w.set_version("fraud-detector-1-4-0")
    w.step(rules=PASSING)


def test_automatic_rollback_once_with_evidence_and_no_cascade() -> None:
    w = world(
        rollback={
            "cooldown": "5m",
            "rules": [RULE],
        }
    )
    passing = PASSING
    stable_then_upgraded_with_rules(w)
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
    mark = w.status.history[0].stable_mark
    assert mark is not None
    assert mark.actor == "modelledger/bake"


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
            w.request(RequestAction.ROLLBACK, reason="test")
        elif action == "stable":
            w.request(RequestAction.MARK_STABLE)
        elif action == "retry":
            w.request(RequestAction.RETRY)
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
        assert trust.sign(again.status, w.status, KEY, SUBJECT) == w.status
        check = trust.check_status(w.status, Keyring.of(KEY.public), SUBJECT)
        assert check.verdict is not trust.Verdict.TAMPERED, check.describe()
        revisions = [e.revision for e in w.status.history]
        assert revisions == sorted(set(revisions), reverse=True)
        if w.status.current_revision is not None:
            assert w.status.current_revision in revisions, "the serving revision is never pruned"
        assert w.requests == [], "every request is decided"


def test_prometheus_reachability_follows_the_queries_whatever_on_error_says() -> None:
    w = world(rollback={"rules": [RULE]})
    w.step()
    breaching = [RuleStatus(name="error-rate", state=RuleState.PENDING, since=w.now, message="down")]
    plan = reconcile(replace(w.situation(breaching), query_errors={"error-rate": "connection refused"}))
    reachable = next(c for c in plan.status.conditions if c.type == "PrometheusReachable")
    assert (reachable.status.value, reachable.reason) == ("False", "QueryFailed")
    assert "connection refused" in reachable.message
    assert "PrometheusUnreachable" in [d.reason for d in plan.decisions]
    w.status = trust.sign(plan.status, w.status, KEY, SUBJECT)
    passing = [RuleStatus(name="error-rate", state=RuleState.PASS, value=0.0, since=w.now)]
    plan = reconcile(replace(w.situation(passing), query_errors={}))
    assert "PrometheusReachable" in [d.reason for d in plan.decisions]
    w.status = trust.sign(plan.status, w.status, KEY, SUBJECT)
    assert reconcile(w.situation()).status == w.status, "no queries: reachability stays as last seen"


# --- four-eyes ------------------------------------------------------------------------------------

FOUR_EYES = {"approval": {"requiredFor": ["MarkStable", "Rollback"], "approverGroups": ["ml-approvers"]}}


def test_four_eyes_waits_ignores_self_approval_and_names_both() -> None:
    w = world(**FOUR_EYES)
    w.step()
    asked = w.request(RequestAction.MARK_STABLE, reason="validated offline")
    w.step()
    assert w.outcomes[asked] == "Pending"
    assert "waiting for 1 more approval" in w.messages[asked]
    assert w.status.stable_revision is None
    own = w.request(RequestAction.APPROVE, approves=asked)
    w.step()
    assert w.outcomes[own] == "Rejected"
    assert "own approval does not count" in w.messages[own]
    assert w.outcomes[asked] == "Pending"
    w.now += timedelta(minutes=1)
    theirs = w.request(RequestAction.APPROVE, by=BOB, approves=asked)
    w.step()
    assert (w.outcomes[asked], w.outcomes[theirs]) == ("Applied", "Applied")
    mark = w.status.history[0].stable_mark
    assert mark is not None
    assert (mark.actor, mark.approvers, mark.request_name) == (
        "alice@example.com",
        ["bob@example.com"],
        asked,
    )


def test_an_approver_outside_the_groups_does_not_count_and_requests_expire() -> None:
    w = world(**FOUR_EYES)
    healthy_and_stable(w)
    w.set_version("fraud-detector-1-4-0")
    w.step()
    asked = w.request(RequestAction.ROLLBACK, reason="latency")
    carol = Identity("carol@example.com", "u-carol", ("ml-engineers",), verified=True)
    outsider = w.request(RequestAction.APPROVE, by=carol, approves=asked)
    w.step()
    assert w.outcomes[outsider] == "Rejected"
    assert "none of the approver groups" in w.messages[outsider]
    w.now += timedelta(minutes=61)
    w.step()
    assert w.outcomes[asked] == "Expired"
    assert "RequestExpired" in w.decisions
    assert w.revisions()[0][2] is RevisionCause.DEPLOY, "an expired rollback changes nothing"


def test_four_eyes_refuses_unverified_identities_and_history_says_unverified() -> None:
    w = world(**FOUR_EYES)
    healthy_and_stable(w)
    claim = Identity("bob@example.com", groups=("ml-approvers",), verified=False)
    asked = w.request(RequestAction.MARK_STABLE, by=claim)
    w.step()
    assert w.outcomes[asked] == "Rejected"
    assert "verified identities" in w.messages[asked]
    w = world()
    healthy_and_stable(w)
    w.set_version("fraud-detector-1-4-0")
    w.step()
    w.roll_out()
    w.request(RequestAction.ROLLBACK, by=claim, reason="claims to be bob")
    w.step()
    top = w.status.history[0]
    assert (top.cause, top.actor, top.actor_verified) == (RevisionCause.MANUAL_ROLLBACK, "unverified", False)


def test_automatic_rollbacks_never_wait_for_approval() -> None:
    w = world(rollback={"rules": [RULE]}, **FOUR_EYES)
    stable_then_upgraded_with_rules(w)
    w.step(rules=[RuleStatus(name="error-rate", state=RuleState.BREACHED, value=0.12, since=w.now)])
    assert w.status.history[0].cause is RevisionCause.AUTOMATIC_ROLLBACK


# --- acting only on a status that verifies --------------------------------------------------------


def _rehash(entries: list[Any]) -> list[Any]:
    """What an attacker without the key can do: recompute every hash with the documented formula."""
    ordered = sorted(entries, key=lambda e: e.revision)
    fixed: list[Any] = []
    previous = ""
    for entry in ordered:
        entry = entry.model_copy(update={"prev_hash": previous})
        entry = entry.model_copy(update={"hash": history.entry_hash(entry)})
        fixed.append(entry)
        previous = entry.hash
    return list(reversed(fixed))


def _upgraded_then_stable() -> World:
    w = world()
    healthy_and_stable(w)
    w.set_version("fraud-detector-1-4-0")
    w.step()
    w.roll_out()
    w.step()
    return w


def test_a_rewritten_history_is_not_acted_on() -> None:
    w = _upgraded_then_stable()
    forged = [e.model_copy(update={"actor": "mallory"}) for e in w.status.history]
    w.status = w.status.model_copy(update={"history": _rehash(forged)})
    tampered = w.status
    plan = w.step()
    assert plan.hold == "HistoryTampered"
    assert not plan.sealable
    assert [d.reason for d in plan.decisions] == ["HistoryTampered"]
    assert phase_of(w) is DeploymentPhase.FAILED
    verified = next(c for c in w.status.conditions if c.type == "HistoryVerified")
    assert (verified.status.value, verified.reason) == ("False", "HistoryTampered")
    assert w.status.history == tampered.history
    assert w.status.seal == tampered.seal
    # A rollback request waits: nothing is decided on a history that does not verify.
    asked = w.request(RequestAction.ROLLBACK, reason="x")
    w.step()
    assert asked not in w.outcomes
    assert w.decisions.count("HistoryTampered") == 1, "said once, on the transition"


def test_a_flipped_stable_flag_or_quarantine_edit_is_not_acted_on() -> None:
    w = _upgraded_then_stable()
    flipped = [e.model_copy(update={"stable": True}) if e.revision == 2 else e for e in w.status.history]
    w.status = w.status.model_copy(update={"history": flipped})
    assert w.step().hold == "HistoryTampered"
    w = _upgraded_then_stable()
    w.status = w.status.model_copy(update={"quarantined": ["fraud-detector-1-4-0"]})
    plan = w.step()
    assert plan.hold == "HistoryTampered"
    assert "seal" in next(c for c in w.status.conditions if c.type == "HistoryVerified").message


def test_an_unsigned_history_waits_unless_adopted() -> None:
    w = _upgraded_then_stable()
    unsigned = [e.model_copy(update={"signature": None, "key_id": None}) for e in w.status.history]
    unsigned = [
        e.model_copy(update={"stable_mark": e.stable_mark.model_copy(update={"signature": None})})
        if e.stable_mark
        else e
        for e in unsigned
    ]
    # As version 0.1 wrote it: no signatures, no seal, and stable flags without marks.
    unsigned = [e.model_copy(update={"stable_mark": None}) for e in unsigned]
    w.status = w.status.model_copy(update={"history": unsigned, "seal": None})
    assert w.step().hold == "HistoryUnsigned"
    plan = reconcile(replace(w.situation(), adopt_unsigned=True))
    assert plan.hold is None
    assert "HistoryAdopted" in [d.reason for d in plan.decisions]
    w.status = trust.sign(plan.status, w.status, KEY, SUBJECT, adopt=plan.adopted)
    check = trust.check_status(w.status, Keyring.of(KEY.public), SUBJECT)
    assert check.verdict is trust.Verdict.SIGNED, check.describe()
    marks = [e.stable_mark for e in w.status.history if e.stable]
    assert marks
    assert all(m is not None and m.actor == "unverified" for m in marks)
    plan = w.step()  # without the flag from now on
    assert plan.hold is None
    assert "HistoryAdopted" not in [d.reason for d in plan.decisions]


def test_legacy_handled_requests_are_dropped_on_read() -> None:
    pruned = {"approvers": [], "at": "2026-11-27T10:00:00Z", "message": "ok", "uid": ""}
    status = ModelDeploymentStatus.model_validate({"handledRequests": [pruned]})
    assert status.handled_requests == []


def test_an_operator_without_a_key_leaves_a_sealed_status_alone() -> None:
    w = world("fraud-detector-9-9-9")
    w.step()  # sealed, although no revision exists yet
    assert w.status.seal is not None
    assert not w.status.history
    plan = reconcile(replace(w.situation(), signing=False))
    assert plan.hold == "SigningKeyUnavailable"
    assert not plan.sealable


def test_a_recreated_model_version_is_not_served_silently() -> None:
    w = _upgraded_then_stable()
    name = "fraud-detector-1-3-2"
    w.versions[name] = w.versions[name].model_copy(update={"metadata": {"name": name, "uid": "new-uid"}})
    asked = w.request(RequestAction.ROLLBACK, reason="back to 1.3.2")
    plan = w.step()
    assert w.outcomes[asked] == "Rejected"
    assert "deleted and re-created" in w.messages[asked]
    assert "PipelineMismatch" in [d.reason for d in plan.decisions]
    assert w.status.history[0].version == "fraud-detector-1-4-0", "the workload keeps what serves"
    # An automatic rollback to it is held, with the condition, until a person repairs it.
    w.spec = w.spec.model_copy(
        update={
            "rollback": ModelDeploymentSpec.model_validate(
                {"modelName": "fraud-detector", "version": "x", "rollback": {"rules": [RULE]}}
            ).rollback
        }
    )
    plan = w.step(rules=[RuleStatus(name="error-rate", state=RuleState.BREACHED, value=0.12, since=w.now)])
    assert plan.hold == "PipelineMismatch"
    assert w.status.history[0].version == "fraud-detector-1-4-0"
    verified = next(c for c in w.status.conditions if c.type == "HistoryVerified")
    assert "deleted and re-created" in verified.message


# --- bounds: the status stays within its byte budget ----------------------------------------------


CHANGES = 10_000


def test_ten_thousand_changes_with_maximal_reasons_stay_within_the_byte_budget() -> None:
    """History-worthy changes with maximal entries (1,024-character reasons, a requester in 128 long
    groups) through the pure core: the byte budget, not revisionHistoryLimit, bounds the history."""
    heavy = replace(ALICE, groups=tuple(f"group-{i}-" + "x" * 240 for i in range(128)))
    w = world(revisionHistoryLimit=100)
    healthy_and_stable(w)
    status = w.status
    largest = 0
    specs = [
        w.spec.model_copy(update={"version": v}) for v in ("fraud-detector-1-4-0", "fraud-detector-1-3-2")
    ]
    base = replace(w.situation(), trust=None)  # signing is exercised elsewhere; this is about size
    for i in range(CHANGES):
        request = Request(f"r{i}", f"u{i}", RequestAction.ROLLBACK, heavy, w.now, reason="x" * 1024)
        requests = [request] if i % 2 else []
        plan = reconcile(replace(base, spec=specs[i % 2], status=status, requests=requests))
        status = plan.status
        largest = max(largest, history.wire_size(status.history))
    assert largest <= history.HISTORY_BYTES
    assert len(status.history) < 100, "the byte budget, not the count, bounded this history"
    assert status.current_revision in [e.revision for e in status.history]
    assert status.history_watermark is not None
    assert history.verify(status.history, complete_from=status.history_watermark.revision) is None
    assert set(status.quarantined) <= {e.version for e in status.history} | {status.desired_version}


def test_a_burst_larger_than_the_records_is_carried_out_once_each_despite_a_lagging_view() -> None:
    """Eighty rollbacks asked at once (more than the status keeps records of), while the operator's view
    of the request objects lags two passes behind their answers: each is carried out exactly once."""
    w = world(revisionHistoryLimit=100)
    healthy_and_stable(w)
    w.set_version("fraud-detector-1-4-0")
    w.step()
    w.roll_out()
    w.step()
    names = [w.request(RequestAction.ROLLBACK, reason=f"r{i}", revision=1 + i % 2) for i in range(80)]
    views = [list(w.requests)] * 2  # what the index shows: the answers of two passes ago
    for _ in range(12):
        w.requests = views[-2]
        w.step()
        views.append([r for r in views[-1] if w.outcomes.get(r.name) not in TERMINAL_VALUES])
    assert w.decisions.count("RolledBack") == len(names), "each request carried out once"
    assert w.status.history[0].revision == 2 + len(names)
    assert all(w.outcomes[name] == "Applied" for name in names)
    assert len(w.status.handled_requests) <= HANDLED_REQUESTS_KEPT


def test_a_pass_never_pushes_out_the_record_of_a_request_still_listed() -> None:
    w = world(revisionHistoryLimit=100)
    healthy_and_stable(w)
    names = [w.request(RequestAction.MARK_STABLE, reason=f"r{i}") for i in range(HANDLED_REQUESTS_KEPT + 5)]
    listed = list(w.requests)
    w.step()
    w.requests = listed  # nothing answered yet as far as the view knows
    w.step()
    recorded = {h.name for h in w.status.handled_requests}
    decided = [n for n in names if n in w.outcomes]
    assert len(decided) == HANDLED_REQUESTS_KEPT, "the first pass decides only what it can record"
    assert set(decided) <= recorded, "every decision still listed keeps its record"
