"""When a deployment's pass must run again if nothing it watches changes.

Watch events (its spec, its workload, a ModelVersion, a request) and rule state changes wake a pass at
once, so the timer only covers what time alone changes: a bake that completes, a request that waits
(for approvals, for its timeout, or for room in the record of handled requests), a cooldown that ends
while a rule still breaches. Each is a deadline; the pass is due at the earliest, never sooner than
the rule interval. With none pending the deployment is settled, and is looked at again only after
`SETTLED_RESYNC`, as a safety net: at a fleet of thousands that is what keeps an idle operator idle.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from modelledger.api import TERMINAL_PHASES, RevisionCause, RuleState
from modelledger.core.decision import Plan, Situation
from modelledger.core.reconcile import healthy_since_for_bake

SETTLED_RESYNC = timedelta(minutes=5)
BREACHING = (RuleState.PENDING, RuleState.BREACHED)


def next_pass(s: Situation, plan: Plan) -> timedelta:
    interval = s.spec.rollback.interval
    due = deadlines(s, plan)
    if not due:
        return max(interval, SETTLED_RESYNC)
    return max(interval, min(min(due) - s.now, SETTLED_RESYNC))


def deadlines(s: Situation, plan: Plan) -> list[datetime]:
    """The instants at which the clock alone may change this deployment's decision."""
    due: list[datetime] = []
    if plan.serving is not None and not plan.serving.stable:
        healthy_since = healthy_since_for_bake(s, plan.status, plan)
        if healthy_since is not None:
            due.append(healthy_since + s.spec.stability.bake_time)
    answered = {name for name, outcome in plan.outcomes.items() if outcome.phase in TERMINAL_PHASES}
    if any(request.name not in answered for request in s.requests):
        due.append(s.now)  # approvals, timeouts and room for records: looked at every interval
    if any(rule.state in BREACHING for rule in plan.status.rules):
        last = next((e for e in plan.status.history if e.cause is RevisionCause.AUTOMATIC_ROLLBACK), None)
        if last is not None:
            due.append(last.at + s.spec.rollback.cooldown)
    return due
