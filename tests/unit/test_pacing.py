"""A pass's timer: due when the clock alone can change a decision, a long resync once settled."""

from __future__ import annotations

from datetime import timedelta

from modelledger.api import RequestAction, RuleState, RuleStatus
from modelledger.core.pacing import SETTLED_RESYNC, next_pass
from tests.unit.test_reconcile import RULE, healthy_and_stable, world

INTERVAL = timedelta(seconds=15)


def test_a_bake_is_due_when_it_completes_and_a_stable_revision_is_settled() -> None:
    w = world()  # bake time 10 m
    plan = w.step()
    assert next_pass(w.situation(), plan) == SETTLED_RESYNC, "rolling out: the workload's events wake it"
    w.roll_out()
    plan = w.step()
    assert next_pass(w.situation(), plan) == timedelta(minutes=5), "capped by the resync"
    w.now += timedelta(minutes=9)
    plan = w.step()
    assert next_pass(w.situation(), plan) == timedelta(minutes=1), "the bake completes in a minute"
    w.now += timedelta(minutes=2)
    assert next_pass(w.situation(), plan) == INTERVAL, "overdue: never below the interval"
    plan = w.step()
    assert w.status.stable_revision == 1
    assert next_pass(w.situation(), plan) == SETTLED_RESYNC


def test_a_waiting_request_is_looked_at_every_interval() -> None:
    w = world(approval={"requiredFor": ["Rollback"], "approvals": 1, "approverGroups": ["ml-approvers"]})
    healthy_and_stable(w)
    w.set_version("fraud-detector-1-4-0")
    w.step()
    w.roll_out()
    w.step()
    w.request(RequestAction.ROLLBACK, reason="bad")
    plan = w.step()
    assert w.requests, "the request waits for an approval"
    assert next_pass(w.situation(), plan) == INTERVAL


def test_a_rule_still_breaching_in_cooldown_is_due_when_the_cooldown_ends() -> None:
    w = world(rollback={"rules": [RULE], "cooldown": "1h"})
    passing = [RuleStatus(name="error-rate", state=RuleState.PASS, value=0.0, since=w.now)]
    w.step(rules=passing)
    w.roll_out()
    w.step(rules=passing)
    w.now += timedelta(minutes=11)
    plan = w.step(rules=passing)
    assert w.status.stable_revision == 1
    assert next_pass(w.situation(passing), plan) == SETTLED_RESYNC
    w.set_version("fraud-detector-1-4-0")
    w.step(rules=passing)
    w.roll_out()
    w.step(rules=passing)
    breached = [RuleStatus(name="error-rate", state=RuleState.BREACHED, value=0.12, since=w.now)]
    w.step(rules=breached)
    assert w.decisions.count("RolledBack") == 1
    w.now += timedelta(minutes=58)
    plan = w.step(rules=breached)
    assert next_pass(w.situation(breached), plan) == timedelta(minutes=2)


def test_a_long_interval_is_never_shortened() -> None:
    w = world(rollback={"interval": "10m"})
    healthy_and_stable(w)
    plan = w.step()
    assert next_pass(w.situation(), plan) == timedelta(minutes=10)
