"""GitOps lineage of a Deploy: which ArgoCD Application synced the object, from which repository and
commit, started by whom. Pure: the handler reads the Application (adapters/argocd.py) and hands it here.

The tracking mark on a ModelDeployment (`argocd.argoproj.io/tracking-id`, or the legacy label
`app.kubernetes.io/instance`) is written by whoever writes the object, so it only names an Application to
look at. The Application is believed only when it lives in a namespace the admins allow (the Application
CRD has no status subresource: whoever may update an Application may write its status) and its
`status.resources` lists this very object. Otherwise the entry says why, and records none of the claims.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelledger.api import GitOpsLineage, GitSource, LineageTracking
from modelledger.api.common import DNS_LABEL_PATTERN, GROUP, OBJECT_NAME_PATTERN

TRACKING_ID = "argocd.argoproj.io/tracking-id"
INSTANCE_LABEL = "app.kubernetes.io/instance"
KIND = "ModelDeployment"
DEFAULT_NAMESPACE = "argocd"

# Reasons recorded when the lineage is not (CamelCase, stable: reports and queries match on them).
INVALID_TRACKING_ID = "InvalidTrackingId"
TRACKING_ID_MISMATCH = "TrackingIdMismatch"
NAMESPACE_NOT_ALLOWED = "NamespaceNotAllowed"
NOT_LISTED = "NotListed"
NOT_FOUND = "NotFound"
FORBIDDEN = "Forbidden"
UNREACHABLE = "Unreachable"

_TEXT = 253  # the bound of the recorded revision and of each name (the CRD's maxLength)
_NAMESPACE = re.compile(DNS_LABEL_PATTERN)
_NAME = re.compile(OBJECT_NAME_PATTERN)
_URI = 2048
_MESSAGE = 1024


@dataclass(frozen=True)
class Tracking:
    """The Application a ModelDeployment's tracking mark names, and whether the mark is about it."""

    by: LineageTracking
    namespace: str  # the Application's namespace
    name: str  # the Application's name
    problem: str | None = None  # InvalidTrackingId / TrackingIdMismatch
    detail: str = ""

    @property
    def application(self) -> str:
        return f"{self.namespace}/{self.name}" if self.name else ""


def _instance(app: str, default_namespace: str) -> tuple[str, str]:
    """ArgoCD's instance name: `<namespace>_<name>` for an Application outside the control-plane
    namespace, its bare name inside it (argo-cd util/argo ParseInstanceName)."""
    namespace, sep, name = app.partition("_")
    return (namespace, name) if sep else (default_namespace, app)


def _valid(namespace: str, name: str) -> bool:
    """A namespace and an object name the apiserver could hold: anything else is never looked up."""
    return bool(_NAMESPACE.fullmatch(namespace)) and len(name) <= _TEXT and bool(_NAME.fullmatch(name))


def tracking(
    meta: Mapping[str, Any], namespace: str, name: str, default_namespace: str = DEFAULT_NAMESPACE
) -> Tracking | None:
    """The Application the object's ArgoCD tracking mark names; None when it carries none.

    The annotation is `<app>:<group>/<kind>:<namespace>/<name>` (argo-cd util/argo resource_tracking.go)
    and must name this object: ArgoCD ignores a mark copied from another object, and so does this.
    """
    annotations = meta.get("annotations") or {}
    labels = meta.get("labels") or {}
    value = annotations.get(TRACKING_ID)
    if isinstance(value, str) and value:
        app, _, rest = value.partition(":")
        group_kind, _, namespaced = rest.partition(":")
        group, _, kind = group_kind.partition("/")
        object_namespace, _, object_name = namespaced.partition("/")
        if not app or "/" in kind or "/" in object_name or not kind or not object_name:
            return Tracking(
                LineageTracking.ANNOTATION, "", "", INVALID_TRACKING_ID,
                f"{TRACKING_ID} is not <app>:<group>/<kind>:<namespace>/<name>",
            )  # fmt: skip
        app_namespace, app_name = _instance(app, default_namespace)
        if not _valid(app_namespace, app_name):
            return Tracking(
                LineageTracking.ANNOTATION, "", "", INVALID_TRACKING_ID,
                f"{TRACKING_ID} names no valid Application namespace and name",
            )  # fmt: skip
        if (group, kind, object_namespace, object_name) != (GROUP, KIND, namespace, name):
            return Tracking(
                LineageTracking.ANNOTATION, app_namespace, app_name, TRACKING_ID_MISMATCH,
                f"{TRACKING_ID} names {group}/{kind} {object_namespace}/{object_name}, not this object",
            )  # fmt: skip
        return Tracking(LineageTracking.ANNOTATION, app_namespace, app_name)
    label = labels.get(INSTANCE_LABEL)
    if isinstance(label, str) and label:
        app_namespace, app_name = _instance(label, default_namespace)
        if not _valid(app_namespace, app_name):
            return Tracking(
                LineageTracking.LABEL, "", "", INVALID_TRACKING_ID,
                f"{INSTANCE_LABEL} names no valid Application namespace and name",
            )  # fmt: skip
        return Tracking(LineageTracking.LABEL, app_namespace, app_name)
    return None


