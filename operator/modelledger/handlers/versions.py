"""ModelVersion handlers: status (phase, usedBy, short digest) and the deletion guard.

A ModelVersion named in any ModelDeployment's history is evidence of what served: Kopf's finalizer keeps
it until no history references it. The blocked deletion is explained by a condition and an Event.

Only the leader writes (status, Events, audit records): a standby defers status syncs to its takeover
and holds a deletion until it leads or the leader has let the object go.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import kopf
import structlog
from pydantic import ValidationError

from modelledger.adapters import audit, kube, kube_async
from modelledger.api import Condition, ConditionStatus, ModelVersion, ModelVersionPhase, ModelVersionStatus
from modelledger.api.common import API_VERSION, GROUP, VERSION
from modelledger.api.modelversion import USED_BY_SHOWN, short_digest
from modelledger.handlers.context import OperatorConfig, now
from modelledger.handlers.leadership import Gate
from modelledger.handlers.startup import FINALIZER

log = structlog.get_logger("modelledger.versions")
BLOCKED_RETRY = 5.0


@kopf.index(GROUP, VERSION, "modeldeployments")
def version_users(namespace: str, name: str, status: kopf.Status, **_: Any) -> dict[tuple[str, str], str]:
    """(namespace, version) → the deployments whose history names it."""
    return {
        (namespace, entry["version"]): name for entry in status.get("history") or [] if "version" in entry
    }


def _users(index: kopf.Index[Any, Any], namespace: str, name: str) -> list[str]:
    return sorted(set(index.get((namespace, name), [])))


def named(users: list[str], shown: int = 10) -> str:
    """`a, b, c and 1097 more`: a bounded list of names for a message."""
    more = len(users) - shown
    return ", ".join(users[:shown]) + (f" and {more} more" if more > 0 else "")


def _status_fields(raw: dict[str, Any]) -> dict[str, Any]:
    fields = {field.alias or key for key, field in ModelVersionStatus.model_fields.items()}
    return {k: v for k, v in (raw.get("status") or {}).items() if k in fields}


def desired_status(raw: dict[str, Any], users: list[str], blocked: bool) -> dict[str, Any] | None:
    """The status a ModelVersion should show, or None when its spec cannot be read."""
    try:
        version = ModelVersion.model_validate(raw)
    except ValidationError as error:
        log.error("invalid ModelVersion", name=raw.get("metadata", {}).get("name"), error=str(error))
        return None
    old = (
        ModelVersionStatus.model_validate(_status_fields(raw)) if raw.get("status") else ModelVersionStatus()
    )
    conditions = {c.type: c for c in old.conditions}

    def condition(kind: str, true: bool, reason: str, message: str) -> Condition:
        previous = conditions.get(kind)
        status = ConditionStatus.TRUE if true else ConditionStatus.FALSE
        unchanged = previous is not None and previous.status is status
        if unchanged and previous is not None and previous.reason == reason and previous.message == message:
            return previous
        return Condition(
            type=kind,
            status=status,
            reason=reason,
            message=message,
            last_transition_time=previous.last_transition_time if unchanged and previous else now(),
            observed_generation=raw["metadata"].get("generation"),
        )

    revoked = version.spec.revoked
    new = ModelVersionStatus(
        observed_generation=raw["metadata"].get("generation"),
        phase=ModelVersionPhase.REVOKED if revoked else ModelVersionPhase.AVAILABLE,
        short_digest=short_digest(version.spec.artifact.digest),
        used_by=users[:USED_BY_SHOWN],
        used_by_count=len(users),
        conditions=sorted(
            [
                condition(
                    "Revoked",
                    revoked,
                    "VersionRevoked" if revoked else "NotRevoked",
                    version.spec.revocation_reason if revoked else "may be served",
                ),
                condition(
                    "InUse",
                    bool(users),
                    "ReferencedByHistory" if users else "Unreferenced",
                    named(users) or "no deployment history names this version",
                ),
                condition(
                    "DeletionBlocked",
                    blocked,
                    "ReferencedByHistory" if blocked else "NotBlocked",
                    f"deletion waits until no history names it: {named(users)}" if blocked else "",
                ),
            ],
            key=lambda c: c.type,
        ),
    )
    return new.to_wire()


async def _sync_status(raw: dict[str, Any], users: list[str], blocked: bool = False) -> None:
    wanted = desired_status(raw, users, blocked)
    current = _status_fields(raw)
    if wanted is None or wanted == current:
        return
    meta = raw["metadata"]
    # On a conflict the newer object arrives as a watch event and is synced then.
    with contextlib.suppress(kube.Conflict):
        await kube_async.client().write_status(
            kube.VERSIONS,
            meta["namespace"],
            meta["name"],
            current,
            wanted,
            meta["resourceVersion"],
        )


def _gate(memo: kopf.Memo) -> Gate:
    config: OperatorConfig = memo["config"]
    return config.gate


async def _catch_up(
    namespace: str, name: str, users: kopf.Index[Any, Any], bodies: kopf.Index[Any, Any]
) -> None:
    """After a takeover: the status of a version whose sync a standby skipped, from the live indices."""
    raw = next(iter(bodies.get((namespace, name), [])), None)
    if raw is None:
        return
    try:
        await _sync_status(
            dict(raw),
            _users(users, namespace, name),
            blocked=raw.get("metadata", {}).get("deletionTimestamp") is not None,
        )
    except kube.ApiException as error:  # the next event syncs it
        log.warning("version status not caught up", namespace=namespace, version=name, error=str(error))


def _defer(
    gate: Gate, namespace: str, name: str, users: kopf.Index[Any, Any], bodies: kopf.Index[Any, Any]
) -> None:
    catch_up = functools.partial(_catch_up, namespace, name, users, bodies)
    gate.defer(("ModelVersion", namespace, name), catch_up)


@kopf.on.event(GROUP, VERSION, "modelversions")
async def version_event(
    type: str,
    namespace: str,
    name: str,
    version_users: kopf.Index[Any, Any],
    version_bodies: kopf.Index[Any, Any],
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """A version's status, on the bookkeeping lane like its `usedBy` refreshes (the same job): ten
    thousand versions listed at start are written at the lane's rate, not all at once."""
    if type == "DELETED":
        return
    config: OperatorConfig = memo["config"]
    refresh = functools.partial(_refresh, config.gate, namespace, name, version_users, version_bodies)
    config.bookkeeping.submit(("usedBy", namespace, name), refresh)


