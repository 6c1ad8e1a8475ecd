"""People's requests (ModelDeploymentRequest objects), each decided exactly once: four-eyes approvals,
manual rollback, marking a revision stable, and lifting a quarantine (retry). Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from modelledger.api import (
    HandledRequest,
    RequestAction,
    RequestPhase,
    RevisionCause,
    StableMark,
    format_duration,
)
from modelledger.api.modeldeploymentrequest import REASON_LENGTH
from modelledger.core import history
from modelledger.core.actors import Identity
from modelledger.core.decision import (
    HANDLED_REQUESTS_KEPT,
    Decision,
    Plan,
    Request,
    RequestOutcome,
    Situation,
    pin_problem,
    quarantine,
    revision,
    usable,
)


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
    plan.status.handled_requests = _kept([handled, *plan.status.handled_requests], s.requests)
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


def _kept(handled: Sequence[HandledRequest], listed: Sequence[Request]) -> list[HandledRequest]:
    """The records of requests still listed as undecided first, then the newest others.

    A record is what keeps a request whose answer has not reached its object yet from being carried
    out twice, so it goes only once its request is no longer listed (answered, or deleted)."""
    still = {(r.name, r.uid) for r in listed}
    first = [h for h in handled if (h.name, h.uid) in still]
    rest = [h for h in handled if (h.name, h.uid) not in still]
    return [*first, *rest][:HANDLED_REQUESTS_KEPT]


def _room(s: Situation, plan: Plan) -> int:
    """How many requests may be decided in this pass without pushing out a record still needed."""
    listed = {(r.name, r.uid) for r in s.requests}
    needed = sum((h.name, h.uid) in listed for h in plan.status.handled_requests)
    return max(0, HANDLED_REQUESTS_KEPT - needed)


def handle_requests(s: Situation, plan: Plan) -> Identity | None:
    """Decide pending requests in order; returns who retried (and their approvers), if someone did.

    A burst larger than the status's records is decided over several passes: each pass decides only
    as many as there is room to record, so every decision stays recorded until its answer has reached
    its request object."""
    retried_by: Identity | None = None
    ordered = sorted(s.requests, key=lambda r: (r.created, r.name))
    approvals = [r for r in ordered if r.action is RequestAction.APPROVE]
    room = _room(s, plan)
    for request in ordered:
        if (done := _handled(plan, request)) is not None:
            plan.outcomes[request.name] = RequestOutcome(
                done.phase, done.message, done.revision, tuple(done.approvers)
            )
            continue
        if request.action is RequestAction.APPROVE:
            continue  # decided with the request it approves, below
        if room <= 0:
            break  # the rest in a later pass, once answers have freed records
        outcome = _gate(s, request, approvals)
        if outcome is None:
            approvers = _counted_approvers(s, request, approvals)
            outcome = _carry_out(s, plan, request, approvers)
            if request.action is RequestAction.RETRY and outcome.phase is RequestPhase.APPLIED:
                retried_by = replace(request.requester, approvers=approvers, request=request.name)
        _record(s, plan, request, outcome)
        room -= outcome.phase is not RequestPhase.PENDING  # a waiting request takes no record
    for approval in approvals:
        if room > 0 and _handled(plan, approval) is None:
            outcome = _approval_outcome(s, plan, approval)
            _record(s, plan, approval, outcome)
            room -= outcome.phase is not RequestPhase.PENDING
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
        if not usable(s, target.version):
            return RequestOutcome(rejected, f"version {target.version} is revoked or gone")
    else:
        target = history.newest_stable(st.history, other_than=serving.revision, usable=lambda v: usable(s, v))
        if target is None:
            return RequestOutcome(rejected, "no stable revision to roll back to")
    if mismatch := pin_problem(s, target):
        plan.decisions.append(Decision("PipelineMismatch", mismatch, warning=True, request=request.name))
        return RequestOutcome(rejected, f"not served as pinned: {mismatch}")
    who = request.requester
    entry = revision(
        s,
        plan,
        target.version,
        RevisionCause.MANUAL_ROLLBACK,
        who,
        reason=request.reason,
        approvers=approvers,
        request_name=request.name,
    )
    quarantine(plan, serving.version)
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
    if not usable(s, desired):
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