def unavailable(track: Tracking, reason: str, message: str) -> GitOpsLineage:
    """A lineage that could not be established: the Application looked at and why, no claimed values."""
    return GitOpsLineage(
        tracked_by=track.by,
        application=track.application,
        trusted=False,
        reason=reason,
        message=message[:_MESSAGE],
    )


def lists(application: Mapping[str, Any], namespace: str, name: str) -> bool:
    """Whether the Application's `status.resources` lists this ModelDeployment."""
    resources = _dig(application, "status", "resources")
    return isinstance(resources, list) and any(
        isinstance(r, dict)
        and (r.get("group"), r.get("kind"), r.get("namespace"), r.get("name"))
        == (GROUP, KIND, namespace, name)
        for r in resources
    )


def lineage(
    track: Tracking,
    application: Mapping[str, Any],
    namespace: str,
    name: str,
    allowed_namespaces: Sequence[str],
) -> GitOpsLineage:
    """The lineage recorded on a Deploy entry, from the Application the tracking mark names."""
    if track.problem is not None:
        return unavailable(track, track.problem, track.detail)
    if track.namespace not in allowed_namespaces:
        return unavailable(
            track, NAMESPACE_NOT_ALLOWED,
            f"Applications are trusted only in {', '.join(allowed_namespaces) or 'no namespace'} "
            "(--argocd-namespaces): elsewhere their writers may not be ArgoCD's admins",
        )  # fmt: skip
    if not lists(application, namespace, name):
        return unavailable(
            track, NOT_LISTED,
            f"Application {track.application} does not list {GROUP}/{KIND} {namespace}/{name} in "
            "status.resources: the tracking mark is not believed",
        )  # fmt: skip
    return _recorded(track, application)


def _recorded(track: Tracking, application: Mapping[str, Any]) -> GitOpsLineage:
    operation_state = _map(_dig(application, "status", "operationState"))
    result = _map(operation_state.get("syncResult"))
    sync = _map(_dig(application, "status", "sync"))
    spec = _map(application.get("spec"))
    # The sync result holds the resolved commit the sync applied, and its sources; status.sync holds
    # the last comparison's (the same commit once synced). Either is ArgoCD's, never the tenant's.
    revisions = _strings(result.get("revisions")) or _strings(sync.get("revisions"))
    sources = _sources(result.get("sources")) or _sources(spec.get("sources"))
    initiated = _map(_dig(operation_state, "operation", "initiatedBy"))
    username = initiated.get("username")
    automated = initiated.get("automated")
    listed: list[GitSource] | None = None
    if len(sources) > 1:  # a multi-source Application: each repository with its own commit
        padded = [*revisions, *[""] * (len(sources) - len(revisions))]
        listed = [
            GitSource(repository=repo[:_URI], revision=rev[:_TEXT] or None)
            for repo, rev in zip(sources, padded, strict=False)
        ][:16]
    revision = _string(result.get("revision")) or _string(sync.get("revision")) or next(iter(revisions), None)
    repository = _repo(result.get("source")) or _repo(spec.get("source")) or next(iter(sources), None)
    return GitOpsLineage(
        tracked_by=track.by,
        application=track.application,
        trusted=True,
        repository=repository[:_URI] if repository else None,
        revision=revision[:_TEXT] if revision else None,
        sources=listed,
        initiated_by=username[:_TEXT] if isinstance(username, str) and username else None,
        automated=automated if isinstance(automated, bool) else None,
        sync_started_at=_time(operation_state.get("startedAt")),
    )


def _dig(document: Any, *path: str) -> Any:
    for step in path:
        if not isinstance(document, Mapping):
            return None
        document = document.get(step)
    return document


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _strings(value: Any) -> list[str]:
    return [v if isinstance(v, str) else "" for v in value] if isinstance(value, list) else []


def _repo(source: Any) -> str | None:
    return _string(source.get("repoURL")) if isinstance(source, Mapping) else None


def _sources(value: Any) -> list[str]:
    return [_repo(s) or "" for s in value] if isinstance(value, list) else []


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
