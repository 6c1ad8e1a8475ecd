"""ModelDeploymentRequest handlers: an index of the undecided requests per deployment, wake-ups, and
writing each decision back to the request's status (the decision itself is in the deployment's status
first, so a crash between the two writes the same answer again, never a second decision).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import kopf
import structlog
from pydantic import ValidationError

from modelledger.adapters import kube, kube_async
from modelledger.api import TERMINAL_PHASES, ModelDeploymentRequest, ModelDeploymentRequestStatus
from modelledger.api.common import GROUP, VERSION
from modelledger.core.actors import Identity
from modelledger.core.bodies import slim
from modelledger.core.decision import Request, RequestOutcome
from modelledger.handlers.context import Answered, OperatorConfig

log = structlog.get_logger("modelledger.requests")
PLURAL = "modeldeploymentrequests"


def _phase(body: Mapping[str, Any]) -> str | None:
    phase = (body.get("status") or {}).get("phase")
    return str(phase) if phase else None


@kopf.index(GROUP, VERSION, PLURAL)
def request_bodies(
    namespace: str, body: kopf.Body, spec: kopf.Spec, **_: Any
) -> dict[tuple[str, str], Any] | None:
    """(namespace, deployment) → its requests not decided yet (a decided one needs nothing more)."""
    if _phase(body) in {p.value for p in TERMINAL_PHASES}:
        return None
    return {(namespace, str(spec.get("deployment", ""))): slim(body)}


@kopf.on.event(GROUP, VERSION, PLURAL)
async def request_changed(namespace: str, spec: kopf.Spec, memo: kopf.Memo, **_: Any) -> None:
    config: OperatorConfig | None = memo.get("config")
    if config is not None:
        config.work.wake(namespace, str(spec.get("deployment", "")), urgent=True)  # a person waits for it


def parse(bodies: Iterable[Mapping[str, Any]], guarded: bool) -> list[Request]:
    """The requests the decisions can use; a body the models refuse is logged and left alone."""
    requests: list[Request] = []
    for body in bodies:
        meta = body.get("metadata", {})
        try:
            parsed = ModelDeploymentRequest.model_validate(dict(body))
            created = datetime.fromisoformat(str(meta["creationTimestamp"]).replace("Z", "+00:00"))
        except (ValidationError, KeyError, ValueError) as error:
            log.error("unreadable request ignored", name=meta.get("name"), error=str(error)[:300])
            continue
        claimed = parsed.spec.requester
        requester = (
            Identity(claimed.username, claimed.uid, tuple(claimed.groups), verified=guarded)
            if claimed is not None
            else Identity("unknown")
        )
        requests.append(
            Request(
                name=parsed.name,
                uid=str(meta.get("uid", "")),
                action=parsed.spec.action,
                requester=requester,
                created=created,
                reason=parsed.spec.reason,
                revision=parsed.spec.revision,
                approves=parsed.spec.approves,
            )
        )
    return requests


async def answer(
    namespace: str,
    deployment: str,
    bodies: Mapping[str, Mapping[str, Any]],
    outcomes: Mapping[str, RequestOutcome],
    now: datetime,
    answered: Answered,
) -> None:
    """Write each outcome to its request's status where it is not there yet."""
    for name, outcome in outcomes.items():
        body = bodies.get(name)
        if body is None:
            continue
        new = ModelDeploymentRequestStatus(
            phase=outcome.phase,
            message=outcome.message[:1024],
            revision=outcome.revision,
            approvers=list(outcome.approvers),
            handled_at=now,
        ).to_wire()
        if await _write_answer(namespace, name, body, new) and outcome.phase in TERMINAL_PHASES:
            answered.add(namespace, deployment, str(body["metadata"].get("uid", "")))


async def _write_answer(namespace: str, name: str, body: Mapping[str, Any], new: dict[str, Any]) -> bool:
    """True once the request's status holds the answer.

    The decision is already recorded in the deployment's status, so the answer may go over whatever
    the request holds now: after a conflict (the index's copy was stale) it is re-read and written once
    more.
    """
    for _attempt in range(2):
        old = dict(body.get("status") or {})
        if _same(old, new):
            return True
        try:
            await kube_async.client().write_status(
                PLURAL, namespace, name, old, new, body["metadata"]["resourceVersion"]
            )
            return True
        except kube.Conflict:
            try:
                body = await kube_async.client().read(PLURAL, namespace, name)
            except kube.ApiException as error:
                log.info("request not re-read", request=name, error=f"{error.status} {error.reason}")
                return False
        except kube.ApiException as error:
            log.warning("request status not written", request=name, error=f"{error.status} {error.reason}")
            return False
    log.info("request changed meanwhile; answered on the next pass", request=name)
    return False


def _same(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return {k: v for k, v in old.items() if k != "handledAt"} == {
        k: v for k, v in new.items() if k != "handledAt"
    }
