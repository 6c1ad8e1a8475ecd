"""ModelVersion handlers: status (phase, usedBy, short digest) and the deletion guard.

A ModelVersion named in any ModelDeployment's history is evidence of what served: our finalizer keeps it
until no history references it. The blocked deletion is explained by a condition, an Event and an audit
record, once per blocking.

All of it is one job per version on the bookkeeping lane: put the finalizer on, write the status, or
hold or release a deletion. Ten thousand versions seen at a first start are written at the lane's
rate, with its few connections, not all at once (Kopf's own finalizer, which this replaces, patched
every version at once from its own unbounded connection pool).

Only the leader writes (finalizers, status, Events, audit records): a standby defers each version's job
to its takeover, and holds a deletion until then.
"""

from __future__ import annotations

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


def _blocked(raw: dict[str, Any]) -> bool:
    conditions = (raw.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "DeletionBlocked" and c.get("status") == "True" for c in conditions)


async def _sync_status(raw: dict[str, Any], users: list[str], blocked: bool = False) -> bool:
    """Write the status `raw` should show, if it differs (a Conflict when `raw` is stale); True if it
    wrote."""
    wanted = desired_status(raw, users, blocked)
    current = _status_fields(raw)
    if wanted is None or wanted == current:
        return False
    meta = raw["metadata"]
    await kube_async.client().write_status(
        kube.VERSIONS, meta["namespace"], meta["name"], current, wanted, meta["resourceVersion"]
    )
    return True


def _submit(
    config: OperatorConfig,
    namespace: str,
    name: str,
    users: kopf.Index[Any, Any],
    bodies: kopf.Index[Any, Any],
    delay: float = 0.0,
) -> None:
    """Queue the version's job; jobs of one version merge, so each runs on the indices as they are then."""
    key = ("usedBy", namespace, name)
    job = functools.partial(_sync, config, namespace, name, users, bodies)
    if delay:
        config.bookkeeping.submit_later(key, job, delay)
    else:
        config.bookkeeping.submit(key, job)


async def _sync(
    config: OperatorConfig,
    namespace: str,
    name: str,
    users_index: kopf.Index[Any, Any],
    bodies_index: kopf.Index[Any, Any],
) -> bool:
    """One version's finalizer and status, or its deletion held or let go. False if it sent nothing."""
    if not config.gate.leading():

        async def at_takeover() -> None:  # through the lane, not all at once
            _submit(config, namespace, name, users_index, bodies_index)

        config.gate.defer(("ModelVersion", namespace, name), at_takeover)
        return False
    raw = next(iter(bodies_index.get((namespace, name), [])), None)
    if raw is None:
        return False
    raw = dict(raw)
    users = _users(users_index, namespace, name)
    meta = raw["metadata"]
    finalizers = list(meta.get("finalizers") or [])
    deleting = meta.get("deletionTimestamp") is not None
    try:
        if deleting and FINALIZER in finalizers:
            recheck, sent = await _guard(raw, users)
            if recheck:
                _submit(config, namespace, name, users_index, bodies_index, delay=BLOCKED_RETRY)
            return sent
        sent = False
        if not deleting and FINALIZER not in finalizers:
            raw = await kube_async.client().write_finalizers(
                kube.VERSIONS, namespace, name, [*finalizers, FINALIZER], meta["resourceVersion"]
            )
            sent = True
        return await _sync_status(raw, users, blocked=False) or sent
    except kube.Conflict:
        return True  # the newer object arrives as a watch event, which queues this job again
    except kube.ApiException as error:
        log.warning("version not synced", namespace=namespace, version=name, error=str(error)[:300])
        if deleting:
            _submit(config, namespace, name, users_index, bodies_index, delay=BLOCKED_RETRY)
        return True


async def _guard(raw: dict[str, Any], users: list[str]) -> tuple[bool, bool]:
    """A version being deleted: let it go when no history names it, or hold it. Returns (look again,
    sent anything)."""
    meta = raw["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    if not users:
        # Recorded first: a duplicate line after a lost race is better than a deletion left unrecorded.
        audit.record_version_event("VersionDeleted", namespace, name, f"{name} deleted: no history names it")
        await kube_async.client().drop_finalizer(kube.VERSIONS, namespace, name, FINALIZER, meta)
        return False, True
    newly = not _blocked(raw)
    sent = await _sync_status(raw, users, blocked=True)
    if newly:
        message = f"deletion of {name} blocked: the history of {named(users)} names it"
        ref = kube.ObjectRef(API_VERSION, "ModelVersion", namespace, name, meta.get("uid", ""))
        try:
            await kube_async.client().post_event(ref, "DeletionBlocked", message, warning=True)
        except kube.ApiException as error:
            log.warning("event not posted", reason="DeletionBlocked", error=str(error))
        audit.record_version_event("DeletionBlocked", namespace, name, message, warning=True)
    return True, sent or newly


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
    if type != "DELETED":
        _submit(memo["config"], namespace, name, version_users, version_bodies)


@kopf.on.event(GROUP, VERSION, "modeldeployments")
async def deployment_event(
    namespace: str,
    status: kopf.Status,
    version_users: kopf.Index[Any, Any],
    version_bodies: kopf.Index[Any, Any],
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """A history changed: queue the versions it names now or named before (a thousand deployments of
    one version make one status write, not a thousand, and the last one gone lets a deletion go)."""
    names = {entry.get("version") for entry in status.get("history") or []}
    remembered: dict[str, set[str]] = memo.setdefault("versions_by_namespace", {})
    previously = remembered.get(namespace, set())
    remembered[namespace] = previously | {n for n in names if n}
    for version_name in sorted(previously | names - {None}):
        _submit(memo["config"], namespace, version_name, version_users, version_bodies)
