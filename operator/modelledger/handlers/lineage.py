"""The GitOps lineage a Deploy entry records: read the Application a ModelDeployment's ArgoCD tracking
mark names (adapters/argocd.py) and judge it (core/gitops.py), only when a Deploy may be decided."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelledger.adapters.argocd import ArgoApplications
from modelledger.api import GitOpsLineage, ModelDeploymentSpec, ModelDeploymentStatus
from modelledger.core import gitops, history


def deploy_pending(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, requests: bool) -> bool:
    """Whether this pass may append a Deploy entry: spec.version is not what serves, and it is not
    quarantined (or a person's request, e.g. a retry, may lift that)."""
    serving = history.current(status.history, status.current_revision)
    if serving is not None and serving.version == spec.version:
        return False
    return requests or spec.version not in status.quarantined


async def for_deploy(
    namespace: str,
    name: str,
    meta: Mapping[str, Any],
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    applications: ArgoApplications,
    *,
    requests: bool = False,
) -> GitOpsLineage | None:
    """The lineage for a Deploy of spec.version, or None (no tracking mark, or no Deploy in view)."""
    track = gitops.tracking(meta, namespace, name, applications.default_namespace)
    if track is None or not deploy_pending(spec, status, requests):
        return None
    allowed = applications.namespaces
    if track.problem is not None or track.namespace not in allowed:
        return gitops.lineage(track, {}, namespace, name, allowed)  # judged without reading anything
    fetched = await applications.fetch(track.namespace, track.name)
    if fetched.application is None:
        return gitops.unavailable(track, fetched.reason, fetched.message)
    return gitops.lineage(track, fetched.application, namespace, name, allowed)