@kopf.on.event(GROUP, VERSION, "modeldeployments")
async def deployment_event(
    namespace: str,
    status: kopf.Status,
    version_users: kopf.Index[Any, Any],
    version_bodies: kopf.Index[Any, Any],
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """A history changed: refresh `usedBy` of the versions it names now or named before, on the
    bookkeeping lane, where the refreshes of one version merge (a thousand deployments of one version
    make one write, not a thousand)."""
    names = {entry.get("version") for entry in status.get("history") or []}
    remembered: dict[str, set[str]] = memo.setdefault("versions_by_namespace", {})
    previously = remembered.get(namespace, set())
    remembered[namespace] = previously | {n for n in names if n}
    config: OperatorConfig = memo["config"]
    for version_name in sorted(previously | names - {None}):
        refresh = functools.partial(
            _refresh, config.gate, namespace, version_name, version_users, version_bodies
        )
        config.bookkeeping.submit(("usedBy", namespace, version_name), refresh)


async def _refresh(
    gate: Gate, namespace: str, name: str, users: kopf.Index[Any, Any], bodies: kopf.Index[Any, Any]
) -> None:
    """A version's status from the indices as they are when the lane gets to it."""
    if not gate.leading():
        _defer(gate, namespace, name, users, bodies)
        return
    await _catch_up(namespace, name, users, bodies)


@kopf.on.delete(GROUP, VERSION, "modelversions", backoff=BLOCKED_RETRY)
async def guard_deletion(
    namespace: str,
    name: str,
    body: kopf.Body,
    version_users: kopf.Index[Any, Any],
    version_bodies: kopf.Index[Any, Any],
    memo: kopf.Memo,
    **_: Any,
) -> None:
    gate = _gate(memo)
    while not gate.leading():
        # A standby neither records nor lets go: it waits until it leads, or until the leader has
        # decided (the object is gone, or our finalizer is off it).
        raw = next(iter(version_bodies.get((namespace, name), [])), None)
        if raw is None or FINALIZER not in (raw.get("metadata", {}).get("finalizers") or []):
            return
        await gate.until_leading(timeout=BLOCKED_RETRY)
    users = _users(version_users, namespace, name)
    if not users:
        audit.record_version_event("VersionDeleted", namespace, name, f"{name} deleted: no history names it")
        return
    message = f"deletion of {name} blocked: the history of {named(users)} names it"
    await _sync_status(dict(body), users, blocked=True)
    ref = kube.ObjectRef(API_VERSION, "ModelVersion", namespace, name, body.metadata.get("uid", ""))
    try:
        await kube_async.client().post_event(ref, "DeletionBlocked", message, warning=True)
    except kube.ApiException as error:
        log.warning("event not posted", reason="DeletionBlocked", error=str(error))
    audit.record_version_event("DeletionBlocked", namespace, name, message, warning=True)
    raise kopf.TemporaryError(message, delay=BLOCKED_RETRY)
